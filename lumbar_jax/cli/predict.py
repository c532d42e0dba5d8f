"""Coarse-to-fine prediction of series: label maps on the input grid, JSON reports, overlays.

  python -m lumbar_jax predict --coarse=RUN --fine=RUN --output=DIR [--[no]flip_tta] INPUT...
  python -m lumbar_jax predict --coarse=coarse.onnx --fine=fine.onnx --output=DIR INPUT...
  python -m lumbar_jax predict --coarse_only --coarse=RUN --data=DATASET --output=DIR
      (the coarse stage's label map of every case, DIR/<case_id>.nii.gz, to train the fine
      stage on coarse crops: --config.data.crop=coarse --config.data.coarse_predictions=DIR)

RUN is a run folder or a checkpoint inside one (run by JAX); a pair of ``.onnx`` files made by
``export_onnx`` runs with onnxruntime and numpy only (JAX is not imported). INPUT is an image
file (NIfTI, MHA/MHD, NRRD), a DICOM series folder, or a folder of them. Per series NAME, DIR
receives:
  NAME_labels.EXT  the label map on the input's exact grid (DICOM input: .nii.gz);
  NAME.json        per structure: voxels, volume, bounding box, centroid and connected
                   components in world (LPS) mm; the grid; the runs used; timings;
  NAME.png         mid- and para-sagittal slices with the labels overlaid.
Nothing from file headers beyond the grid is copied, so no patient identifiers reach the
outputs. A series that fails is reported (naming its file), leaves no outputs, and makes the
command exit non-zero after the others are done.
"""

from __future__ import annotations

import sys

from absl import app, flags

from lumbar_jax.cli import common
from lumbar_jax.inference import backends, series, writer

_COARSE = flags.DEFINE_string("coarse", None, "Coarse stage: run, checkpoint or .onnx file.")
_FINE = flags.DEFINE_string("fine", None, "Fine stage: run, checkpoint or .onnx file.")
_BACKEND = flags.DEFINE_enum(
    "backend", "auto", backends.BACKENDS, "Who runs the networks (auto: by the files given)."
)
_OUTPUT = flags.DEFINE_string("output", None, "Folder for the outputs (created).")
_COARSE_ONLY = flags.DEFINE_bool(
    "coarse_only", False, "With --data: write the coarse stage's label map of every case."
)
_DATA = flags.DEFINE_string("data", None, "With --coarse_only: a dataset folder.")
_LABEL_MAP = flags.DEFINE_string("label_map", "", "With --data: its label map, if needed.")
_FLIP_TTA = flags.DEFINE_bool(
    "flip_tta",
    None,
    "Average with the left-right mirrored prediction (twice the time; --noflip_tta: not); "
    "default: as the fine run's inference.flip_tta says (with --coarse_only: the coarse run's).",
)


def _coarse_only() -> None:
    common.require("coarse", "data", "output", why="with --coarse_only")
    from lumbar_jax.data import datasets
    from lumbar_jax.inference import jax_stage

    dataset = datasets.load_dataset(_DATA.value, label_map=_LABEL_MAP.value)
    coarse = jax_stage.load_stage(_COARSE.value).cascade_model()
    output = writer.check_output_folder(_OUTPUT.value)
    flip = coarse.flip_tta if _FLIP_TTA.value is None else _FLIP_TTA.value
    count = writer.predict_coarse_dataset(coarse, dataset, output, flip_lr=flip, progress=True)
    print(f"Coarse label maps of {count} cases written to {output}.")


def _predict_all(loaded: backends.LoadedCascade, found, output) -> list:
    """Predicts every series; returns those that failed (each reported as it fails)."""
    from tqdm import tqdm

    failed = []
    names = series.output_names(found)
    for source, name in tqdm(list(zip(found, names, strict=True)), unit="series"):
        try:
            summary = writer.predict_series(
                loaded.coarse,
                loaded.fine,
                source,
                output,
                name,
                runs=loaded.description(),
            )
        except common.USER_ERRORS as e:
            failed.append(source)
            tqdm.write(f"error: {e}", file=sys.stderr)
            continue
        parts = summary["structures"]
        tqdm.write(
            f"{name}: {len(parts['vertebral_body']['components'])} bodies, "
            f"{len(parts['intervertebral_disc']['components'])} discs, "
            f"{summary['cascade']['seconds']['total']:.2f} s"
        )
    return failed


def main(argv: list[str]) -> None:
    if _COARSE_ONLY.value:
        _coarse_only()
        return
    inputs = argv[1:]
    common.require("coarse", "fine", "output")
    if not inputs:
        raise app.UsageError("give at least one INPUT (image file, DICOM folder, folder).")
    found = series.find_series(inputs)
    loaded = backends.load_cascade(_COARSE.value, _FINE.value, _BACKEND.value)
    loaded = loaded.with_flip_tta(_FLIP_TTA.value)
    output = writer.check_output_folder(_OUTPUT.value)
    failed = _predict_all(loaded, found, output)
    print(f"{len(found) - len(failed)} of {len(found)} series predicted into {output}.")
    if failed:
        sys.exit(f"error: {len(failed)} series failed: {', '.join(map(str, failed))}")


cli = common.command(main)

if __name__ == "__main__":
    cli()
