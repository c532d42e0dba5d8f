"""Overlap metrics, as the paper reports them (Dice per structure)."""

from __future__ import annotations

import warnings

import numpy as np


def dice_per_class(
    pred_dhw: np.ndarray,
    ref_dhw: np.ndarray,
    num_classes: int,
    labeled_c: np.ndarray | None = None,
) -> np.ndarray:
    """Dice of every foreground class 1..num_classes-1 between two label maps.

    Returns:
      float array (num_classes - 1,). NaN where a class is absent from both maps (Dice is
      undefined there, as in nnU-Net and MONAI's ``ignore_empty``) or not labelled in the
      reference (``labeled_c[c]`` False); aggregate with ``np.nanmean``.
    """
    pred = np.asarray(pred_dhw).ravel()
    ref = np.asarray(ref_dhw).ravel()
    if pred.shape != ref.shape:
        raise ValueError(
            f"Prediction {np.shape(pred_dhw)} and reference {np.shape(ref_dhw)} differ."
        )
    # One pass over the voxels: a confusion matrix via bincount.
    confusion = np.bincount(
        ref.astype(np.int64) * num_classes + pred.astype(np.int64),
        minlength=num_classes * num_classes,
    ).reshape(num_classes, num_classes)
    tp = np.diag(confusion)[1:].astype(np.float64)
    ref_total = confusion.sum(axis=1)[1:]
    pred_total = confusion.sum(axis=0)[1:]
    denominator = ref_total + pred_total
    with np.errstate(invalid="ignore", divide="ignore"):
        dice = np.where(denominator > 0, 2 * tp / denominator, np.nan)
    if labeled_c is not None:
        dice = np.where(np.asarray(labeled_c, bool)[1:], dice, np.nan)
    return dice


def summarize(dice_nc: np.ndarray) -> dict[str, np.ndarray]:
    """Mean, min, max and count over cases of per-case, per-class Dice (NaN ignored)."""
    dice_nc = np.asarray(dice_nc, np.float64).reshape(-1, np.shape(dice_nc)[-1])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns stay NaN
        return {
            "mean": np.nanmean(dice_nc, axis=0),
            "min": np.nanmin(dice_nc, axis=0),
            "max": np.nanmax(dice_nc, axis=0),
            "count": np.sum(~np.isnan(dice_nc), axis=0),
        }


# Test-set Dice reported by the paper (Guo et al. 2022, 11 series): (mean, min, max).
PAPER_DICE = {
    "vertebral_body": (0.864, 0.82, 0.90),
    "intervertebral_disc": (0.898, 0.86, 0.92),
    "intervertebral_foramen": (0.670, 0.60, 0.76),
    "spinal_canal": (0.837, 0.76, 0.87),
    "cord_cauda_equina": (0.669, 0.55, 0.90),
}


def dice_table(summary: dict[str, np.ndarray], structures: tuple[str, ...], title: str) -> str:
    """Markdown table of a ``summarize`` result beside the paper's numbers."""
    lines = [
        f"{title}",
        "",
        "| structure | Dice mean | Dice min-max | cases | paper mean | paper min-max |",
        "|---|---|---|---|---|---|",
    ]
    for i, name in enumerate(structures):
        mean, lo, hi, n = (summary[k][i] for k in ("mean", "min", "max", "count"))
        p_mean, p_lo, p_hi = PAPER_DICE[name]
        ours = "n/a" if n == 0 else f"{mean:.3f}"
        ours_range = "n/a" if n == 0 else f"{lo:.2f}-{hi:.2f}"
        lines.append(
            f"| {name} | {ours} | {ours_range} | {n} | {p_mean:.3f} | {p_lo:.2f}-{p_hi:.2f} |"
        )
    return "\n".join(lines)
