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
    if len(dice_nc) == 0:
        nan = np.full(dice_nc.shape[1], np.nan)
        return {"mean": nan, "min": nan, "max": nan, "count": np.zeros(dice_nc.shape[1], int)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns stay NaN
        return {
            "mean": np.nanmean(dice_nc, axis=0),
            "min": np.nanmin(dice_nc, axis=0),
            "max": np.nanmax(dice_nc, axis=0),
            "count": np.sum(~np.isnan(dice_nc), axis=0),
        }
