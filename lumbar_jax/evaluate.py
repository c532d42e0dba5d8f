"""Evaluates a cascade on a dataset split, in the paper's terms and a few more.

  python -m lumbar_jax.evaluate --coarse=RUN --fine=RUN --data=DATASET [--split=test]
      --output=DIR [--layout=auto] [--label_map=...] [--flip_tta]

Every case is predicted from its image file as ``predict`` would (whole series -> coarse ->
crop -> fine -> back on the series' grid) and compared with its reference on the series' own
grid: Dice, HD95 and ASSD (mm) per structure, for the coarse stage alone and the cascade; the
paper's "satisfactory" rate per structure (``satisfaction``). DIR receives evaluation.md
(the tables beside the paper's), per_case.csv and evaluation.json.
"""

from __future__ import annotations

import sys
import time

from absl import app, flags, logging

from lumbar_jax import evaluation
from lumbar_jax.data import datasets

_COARSE = flags.DEFINE_string("coarse", None, "Coarse-stage run folder or checkpoint.")
_FINE = flags.DEFINE_string("fine", None, "Fine-stage run folder or checkpoint.")
_DATA = flags.DEFINE_string("data", None, "Dataset folder.")
_LAYOUT = flags.DEFINE_string("layout", "auto", "Dataset layout.")
_LABEL_MAP = flags.DEFINE_string("label_map", "", "Dataset values -> ours, e.g. '1-5:2'.")
_SPLIT = flags.DEFINE_string("split", "test", "Split to evaluate, or 'all' cases.")
_OUTPUT = flags.DEFINE_string("output", None, "Folder for the reports (created).")
_FLIP_TTA = flags.DEFINE_bool("flip_tta", False, "Left-right flip test-time augmentation.")


def main(argv: list[str]) -> None:
    del argv
    if not flags.FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)
    if not (_COARSE.value and _FINE.value and _DATA.value and _OUTPUT.value):
        raise app.UsageError("--coarse, --fine, --data and --output are required.")
    from lumbar_jax import inference, stage  # JAX only once the arguments are sane

    start = time.perf_counter()
    try:
        dataset = datasets.load_dataset(_DATA.value, _LAYOUT.value, _LABEL_MAP.value)
        if _SPLIT.value == "all":
            dataset.splits["all"] = sorted(dataset.cases)
        dataset.split(_SPLIT.value)  # fails early on an unknown split
        output = inference.check_output_folder(_OUTPUT.value)
        coarse, fine = stage.load_cascade(_COARSE.value, _FINE.value)
        ev = evaluation.evaluate(
            coarse.cascade_model(),
            fine.cascade_model(),
            dataset,
            _SPLIT.value,
            flip_lr=_FLIP_TTA.value,
            progress=True,
        )
    except (OSError, ValueError) as e:
        sys.exit(f"error: {e}")
    title = f"Evaluation: {_SPLIT.value} split of {_DATA.value} ({len(ev.case_ids)} cases)"
    meta = {
        "data": str(_DATA.value),
        "split": _SPLIT.value,
        "cases": ev.case_ids,
        "coarse_run": f"{coarse.source} (step {coarse.step})",
        "fine_run": f"{fine.source} (step {fine.step})",
        "flip_tta": _FLIP_TTA.value,
    }
    evaluation.write_reports(ev, output, title, meta)
    print(evaluation.markdown(ev, title, max_missed=20))
    print(f"Reports in {output} ({time.perf_counter() - start:.0f} s).")


if __name__ == "__main__":
    app.run(main)
