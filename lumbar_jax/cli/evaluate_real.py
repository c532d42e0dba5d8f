"""Scores a cascade on the real series in ``../shared/data/real``, in one line.

  python -m lumbar_jax evaluate_real --coarse=RUN --fine=RUN --output=DIR
      [--root=../shared/data/real] [--only=case20,case10,case12] [--[no]flip_tta]
      [--background_scale=S[,S,S,S,S]] [--tile_step=F] [--box_scales=1,1.1,1.2]

Each partially labelled set there is evaluated whole (split "all") with its label map:
``lumbar_discs_t2`` (discs 1-5 -> disc) and ``lumbar_vertebral_bodies_t2`` (bodies 1-7 ->
vertebral body); the structures a set does not label are left out. These sets label only
some levels (discs L1/L2 to L5/S1; bodies T11 to L5), while the cascade segments every body
and disc in view (the thoracic ones above, the sacrum below), so each is also scored within
the levels its reference labels: rows from the top of its highest labelled structure to the
bottom of its lowest, plus ``--level_margin_mm`` (stages "coarse, labelled levels" and
"cascade, labelled levels"). DIR receives, per set,
the ``evaluate`` reports in DIR/<set>/, and DIR/real_scans.md: Dice per series and per set,
coarse stage alone and cascade, and an overlay of the first series of each set with its
prediction (DIR/<set>/<series>.png) beside its reference (DIR/<set>/<series>_reference.png).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from absl import flags

from lumbar_jax.cli import common
from lumbar_jax.data import datasets, io, prepared, transforms
from lumbar_jax.evaluation import cases, predictors, reports
from lumbar_jax.evaluation.evaluator import EvalCase, Evaluation, Evaluator
from lumbar_jax.files import write_text
from lumbar_jax.inference import backends, overlay, writer
from lumbar_jax.labels import STRUCTURES

# The real sets and how their labels map onto ours (see the README in that folder).
REAL_SETS = {
    "lumbar_discs_t2": "1-5:2",
    "lumbar_vertebral_bodies_t2": "1-7:1",
}
_DEFAULT_ROOT = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "real"

_COARSE = flags.DEFINE_string("coarse", None, "Coarse stage: run, checkpoint or .onnx file.")
_FINE = flags.DEFINE_string("fine", None, "Fine stage: run, checkpoint or .onnx file.")
_ROOT = flags.DEFINE_string("root", str(_DEFAULT_ROOT), "The folder of the real sets.")
_OUTPUT = flags.DEFINE_string("output", None, "Folder for the reports (created).")
_FLIP_TTA = flags.DEFINE_bool(
    "flip_tta",
    None,
    "Left-right flip test-time augmentation (--noflip_tta: none); default: as the fine run's "
    "inference.flip_tta says.",
)
_BACKGROUND_SCALE = flags.DEFINE_list(
    "background_scale",
    None,
    "Decide the fine stage's labels with this background scale, one for every structure "
    "or five in label order (e.g. 0.4,0.4,0.7,0.4,0.3; inference/cascade.decide) instead of "
    "the fine run's own.",
)
_TILE_STEP = flags.DEFINE_float(
    "tile_step",
    None,
    "Place the fine stage's tiles at most this share of a tile apart "
    "(transforms.sliding_tiles; nnU-Net's tile_step_size; 0: as in training) instead of the "
    "fine run's own.",
)
_BOX_SCALES = flags.DEFINE_list(
    "box_scales",
    None,
    "Predict each fine tile also with its box scaled in-plane by these (e.g. 1,1.1,1.2; "
    "transforms.scaled_boxes) instead of the fine run's inference.box_scales.",
)
_ONLY = flags.DEFINE_list(
    "only", [], "Score only these series (e.g. those a fine-tuning held out: case20,case10)."
)
_LEVEL_MARGIN = flags.DEFINE_float(
    "level_margin_mm", 5.0, "Rows kept above and below the labelled levels (mm)."
)


def within_labelled_levels(predict: predictors.Predictor, margin_mm: float) -> predictors.Predictor:
    """Adds, for each stage, its prediction cut to the superior-inferior rows the reference
    labels (plus a margin): a structure a set does not label there is no error."""

    def predict_both(case: EvalCase) -> dict[str, np.ndarray]:
        out = predict(case)
        rows = np.nonzero(case.reference_dhw.any(axis=(0, 2)))[0]
        if rows.size == 0:
            return out
        margin = round(margin_mm / case.spacing_dhw[1])
        low, high = max(int(rows.min()) - margin, 0), int(rows.max()) + margin + 1
        for stage in list(out):
            cut = np.zeros_like(out[stage])
            cut[:, low:high] = out[stage][:, low:high]
            out[f"{stage}, labelled levels"] = cut
        return out

    return predict_both


def _rows(name: str, ev: Evaluation, labeled: tuple[bool, ...]) -> list[str]:
    """One Markdown row per series and stage: the Dice of each structure the set labels."""
    scored = [i for i, s in enumerate(STRUCTURES) if labeled[i + 1]]
    rows = []
    for n, case_id in enumerate(ev.case_ids):
        for stage in ev.stages:
            dice = ", ".join(f"{STRUCTURES[i]} {ev.dice[stage][n, i]:.3f}" for i in scored)
            rows.append(f"| {name} | {case_id} | {stage} | {dice} |")
    for stage in ev.stages:
        mean = ev.dice_summary(stage)["mean"]
        dice = ", ".join(f"{STRUCTURES[i]} **{mean[i]:.3f}**" for i in scored)
        rows.append(f"| {name} | mean of {len(ev.case_ids)} | {stage} | {dice} |")
    return rows


def _reference_overlay(
    case: datasets.Case, dataset: datasets.Dataset, predicted: Path, path: Path
) -> None:
    """The reference on the slices the prediction's overlay shows."""
    volume = io.read_canonical(case.image_path)
    reference = prepared.read_label(case, dataset, volume)
    panels = overlay.panel_slices(io.read_canonical(predicted).array_dhw, volume.spacing_dhw)
    windowed = transforms.auto_window(volume.array_dhw, source=case.image_path)
    overlay.overlay_png(
        windowed,
        reference,
        volume.spacing_dhw,
        path,
        title=f"{case.case_id}: reference",
        panels=panels,
    )


