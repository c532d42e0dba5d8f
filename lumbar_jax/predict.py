"""Coarse-to-fine prediction of series: label maps on the input grid, JSON reports, overlays.

  python -m lumbar_jax.predict --coarse=RUN --fine=RUN --output=DIR [--flip_tta] INPUT...
  python -m lumbar_jax.predict --backend=onnx --coarse=coarse.onnx --fine=fine.onnx ...
  python -m lumbar_jax.predict --coarse_only --coarse=RUN --data=DATASET --output=DIR
      (the coarse stage's label map of every case, DIR/<case_id>.nii.gz, to train the fine
      stage on coarse crops: --config.data.crop=coarse --config.data.coarse_predictions=DIR)

RUN is a run folder or a checkpoint inside one (JAX backend), or a model exported by
``export_onnx`` (ONNX backend: onnxruntime and numpy only, JAX is not imported); INPUT an image file (NIfTI, MHA/MHD,
NRRD), a DICOM series folder, or a folder of them. Per series NAME, DIR receives:
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

from absl import app, flags, logging

from lumbar_jax import inference, series

_COARSE = flags.DEFINE_string("coarse", None, "Coarse stage: run, checkpoint or .onnx file.")
_FINE = flags.DEFINE_string("fine", None, "Fine stage: run, checkpoint or .onnx file.")
_BACKEND = flags.DEFINE_enum("backend", "jax", ["jax", "onnx"], "Who runs the networks.")
_OUTPUT = flags.DEFINE_string("output", None, "Folder for the outputs (created).")
_COARSE_ONLY = flags.DEFINE_bool(
    "coarse_only", False, "With --data: write the coarse stage's label map of every case."
)
_DATA = flags.DEFINE_string("data", None, "With --coarse_only: a dataset folder.")
_LABEL_MAP = flags.DEFINE_string("label_map", "", "With --data: its label map, if needed.")
_FLIP_TTA = flags.DEFINE_bool(
    "flip_tta", False, "Average with the left-right mirrored prediction (twice the time)."
)


def _load_models(backend: str, coarse_path: str, fine_path: str):
    """((coarse, fine) cascade stages, a description for the reports) of either backend."""
    if backend == "onnx":
        from lumbar_jax import onnx_backend

        models, meta = onnx_backend.load_cascade(coarse_path, fine_path)
        runs = {
            f"{name}_model": f"{path} (config {meta[name]['config_sha256'][:12]}, "
            f"step {meta[name]['checkpoint_step']})"
            for name, path in (("coarse", coarse_path), ("fine", fine_path))
        }
        return models, {"backend": "onnx", **runs}
    from lumbar_jax import stage  # JAX only when it runs the networks

    coarse, fine = stage.load_cascade(coarse_path, fine_path)
    runs = {
        "coarse_run": f"{coarse.source} (step {coarse.step})",
        "fine_run": f"{fine.source} (step {fine.step})",
    }
    return (coarse.cascade_model(), fine.cascade_model()), {"backend": "jax", **runs}


def _coarse_only() -> None:
    if not (_COARSE.value and _DATA.value and _OUTPUT.value):
        raise app.UsageError("--coarse_only needs --coarse, --data and --output.")
    from lumbar_jax import stage
    from lumbar_jax.data import datasets

    try:
        dataset = datasets.load_dataset(_DATA.value, label_map=_LABEL_MAP.value)
        coarse = stage.load_stage(_COARSE.value)
        output = inference.check_output_folder(_OUTPUT.value)
        count = inference.predict_coarse_dataset(
            coarse.cascade_model(), dataset, output, flip_lr=_FLIP_TTA.value, progress=True
        )
    except (OSError, ValueError) as e:
        sys.exit(f"error: {e}")
    print(f"Coarse label maps of {count} cases written to {output}.")


def main(argv: list[str]) -> None:
    if not flags.FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)
    inputs = argv[1:]
    if _COARSE_ONLY.value:
        _coarse_only()
        return
    if not (_COARSE.value and _FINE.value and _OUTPUT.value and inputs):
        raise app.UsageError("--coarse, --fine, --output and at least one INPUT are required.")
    from tqdm import tqdm

    try:
        found = series.find_series(inputs)
        models, runs = _load_models(_BACKEND.value, _COARSE.value, _FINE.value)
        output = inference.check_output_folder(_OUTPUT.value)
    except (OSError, ValueError) as e:
        sys.exit(f"error: {e}")
    failed = []
    names = series.output_names(found)
    for source, name in tqdm(list(zip(found, names, strict=True)), unit="series"):
        try:
            summary = inference.predict_series(
                *models,
                source,
                output,
                name,
                flip_lr=_FLIP_TTA.value,
                runs=runs,
            )
        except (OSError, ValueError) as e:
            failed.append(source)
            tqdm.write(f"error: {e}", file=sys.stderr)
            continue
        found_parts = {
            k: len(v["components"])
            for k, v in summary["structures"].items()
            if k in ("vertebral_body", "intervertebral_disc")
        }
        tqdm.write(
            f"{name}: {found_parts['vertebral_body']} bodies, "
            f"{found_parts['intervertebral_disc']} discs, "
            f"{summary['cascade']['seconds']['total']:.2f} s"
        )
    print(f"{len(found) - len(failed)} of {len(found)} series predicted into {output}.")
    if failed:
        sys.exit(f"error: {len(failed)} series failed: {', '.join(map(str, failed))}")


if __name__ == "__main__":
    app.run(main)
