"""Predicting one series into a folder: label map, JSON report and overlay, all or nothing."""

from __future__ import annotations

import json
from pathlib import Path

from lumbar_jax import __version__, files
from lumbar_jax.data import datasets, io, transforms
from lumbar_jax.inference import cascade, levels, measure, overlay, report, series
from lumbar_jax.labels import LABEL_NAMES

# Label maps keep their input's format; two-file formats become their one-file variant.
_LABEL_SUFFIX = {".nii.gz": ".nii.gz", ".nii": ".nii", ".mha": ".mha", ".mhd": ".mha"}
_LABEL_SUFFIX |= {".nrrd": ".nrrd", ".nhdr": ".nrrd"}


def check_output_folder(output: str | Path) -> Path:
    """Creates the output folder and checks it can be written.

    Raises:
      OSError: naming the folder, when it cannot be created or written.
    """
    output = Path(output)
    try:
        output.mkdir(parents=True, exist_ok=True)
        probe = output / ".write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise OSError(f"{output}: output folder is not writable ({e.strerror}).") from e
    return output


def output_paths(output: Path, name: str, source: Path) -> dict[str, Path]:
    suffix = _LABEL_SUFFIX.get(series.image_suffix(source), ".nii.gz")
    return {
        "labels": output / f"{name}_labels{suffix}",
        "report": output / f"{name}.json",
        "overlay": output / f"{name}.png",
    }


def predict_series(
    coarse: cascade.StageModel,
    fine: cascade.StageModel,
    source: Path,
    output: Path,
    name: str,
    *,
    flip_lr: bool | None = None,
    runs: dict[str, str] | None = None,
) -> dict:
    """Predicts one series and writes its label map, report and overlay.

    Returns:
      The report (also written as JSON).

    Raises:
      io.ImageReadError, ValueError: naming the file, for unreadable or unusable images.
      OSError: when an output cannot be written; no output of the series is left behind.
    """
    volume = io.read_canonical(source)
    if flip_lr is None:
        flip_lr = fine.flip_tta
    result = cascade.predict(
        coarse, fine, volume.array_dhw, volume.spacing_dhw, flip_lr=flip_lr, source=str(source)
    )
    label_image = io.from_canonical(result.labels_dhw, volume.reference)
    output.mkdir(parents=True, exist_ok=True)
    paths = output_paths(output, name, source)
    named = levels.name_levels(result.labels_dhw, volume.spacing_dhw)
    structures = report.structure_report(label_image)
    report.add_levels(structures, named, label_image)
    summary = {
        "series": name,
        "input": source.name,
        "lumbar_jax_version": __version__,
        "coordinates": "world mm, LPS (x to patient left, y posterior, z superior)",
        "grid": report.grid_report(label_image),
        "labels": dict(enumerate(LABEL_NAMES)),
        "structures": structures,
        "levels": named.summary(),
        "measurements": measure.measure(named, result.labels_dhw).to_json(),
        "cascade": {
            **(runs or {}),
            "flip_tta": flip_lr,
            "background_scale": fine.background_scale,
            "tile_step": fine.tile_step,
            "box_scales": list(fine.box_scales),
            "fine_box_canonical_mm": [[round(float(v), 1) for v in c] for c in result.fine_box_mm],
            "seconds": {k: round(v, 3) for k, v in result.seconds.items()},
        },
        "outputs": {k: p.name for k, p in paths.items()},
    }
    try:
        io.write_image(label_image, paths["labels"])
        files.write_text(paths["report"], json.dumps(summary, indent=1))
        windowed = transforms.auto_window(volume.array_dhw, fine.window_percentiles, source)
        overlay.overlay_png(
            windowed,
            result.labels_dhw,
            volume.spacing_dhw,
            paths["overlay"],
            title=name,
            levels=named,
        )
    except BaseException:
        for path in paths.values():
            path.unlink(missing_ok=True)
        raise
    return summary


def predict_coarse_dataset(
    coarse: cascade.StageModel,
    dataset: datasets.Dataset,
    output: Path,
    *,
    flip_lr: bool = False,
    progress: bool = False,
) -> int:
    """Writes the coarse stage's label map of every case as ``output/<case_id>.nii.gz``.

    These are what fine-stage training crops around with ``data.crop="coarse"``
    (``data.coarse_predictions=output``). Returns the number of cases written.
    """
    output.mkdir(parents=True, exist_ok=True)
    cases = [dataset.cases[i] for i in sorted(dataset.cases)]
    if progress:
        from tqdm import tqdm  # only for the command line

        cases = tqdm(cases, unit="case")
    for case in cases:
        volume = io.read_canonical(case.image_path)
        labels = cascade.coarse_labels(
            coarse,
            volume.array_dhw,
            volume.spacing_dhw,
            flip_lr=flip_lr,
            source=str(case.image_path),
        )
        io.write_image(
            io.from_canonical(labels, volume.reference), output / f"{case.case_id}.nii.gz"
        )
    return len(dataset.cases)
