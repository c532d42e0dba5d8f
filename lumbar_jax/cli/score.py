"""Scores one trained stage on a dataset: Dice per structure in the network's input space.

  python -m lumbar_jax score --workdir=RUN --data=DIR [--layout=auto] [--label_map='1-5:2']
      [--split=all]

Loads the run's config.json and its best checkpoint (else the latest; or the checkpoint
--workdir names), prepares every case of the split as the stage was trained (the fine stage
crops around the labelled structures), and prints the Dice table beside the paper's.
Structures a dataset does not label are n/a.
"""

from __future__ import annotations

import json
import math

from absl import flags

from lumbar_jax.cli import common
from lumbar_jax.data import datasets
from lumbar_jax.evaluation import cases, predictors, reports
from lumbar_jax.evaluation.evaluator import Evaluation, Evaluator
from lumbar_jax.inference import jax_stage
from lumbar_jax.labels import STRUCTURES

_WORKDIR = flags.DEFINE_string("workdir", None, "A training run folder or checkpoint.")
_DATA = flags.DEFINE_string("data", None, "Dataset folder.")
_LAYOUT = flags.DEFINE_enum("layout", "auto", datasets.LAYOUTS, "Dataset layout.")
_LABEL_MAP = flags.DEFINE_string("label_map", "", "Dataset values -> ours, e.g. '1-5:2'.")
_SPLIT = flags.DEFINE_string("split", "all", "Split to score, or 'all' cases.")


def score(workdir, data, layout="auto", label_map="", split="all") -> Evaluation:
    """A run's (or checkpoint's) Dice on a dataset split, stage "network"."""
    stage = jax_stage.load_stage(workdir)
    config = stage.config
    dataset = datasets.load_dataset_or_mix(data, layout, label_map)
    split = dataset.with_all_split(split)
    with config.unlocked():
        config.data.root = str(data)
    evaluator = Evaluator(cases.network_cases(config, dataset, split))
    return evaluator(predictors.NetworkPredictor(config)(stage.params))


def main(argv: list[str]) -> None:
    del argv
    common.require("workdir", "data")
    ev = score(_WORKDIR.value, _DATA.value, _LAYOUT.value, _LABEL_MAP.value, _SPLIT.value)
    n = len(ev.case_ids)
    title = f"{_WORKDIR.value} on {_DATA.value} ({_SPLIT.value}, {n} cases), network input space:"
    print(reports.dice_table(ev, "network", title))
    means = [None if math.isnan(v) else float(v) for v in ev.dice_summary("network")["mean"]]
    print(json.dumps({"cases": n, "mean_dice": dict(zip(STRUCTURES, means, strict=True))}))


cli = common.command(main)

if __name__ == "__main__":
    cli()