def main(argv: list[str]) -> None:
    del argv
    common.require("coarse", "fine", "output")
    box_scales = common.float_list("box_scales")
    background_scale = common.background_scale()
    loaded = backends.load_cascade(_COARSE.value, _FINE.value)
    loaded = loaded.with_background_scale(background_scale).with_tile_step(_TILE_STEP.value)
    loaded = loaded.with_flip_tta(_FLIP_TTA.value).with_box_scales(box_scales)
    output = writer.check_output_folder(_OUTPUT.value)
    predict = within_labelled_levels(
        predictors.cascade_predictor(loaded.coarse, loaded.fine),
        _LEVEL_MARGIN.value,
    )
    lines = ["| set | series | stage | Dice |", "|---|---|---|---|"]
    for name, label_map in REAL_SETS.items():
        dataset = datasets.load_dataset(Path(_ROOT.value) / name, "folder", label_map)
        split = dataset.with_all_split("all")
        if _ONLY.value:
            dataset.splits[split] = [c for c in dataset.splits[split] if c in _ONLY.value]
            if not dataset.splits[split]:
                continue
        evaluator = Evaluator(lambda d=dataset, s=split: cases.series_cases(d, s), surface=True)
        ev = evaluator(predict, progress=True)
        folder = writer.check_output_folder(output / name)
        title = f"Real series: {name} ({len(ev.case_ids)} series, label map {label_map})"
        reports.write_reports(ev, folder, title, {"data": str(dataset.root), "split": split})
        lines += _rows(name, ev, dataset.labeled_classes)
        first = dataset.split(split)[0]
        summary = writer.predict_series(
            loaded.coarse,
            loaded.fine,
            first.image_path,
            folder,
            first.case_id,
        )
        predicted = folder / summary["outputs"]["labels"]
        _reference_overlay(first, dataset, predicted, folder / f"{first.case_id}_reference.png")
    table = "\n".join(lines) + "\n"
    write_text(output / "real_scans.md", table)
    print(table)
    print(f"Reports and overlays in {output}; runs: {loaded.description()}.")


cli = common.command(main)

if __name__ == "__main__":
    cli()
