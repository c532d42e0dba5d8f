"""Scores one trained stage on a dataset: Dice per structure in the network's input space.

  python -m lumbar_jax.score --workdir=RUN --data=DIR [--layout=auto] [--label_map='1-5:2']
      [--split=all]

Loads the run's config.json and its best checkpoint (else the latest; or the checkpoint
--workdir names), prepares every case of the split as the stage was trained (the fine stage
crops around the labelled structures), and prints the Dice table beside the paper's. Structures a dataset does not label are n/a.
"""

from __future__ import annotations

import functools
import json
import math
import sys

import jax
from absl import app, flags, logging

from lumbar_jax import STRUCTURES, metrics, trainer, validation
from lumbar_jax import stage as stage_lib
from lumbar_jax.data import datasets

_WORKDIR = flags.DEFINE_string("workdir", None, "A training run folder.")
_DATA = flags.DEFINE_string("data", None, "Dataset folder.")
_LAYOUT = flags.DEFINE_string("layout", "auto", "Dataset layout.")
_LABEL_MAP = flags.DEFINE_string("label_map", "", "Dataset values -> ours, e.g. '1-5:2'.")
_SPLIT = flags.DEFINE_string("split", "all", "Split to score, or 'all' cases.")


def score(workdir, data, layout="auto", label_map="", split="all") -> tuple[dict, int]:
    """(Dice summary, number of cases) of a run (or checkpoint) on a dataset split."""
    stage = stage_lib.load_stage(workdir)
    config, params = stage.config, stage.params
    dataset = datasets.load_dataset(data, layout, label_map)
    if split == "all":
        dataset.splits["all"] = sorted(dataset.cases)
    with config.unlocked():
        config.data.root = str(data)
    predict_fn = jax.jit(
        functools.partial(validation.predict_labels, model=trainer.make_model(config))
    )
    samples = validation.split_samples(config, dataset, split)
    summary, dice_nc = validation.evaluate_samples(
        predict_fn, params, samples, config.data.num_classes
    )
    return summary, len(dice_nc)


def main(argv: list[str]) -> None:
    del argv
    if not flags.FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)
    if not _WORKDIR.value or not _DATA.value:
        raise app.UsageError("--workdir and --data are required.")
    try:
        summary, n = score(
            _WORKDIR.value, _DATA.value, _LAYOUT.value, _LABEL_MAP.value, _SPLIT.value
        )
    except (ValueError, FileNotFoundError) as e:
        sys.exit(f"error: {e}")
    title = f"{_WORKDIR.value} on {_DATA.value} ({_SPLIT.value}, {n} cases), network input space:"
    print(metrics.dice_table(summary, STRUCTURES, title))
    means = [None if math.isnan(v) else float(v) for v in summary["mean"]]
    print(json.dumps({"cases": n, "mean_dice": dict(zip(STRUCTURES, means, strict=True))}))


if __name__ == "__main__":
    app.run(main)
