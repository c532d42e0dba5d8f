"""Validation during training and the final test: the evaluator on a split, the best checkpoint."""

from __future__ import annotations

import math
from typing import Any

import ml_collections

from lumbar_jax.checkpoint import Checkpoints
from lumbar_jax.data.datasets import Dataset
from lumbar_jax.evaluation import cases, reports
from lumbar_jax.evaluation.evaluator import Evaluation, Evaluator
from lumbar_jax.evaluation.predictors import NetworkPredictor

STAGE = "network"  # the evaluator's name for a network scored alone, in its input space


class Validation:
    """Scores the parameters on the validation split and keeps the best as a checkpoint.

    The split's samples are prepared on first use and kept, so later validations only run the
    network. All processes call it (orbax saves are collective); only the lead's writer
    reports.
    """

    def __init__(
        self, config: ml_collections.ConfigDict, dataset: Dataset, ckpt: Checkpoints, writer: Any
    ):
        self.config, self.dataset, self.ckpt, self.writer = config, dataset, ckpt, writer
        self.predictor = NetworkPredictor(config)
        self.best: dict | None = ckpt.best_record()
        self._evaluator: Evaluator | None = None

    def __call__(self, step: int, epoch: int, params: Any) -> float:
        """Validates ``params`` after ``step``; returns the mean Dice over structures."""
        if self._evaluator is None:
            split = self.config.data.val_split
            self._evaluator = Evaluator(cases.network_cases(self.config, self.dataset, split))
        ev = self._evaluator(self.predictor(params))
        mean = ev.mean_dice(STAGE)
        if not math.isnan(mean) and (self.best is None or mean > self.best["score"]):
            self.best = {"step": step, "epoch": epoch, "score": mean}
            self.ckpt.save_best(step, params, self.best)
        self.writer.write(
            {
                "step": step,
                "epoch": epoch,
                "val_dice": reports.named(ev.dice_summary(STAGE)["mean"]),
                "val_mean_dice": mean,
            }
        )
        self.writer.plot()
        best = self.best or {"score": float("nan"), "step": "-"}
        self.writer.note(
            f"epoch {epoch}: validation mean Dice {mean:.4f} "
            f"(best {best['score']:.4f} at step {best['step']})"
        )
        return mean

    def test(self, params: Any, final_step: int) -> Evaluation:
        """Scores the best parameters (else ``params``) on the test split; writes test_dice.*"""
        if self.best is not None:
            params = self.ckpt.restore_best_params(params)
        split = self.config.data.test_split
        ev = Evaluator(cases.network_cases(self.config, self.dataset, split))(
            self.predictor(params)
        )
        source = (
            f"best checkpoint, step {self.best['step']}"
            if self.best
            else f"final step {final_step}"
        )
        title = (
            f"Test split ({len(ev.case_ids)} cases), {self.config.stage} stage, network input "
            f"space, {source}:"
        )
        texts = reports.dice_report(ev, STAGE, title, {"split": split, "source": source})
        self.writer.write_files(texts)
        self.writer.print(texts["test_dice.md"])
        return ev
