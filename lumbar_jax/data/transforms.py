"""Per-case preprocessing on the host: windowing, crop boxes and one-step affine resampling.

Cropping, resizing to the network's shape and the spatial augmentations (rotation,
translation, scaling) are composed into one affine map from output voxels to source voxels, so
each sample is interpolated once, straight from the source volume.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from scipy import ndimage

Box = tuple[np.ndarray, np.ndarray]  # (low, high) corners in mm, voxel centres at index*spacing


def auto_window(
    image_dhw: np.ndarray, percentiles: Sequence[float] = (0.5, 99.5), source: str | Path = ""
) -> np.ndarray:
    """Automatic window level/width: maps the percentile range to [0, 1] and clips.

    Raises:
      ValueError: for non-finite or constant images (naming ``source``).
    """
    image = np.asarray(image_dhw, np.float32)
    if not np.isfinite(image).all():
        raise ValueError(f"{source}: image holds NaN or Inf values.")
    lo, hi = np.percentile(image, percentiles)
    if hi <= lo:
        lo, hi = float(image.min()), float(image.max())
        if hi <= lo:
            raise ValueError(f"{source}: image is constant ({lo}); nothing to segment.")
    return np.clip((image - lo) / (hi - lo), 0.0, 1.0)


def image_box(shape_dhw: Sequence[int], spacing_dhw: Sequence[float]) -> Box:
    """The box covering every voxel of a volume."""
    spacing = np.asarray(spacing_dhw, float)
    return -0.5 * spacing, (np.asarray(shape_dhw) - 0.5) * spacing


def label_box(
    label_dhw: np.ndarray,
    spacing_dhw: Sequence[float],
    margin_mm: Sequence[float],
    out_shape_dhw: Sequence[int] | None = None,
) -> Box:
    """Box around every labelled voxel plus a margin; the whole volume if nothing is labelled.

    Args:
      label_dhw: the label map (or a predicted one).
      spacing_dhw: voxel size in mm.
      margin_mm: margin added on each side, per axis.
      out_shape_dhw: when given, the in-plane (h, w) box is widened to the aspect ratio of
        the output, so that the crop keeps square in-plane voxels.
    """
    spacing = np.asarray(spacing_dhw, float)
    where = np.nonzero(label_dhw)
    if where[0].size == 0:
        return image_box(label_dhw.shape, spacing)
    lo = np.array([w.min() for w in where]) * spacing - 0.5 * spacing - np.asarray(margin_mm)
    hi = np.array([w.max() for w in where]) * spacing + 0.5 * spacing + np.asarray(margin_mm)
    if out_shape_dhw is not None:
        size = hi - lo
        target = out_shape_dhw[1] / out_shape_dhw[2]  # h / w
        centre = (lo + hi) / 2
        if size[1] / size[2] > target:
            size[2] = size[1] / target
        else:
            size[1] = size[2] * target
        lo[1:], hi[1:] = centre[1:] - size[1:] / 2, centre[1:] + size[1:] / 2
    return lo, hi


def sampling_affine(
    box: Box,
    out_shape_dhw: Sequence[int],
    src_spacing_dhw: Sequence[float],
    rotate_rad: float = 0.0,
    translate_mm: Sequence[float] = (0.0, 0.0, 0.0),
    scale: float = 1.0,
) -> tuple[np.ndarray, np.ndarray]:
    """(matrix, offset) mapping an output voxel index to a source voxel index.

    The output grid spans ``box``; it is rotated in the sagittal (h, w) plane about the box
    centre, scaled and translated (all in mm, so anisotropic voxels rotate correctly).
    """
    lo, hi = (np.asarray(b, float) for b in box)
    out_spacing = (hi - lo) / np.asarray(out_shape_dhw, float)
    c, s = math.cos(rotate_rad), math.sin(rotate_rad)
    rotation = np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]]) * scale
    to_src = np.diag(1.0 / np.asarray(src_spacing_dhw, float))
    matrix = to_src @ rotation @ np.diag(out_spacing)
    centre = (lo + hi) / 2 + np.asarray(translate_mm, float)
    offset = to_src @ (centre + rotation @ (0.5 * out_spacing - (hi - lo) / 2))
    return matrix, offset


def resample(
    volume_dhw: np.ndarray,
    affine: tuple[np.ndarray, np.ndarray],
    out_shape_dhw: Sequence[int],
    is_label: bool,
) -> np.ndarray:
    """Samples ``volume_dhw`` on the output grid (linear for images, nearest for labels)."""
    matrix, offset = affine
    return ndimage.affine_transform(
        volume_dhw,
        matrix,
        offset=offset,
        output_shape=tuple(out_shape_dhw),
        order=0 if is_label else 1,
        mode="constant",
        cval=0,
        prefilter=False,
    )
