"""Validation and test during training: Dice per structure in the network's input space."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import flax.linen as nn
import jax.numpy as jnp
import ml_collections
import numpy as np

from lumbar_jax import STRUCTURES, metrics
from lumbar_jax.data import pipeline


def predict_labels(params: Any, image_bdhwc: jnp.ndarray, *, model: nn.Module) -> jnp.ndarray:
    """Argmax label map (b, d, h, w) uint8 of a model's logits."""
    logits = model.apply({"params": params}, image_bdhwc)
    return jnp.argmax(logits, axis=-1).astype(jnp.uint8)


def evaluate_samples(
    predict_fn, params: Any, samples: list[dict[str, np.ndarray]], num_classes: int
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Dice per structure per case, in the network's input space.

    Args:
      predict_fn: ``(params, image_bdhwc) -> labels_bdhw``.
      params: model parameters.
      samples: un-augmented samples (``pipeline.eval_samples``), one per case.
      num_classes: background + structures.

    Returns:
      (summary from ``metrics.summarize``, per-case Dice (cases, structures)).
    """
    rows = []
    for sample in samples:
        pred = np.asarray(predict_fn(params, sample["image_dhwc"][None]))[0]
        rows.append(
            metrics.dice_per_class(pred, sample["label_dhw"], num_classes, sample["labeled_c"])
        )
    dice_nc = np.stack(rows) if rows else np.full((0, len(STRUCTURES)), np.nan)
    return metrics.summarize(dice_nc), dice_nc


def split_samples(config: ml_collections.ConfigDict, dataset, split: str) -> list[dict]:
    """Every case of a split, prepared once for repeated evaluation."""
    return [sample for _, sample in pipeline.eval_samples(config, dataset, split)]


def named(values: np.ndarray) -> dict[str, float | None]:
    """Per-structure values by name, NaN as None (JSON-ready)."""
    return {
        n: (None if np.isnan(v) else round(float(v), 4))
        for n, v in zip(STRUCTURES, values, strict=True)
    }


def write_test_report(config, workdir: Path, summary, dice_nc, best, final_step: int) -> None:
    """Prints the test Dice table and writes test_dice.md and test_dice.json."""
    source = f"best checkpoint, step {best['step']}" if best else f"final step {final_step}"
    table = metrics.dice_table(
        summary,
        STRUCTURES,
        f"Test split ({len(dice_nc)} cases), {config.stage} stage, network input space, {source}:",
    )
    print(table, flush=True)
    (workdir / "test_dice.md").write_text(table + "\n")
    report = {
        "split": config.data.test_split,
        "source": source,
        **{k: named(summary[k]) for k in ("mean", "min", "max")},
    }
    (workdir / "test_dice.json").write_text(json.dumps(report, indent=2) + "\n")
