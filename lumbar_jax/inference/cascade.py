"""Coarse-to-fine inference on one series, in numpy: any backend supplies the networks.

The coarse stage sees the whole series at its input shape; a box around what it finds (plus
the fine stage's margin) is resampled to the fine stage's shape; the fine stage's class
probabilities are resampled back onto the series' own grid, where the argmax is taken. This
module imports no JAX, so the ONNX backend runs it with onnxruntime and numpy alone.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence

import numpy as np
from scipy import ndimage

from lumbar_jax.data import transforms
from lumbar_jax.labels import STRUCTURES

# (b, d, h, w, 1) windowed float32 images -> (b, d, h, w, classes) probabilities.
ProbabilityFn = Callable[[np.ndarray], np.ndarray]


@dataclasses.dataclass(frozen=True)
class StageModel:
    """What the cascade needs of one stage.

    Attributes:
      input_shape_dhw: the network's input shape.
      crop_margin_mm: margin around the coarse result (used by the fine stage).
      window_percentiles: automatic window of the stage's training data.
      probabilities: the network, as a probability map of a batch of windowed images.
      background_scale: per structure (label order), the background's probability is
        multiplied by this before it meets that structure's (``decide``); all 1: the plain
        argmax.
      crop_tiles: the fine crop is cut into this many tiles along the spine, each predicted
        on its own and blended (``transforms.tile_boxes``).
      crop_tile_overlap: the share of a tile its neighbours overlap in training.
      tile_step: at inference, neighbouring tiles lie at most this share of a tile apart
        (``transforms.sliding_tiles``; nnU-Net's ``tile_step_size``); 0: as in training,
        1 - ``crop_tile_overlap``.
      flip_tta: the cascade (with this fine stage) averages each stage's probabilities with
        those of the left-right mirrored series (twice the network time) unless told otherwise.
      box_scales: each fine tile is also predicted with its box scaled in-plane by each of
        these about its centre, and all are blended (``transforms.scaled_boxes``); (1.0,):
        the tiles alone.
    """

    input_shape_dhw: tuple[int, int, int]
    crop_margin_mm: tuple[float, float, float]
    window_percentiles: tuple[float, float]
    probabilities: ProbabilityFn
    background_scale: tuple[float, ...] = (1.0,) * len(STRUCTURES)
    crop_tiles: int = 1
    crop_tile_overlap: float = 0.0
    tile_step: float = 0.0
    flip_tta: bool = False
    box_scales: tuple[float, ...] = (1.0,)


def check_background_scale(value: float | Sequence[float], what: str) -> tuple[float, ...]:
    """One background scale per structure (label order), from one for all or one each.

    Raises:
      ValueError: naming ``what``, for another number of scales or one outside (0, 1].
    """
    scales = (value,) if np.isscalar(value) else tuple(value)
    if len(scales) == 1:
        scales = scales * len(STRUCTURES)
    if len(scales) != len(STRUCTURES):
        raise ValueError(
            f"{what}: {len(scales)} background scales; give one for every structure or "
            f"{len(STRUCTURES)}, one each ({', '.join(STRUCTURES)})."
        )
    bad = [float(s) for s in scales if not 0.0 < float(s) <= 1.0]
    if bad:
        raise ValueError(f"{what}: background scales must be in (0, 1], got {bad}.")
    return tuple(float(s) for s in scales)


def decide(probs_cdhw: np.ndarray, background_scale: float | Sequence[float] = 1.0) -> np.ndarray:
    """Labels (uint8) from class probabilities (classes first), background scaled.

    A scale s < 1 labels a voxel as a structure when its probability beats s times the
    background's: against background alone, a threshold of s / (1 + s) instead of 1/2. The
    Dice-optimal threshold of calibrated probabilities is half the Dice reached (Lipton et
    al., ECML 2014), below 1/2, which the plain argmax (s = 1) does not use. With one scale
    per structure (label order), structure k's probability is divided by s_k before the
    argmax: a smaller scale moves k's borders outward, with the background and with
    structures of larger scales (a class-prior shift).
    """
    scales = check_background_scale(background_scale, "background_scale")
    if len(set(scales)) == 1:
        return _decide_one_scale(probs_cdhw, scales[0])
    # Class by class, without a scaled copy of all classes (a series' probabilities can be
    # hundreds of MB); ties go to the lower label and to background, as in the argmax.
    best = probs_cdhw[1] / scales[0]
    labels = np.ones(best.shape, np.uint8)
    for k in range(2, probs_cdhw.shape[0]):
        scored = probs_cdhw[k] / scales[k - 1]
        better = scored > best
        labels[better] = k
        best = np.where(better, scored, best)
    labels[probs_cdhw[0] >= best] = 0
    return labels


def _decide_one_scale(probs_cdhw: np.ndarray, background_scale: float) -> np.ndarray:
    if background_scale == 1.0:
        return np.argmax(probs_cdhw, axis=0).astype(np.uint8)
    structure = np.argmax(probs_cdhw[1:], axis=0).astype(np.uint8) + 1
    background = background_scale * probs_cdhw[0] >= np.max(probs_cdhw[1:], axis=0)
    return np.where(background, np.uint8(0), structure)


@dataclasses.dataclass
class CascadeResult:
    """Labels of one series in canonical layout, and how they were found.

    Attributes:
      labels_dhw: the cascade's label map (uint8) on the series' canonical grid.
      coarse_labels_dhw: the coarse stage's label map on the same grid.
      fine_box_mm: (low, high) corners of the fine stage's crop (all its tiles), canonical mm.
      seconds: wall time per part ("coarse", "fine", "total").
    """

    labels_dhw: np.ndarray
    coarse_labels_dhw: np.ndarray
    fine_box_mm: transforms.Box
    seconds: dict[str, float]


def _stage_probabilities(
    stage: StageModel,
    image_dhw: np.ndarray,
    spacing_dhw: Sequence[float],
    boxes: Sequence[transforms.Box],
    flip_lr: bool,
    ramp: float = 0.0,
) -> np.ndarray:
    """A stage's probabilities (classes, d, h, w) on the canonical grid of ``image_dhw``.

    Each box is one network input; where boxes overlap, their probabilities are blended with
    weights that ramp up over ``ramp`` of a box's height from its superior and inferior
    edges, so a tile's edge, where it sees least context, counts least. Voxels outside every
    box are background with probability one.
    """
    shape = stage.input_shape_dhw
    affines = [transforms.sampling_affine(box, shape, spacing_dhw) for box in boxes]
    batch = np.stack(
        [transforms.resample(image_dhw, affine, shape, is_label=False) for affine in affines]
    )[..., None].astype(np.float32)
    if flip_lr:
        # Slices run right to left: flipping them mirrors the patient, whose labels do not
        # change under left-right mirroring.
        probs = stage.probabilities(np.concatenate([batch, batch[:, ::-1]]))
        probs_bdhwc = 0.5 * (probs[: len(boxes)] + probs[len(boxes) :, ::-1])
    else:
        probs_bdhwc = stage.probabilities(batch)

    num_classes = probs_bdhwc.shape[-1]
    total = np.zeros((num_classes, *image_dhw.shape), np.float32)
    weight = np.zeros(image_dhw.shape, np.float32)
    for box, affine, probs_dhwc in zip(boxes, affines, probs_bdhwc, strict=True):
        region, region_probs = _on_grid(probs_dhwc, affine, box, spacing_dhw, image_dhw.shape)
        w = _edge_weight(box, region, spacing_dhw, ramp)
        total[(slice(None), *region)] += w * region_probs
        weight[region] += w[0]
    covered = weight > 0
    total /= np.where(covered, weight, 1.0)
    total[0][~covered] = 1.0
    return total


def _on_grid(
    probs_dhwc: np.ndarray,
    affine: tuple[np.ndarray, np.ndarray],
    box: transforms.Box,
    spacing_dhw: Sequence[float],
    shape_dhw: Sequence[int],
) -> tuple[tuple[slice, ...], np.ndarray]:
    """(region, probabilities (classes, *region)): one network output back on the canonical
    grid, over the voxels its box covers."""
    matrix, offset = affine
    spacing = np.asarray(spacing_dhw, float)
    lo = np.clip(np.floor(np.asarray(box[0]) / spacing).astype(int), 0, None)
    hi = np.minimum(np.ceil(np.asarray(box[1]) / spacing).astype(int) + 1, shape_dhw)
    inverse = np.linalg.inv(matrix)
    sub_offset = inverse @ (lo - offset)  # canonical index lo + i -> network index
    region = tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))
    out = np.stack(
        [
            ndimage.affine_transform(
                probs_dhwc[..., c],
                inverse,
                offset=sub_offset,
                output_shape=tuple(hi - lo),
                order=1,
                mode="constant",
                cval=1.0 if c == 0 else 0.0,
                prefilter=False,
            )
            for c in range(probs_dhwc.shape[-1])
        ]
    )
    return region, out


def _edge_weight(
    box: transforms.Box,
    region: tuple[slice, ...],
    spacing_dhw: Sequence[float],
    ramp: float,
) -> np.ndarray:
    """(1, 1, h, 1) blending weight over ``region``: 1 inside, ramping down to near 0 at the
    box's superior and inferior edges over ``ramp`` of its height (all 1 when ``ramp`` is 0)."""
    h = region[1]
    ramp_mm = ramp * float(box[1][1] - box[0][1])
    if ramp_mm <= 0:
        return np.ones((1, 1, h.stop - h.start, 1), np.float32)
    h_mm = np.arange(h.start, h.stop) * float(spacing_dhw[1])
    to_edge = np.minimum(h_mm - float(box[0][1]), float(box[1][1]) - h_mm)
    # Never zero: a voxel that only one tile's edge covers keeps that tile's prediction.
    ramp = np.clip(to_edge / ramp_mm, 1e-3, 1.0).astype(np.float32)
    return ramp[None, None, :, None]


def fine_boxes(
    fine: StageModel, coarse_labels_dhw: np.ndarray, spacing_dhw: Sequence[float]
) -> tuple[list[transforms.Box], float]:
    """The fine stage's inputs, the box around the coarse result plus the margin in tiles at
    each of the stage's box scales, and the share of a tile that neighbouring tiles overlap."""
    box = transforms.label_box(coarse_labels_dhw, spacing_dhw, fine.crop_margin_mm)
    step = fine.tile_step or 1.0 - fine.crop_tile_overlap
    tiles, overlap = transforms.sliding_tiles(
        box, fine.crop_tiles, fine.crop_tile_overlap, step, fine.input_shape_dhw
    )
    return transforms.scaled_boxes(tiles, fine.box_scales), overlap


def coarse_labels(
    coarse: StageModel,
    image_dhw: np.ndarray,
    spacing_dhw: Sequence[float],
    *,
    flip_lr: bool = False,
    source: str = "",
) -> np.ndarray:
    """The coarse stage alone: its label map (uint8) on the series' canonical grid."""
    windowed = transforms.auto_window(image_dhw, coarse.window_percentiles, source)
    box = transforms.image_box(image_dhw.shape, spacing_dhw)
    probs = _stage_probabilities(coarse, windowed, spacing_dhw, [box], flip_lr)
    return np.argmax(probs, axis=0).astype(np.uint8)


def fine_probabilities(
    fine: StageModel,
    coarse_labels_dhw: np.ndarray,
    image_dhw: np.ndarray,
    spacing_dhw: Sequence[float],
    *,
    flip_lr: bool,
    source: str = "",
) -> tuple[np.ndarray, list[transforms.Box]]:
    """(the fine stage's probabilities (classes, d, h, w) on the series' canonical grid, its
    boxes) around the coarse stage's labels, before ``decide``."""
    boxes, overlap = fine_boxes(fine, coarse_labels_dhw, spacing_dhw)
    windowed = transforms.auto_window(image_dhw, fine.window_percentiles, source)
    # Over the whole overlap: the blend moves from one tile to the next across it.
    ramp = overlap
    probs = _stage_probabilities(fine, windowed, spacing_dhw, boxes, flip_lr, ramp)
    return probs, boxes


def predict(
    coarse: StageModel,
    fine: StageModel,
    image_dhw: np.ndarray,
    spacing_dhw: Sequence[float],
    *,
    flip_lr: bool | None = None,
    source: str = "",
) -> CascadeResult:
    """Runs the cascade on one canonical-layout series.

    Args:
      coarse: the coarse stage (whole series).
      fine: the fine stage (crop around the coarse result).
      image_dhw: raw intensities in canonical layout.
      spacing_dhw: voxel size in mm.
      flip_lr: also predict the left-right mirrored series and average (test-time
        augmentation; twice the network time); None: as ``fine.flip_tta`` says.
      source: the file, for error messages.

    Raises:
      ValueError: naming ``source``, for NaN/Inf or constant images.
    """
    start = time.perf_counter()
    if flip_lr is None:
        flip_lr = fine.flip_tta
    coarse_labels_dhw = coarse_labels(
        coarse, image_dhw, spacing_dhw, flip_lr=flip_lr, source=source
    )
    after_coarse = time.perf_counter()
    fine_probs, boxes = fine_probabilities(
        fine, coarse_labels_dhw, image_dhw, spacing_dhw, flip_lr=flip_lr, source=source
    )
    labels = decide(fine_probs, fine.background_scale)
    end = time.perf_counter()
    fine_box = (
        np.min([box[0] for box in boxes], axis=0),
        np.max([box[1] for box in boxes], axis=0),
    )
    return CascadeResult(
        labels,
        coarse_labels_dhw,
        fine_box,
        {
            "coarse": after_coarse - start,
            "fine": end - after_coarse,
            "total": end - start,
        },
    )
