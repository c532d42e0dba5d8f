"""Evaluates a cascade on a dataset split, in the paper's terms and a few more.

  python -m lumbar_jax evaluate --coarse=RUN --fine=RUN --data=DATASET [--split=test]
      --output=DIR [--layout=auto] [--label_map=...] [--[no]flip_tta] [--background_scale=S[,S,S,S,S]]
      [--tile_step=F] [--box_scales=1,1.1,1.2]

Every case is predicted from its image file as ``predict`` would (whole series -> coarse ->
crop -> fine -> back on the series' grid) and compared with its reference on the series' own
grid: Dice, HD95 and ASSD (mm) per structure, for the coarse stage alone and the cascade; the
paper's "satisfactory" rate per structure; where the dataset has the phantom's truth files,
level naming accuracy and measurement errors (``evaluation/levels.py``). RUN may also be an exported ``.onnx`` model (both
stages then run with onnxruntime). DIR receives evaluation.md (the tables beside the paper's),
per_case.csv and evaluation.json.
"""

from __future__ import annotations

import time

from absl import flags

from lumbar_jax.cli import common
from lumbar_jax.data import datasets
from lumbar_jax.evaluation import cases, levels, predictors, reports
from lumbar_jax.evaluation.evaluator import Evaluator
from lumbar_jax.inference import backends, writer

_COARSE = flags.DEFINE_string("coarse", None, "Coarse stage: run, checkpoint or .onnx file.")
_FINE = flags.DEFINE_string("fine", None, "Fine stage: run, checkpoint or .onnx file.")
_BACKEND = flags.DEFINE_enum("backend", "auto", backends.BACKENDS, "Who runs the networks.")
_DATA = flags.DEFINE_string("data", None, "Dataset folder.")
_LAYOUT = flags.DEFINE_enum("layout", "auto", datasets.LAYOUTS, "Dataset layout.")
_LABEL_MAP = flags.DEFINE_string("label_map", "", "Dataset values -> ours, e.g. '1-5:2'.")
_SPLIT = flags.DEFINE_string("split", "test", "Split to evaluate, or 'all' cases.")
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


def main(argv: list[str]) -> None:
    del argv
    common.require("coarse", "fine", "data", "output")
    box_scales = common.float_list("box_scales")
    background_scale = common.background_scale()
    start = time.perf_counter()
    dataset = datasets.load_dataset_or_mix(_DATA.value, _LAYOUT.value, _LABEL_MAP.value)
    split = dataset.with_all_split(_SPLIT.value)
    output = writer.check_output_folder(_OUTPUT.value)
    loaded = backends.load_cascade(_COARSE.value, _FINE.value, _BACKEND.value)
    loaded = loaded.with_background_scale(background_scale).with_tile_step(_TILE_STEP.value)
    loaded = loaded.with_flip_tta(_FLIP_TTA.value).with_box_scales(box_scales)
    # Level names and measurements too, where the dataset has the phantom's truth files.
    truths = levels.load_truths(dataset, split)
    scorer = levels.LevelScorer(truths, dataset.labeled_classes) if truths else None
    evaluator = Evaluator(
        lambda: cases.series_cases(dataset, split), surface=True, instances=True, on_case=scorer
    )
    ev = evaluator(predictors.cascade_predictor(loaded.coarse, loaded.fine), progress=True)
    title = f"Evaluation: {split} split of {_DATA.value} ({len(ev.case_ids)} cases)"
    meta = {
        "data": str(_DATA.value),
        "split": split,
        "cases": ev.case_ids,
        **loaded.description(),
        "flip_tta": loaded.fine.flip_tta,
        "background_scale": loaded.fine.background_scale,
        "tile_step": loaded.fine.tile_step,
        "box_scales": list(loaded.fine.box_scales),
    }
    extra = {"levels": (scorer.markdown(), scorer.summary())} if scorer else None
    reports.write_reports(ev, output, title, meta, extra)
    print(reports.markdown(ev, title, max_missed=20))
    if scorer:
        print(scorer.markdown())
    print(f"Reports in {output} ({time.perf_counter() - start:.0f} s).")


cli = common.command(main)

if __name__ == "__main__":
    cli()
