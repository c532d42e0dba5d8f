"""Segmentation losses: softmax cross-entropy plus soft Dice over the foreground classes.

Both honour ``labeled_bc``, which classes each case labels. A class a case does not label is
left out of its Dice term, and for cross-entropy its probability is merged into background
(the "marginal" loss), since an unlabelled voxel may belong to it.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def marginal_cross_entropy(
    logits_bdhwc: jnp.ndarray,
    label_bdhw: jnp.ndarray,
    labeled_bc: jnp.ndarray,
    class_weights_c: jnp.ndarray | None = None,
) -> jnp.ndarray:
    """Mean voxel cross-entropy; unlabelled classes count as background.

    Args:
      logits_bdhwc: network output.
      label_bdhw: reference labels.
      labeled_bc: which classes each case labels.
      class_weights_c: optional weight of each voxel's cross-entropy by its reference class.
        The mean stays over voxels (not over weights), so equal shards of a batch still
        average to the whole batch's value.
    """
    log_probs = jax.nn.log_softmax(logits_bdhwc.astype(jnp.float32), axis=-1)
    num_classes = logits_bdhwc.shape[-1]
    # Background absorbs every class the case does not label.
    absorbed = (~labeled_bc).at[:, 0].set(True)[:, None, None, None, :]
    log_background = jax.nn.logsumexp(jnp.where(absorbed, log_probs, -jnp.inf), axis=-1)
    one_hot = jax.nn.one_hot(label_bdhw, num_classes, dtype=jnp.bool_)
    log_true = jnp.sum(jnp.where(one_hot, log_probs, 0.0), axis=-1)
    is_background = jnp.take_along_axis(absorbed, label_bdhw[..., None], axis=-1)[..., 0]
    log_likelihood = jnp.where(is_background, log_background, log_true)
    if class_weights_c is not None:
        weights = jnp.asarray(class_weights_c, jnp.float32)
        log_likelihood = log_likelihood * jnp.where(is_background, weights[0], weights[label_bdhw])
    return -jnp.mean(log_likelihood)


def soft_dice_loss(
    logits_bdhwc: jnp.ndarray,
    label_bdhw: jnp.ndarray,
    labeled_bc: jnp.ndarray,
    smooth: float = 1e-5,
) -> jnp.ndarray:
    """Mean over cases of (1 - soft Dice), averaged over each case's labelled foreground classes."""
    probs = jax.nn.softmax(logits_bdhwc.astype(jnp.float32), axis=-1)[..., 1:]
    one_hot = jax.nn.one_hot(label_bdhw, logits_bdhwc.shape[-1], dtype=jnp.float32)[..., 1:]
    axes = (1, 2, 3)
    intersection = jnp.sum(probs * one_hot, axis=axes)
    denominator = jnp.sum(probs, axis=axes) + jnp.sum(one_hot, axis=axes)
    dice_bc = (2 * intersection + smooth) / (denominator + smooth)
    weight_bc = labeled_bc[:, 1:].astype(jnp.float32)
    # Per-sample means, then the batch mean: equal shards of a batch average to the same
    # value, which keeps data-parallel training identical to one device.
    loss_b = jnp.sum((1.0 - dice_bc) * weight_bc, axis=1) / jnp.maximum(
        jnp.sum(weight_bc, axis=1), 1.0
    )
    return jnp.mean(loss_b)


def segmentation_loss(
    logits_bdhwc: jnp.ndarray,
    label_bdhw: jnp.ndarray,
    labeled_bc: jnp.ndarray,
    ce_weight: float = 1.0,
    dice_weight: float = 1.0,
    class_weights_c: jnp.ndarray | None = None,
) -> tuple[jnp.ndarray, dict[str, jnp.ndarray]]:
    """Weighted sum of both terms; returns (loss, {"ce": ..., "dice_loss": ...})."""
    ce = marginal_cross_entropy(logits_bdhwc, label_bdhw, labeled_bc, class_weights_c)
    dice = soft_dice_loss(logits_bdhwc, label_bdhw, labeled_bc)
    return ce_weight * ce + dice_weight * dice, {"ce": ce, "dice_loss": dice}


def downsample_labels(label_bdhw: jnp.ndarray, factors_dhw: tuple[int, int, int]) -> jnp.ndarray:
    """Nearest-neighbour labels at a coarser grid: the middle voxel of each block."""
    fd, fh, fw = factors_dhw
    return label_bdhw[:, fd // 2 :: fd, fh // 2 :: fh, fw // 2 :: fw]


def deep_supervision_weights(levels: int) -> list[float]:
    """nnU-Net's weights: halving per level, normalised to sum to one."""
    raw = [0.5**i for i in range(levels)]
    return [w / sum(raw) for w in raw]


def multiscale_loss(
    logits_per_level: list[jnp.ndarray],
    label_bdhw: jnp.ndarray,
    labeled_bc: jnp.ndarray,
    pool_factors: tuple[tuple[int, int, int], ...],
    **loss_options,
) -> tuple[jnp.ndarray, dict[str, jnp.ndarray]]:
    """``segmentation_loss`` at full resolution and at each deep-supervised coarser level.

    Args:
      logits_per_level: full-resolution logits, then those of decoder levels 1, 2, ...
      label_bdhw: full-resolution labels.
      labeled_bc: which classes each case labels.
      pool_factors: the network's pooling per level (level k's grid is the input divided by
        the product of the first k factors).
      **loss_options: ``segmentation_loss``'s weights.

    Returns:
      (weighted loss, the full-resolution level's parts).
    """
    weights = deep_supervision_weights(len(logits_per_level))
    total, parts, factors = 0.0, None, (1, 1, 1)
    for level, (logits, weight) in enumerate(zip(logits_per_level, weights, strict=True)):
        if level:
            factors = tuple(f * p for f, p in zip(factors, pool_factors[level - 1], strict=True))
        labels = downsample_labels(label_bdhw, factors)
        loss, level_parts = segmentation_loss(logits, labels, labeled_bc, **loss_options)
        total, parts = total + weight * loss, parts or level_parts
    return total, parts
