"""Geometry on label maps in physical millimetres: slices by anatomy, axes, runs along lines.

Points on a sagittal slice are (h, w) in mm: h superior to inferior, w anterior to posterior,
voxel (h, w) centred at (h * spacing_h, w * spacing_w). Lines are sampled finely and the label
mask is interpolated linearly (inside where it reaches 0.5), so a run along an oblique line
ends between voxel centres, as a partial-volume edge would.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from lumbar_jax.labels import BODY, CANAL, CORD, DISC, FORAMEN

# Sampling step along lines (mm): a tenth of a millimetre is well below any voxel size.
STEP_MM = 0.1
# Where no foramen is labelled, the para-sagittal slices are taken this far from the midline:
# the foramina lie about a dural sac's half width plus a pedicle's from the centre.
PARA_OFFSET_MM = 13.0


def mid_sagittal_slice(labels_dhw: np.ndarray, spacing_dhw: Sequence[float]) -> int:
    """The slice through the spinal canal: most canal + cord voxels.

    Ties go to the slice nearest the canal's centre; without a canal, the slice nearest the
    centre of the bodies and discs; without those, the middle slice.
    """
    d = labels_dhw.shape[0]
    for classes in ((CANAL, CORD), (BODY, DISC)):
        mask = np.isin(labels_dhw, classes)
        per_slice = mask.sum(axis=(1, 2))
        if per_slice.any():
            centre = float(np.average(np.arange(d), weights=per_slice))
            best = np.flatnonzero(per_slice == per_slice.max())
            if classes == (CANAL, CORD):
                return int(best[np.argmin(np.abs(best - centre))])
            return round(centre)
    return d // 2


def para_sagittal_slices(
    labels_dhw: np.ndarray, spacing_dhw: Sequence[float], mid: int
) -> tuple[int | None, int | None]:
    """A right and a left para-sagittal slice, each on its own side of ``mid``.

    On each side the slice with most foramen voxels; without foramen there, the slice nearest
    ``PARA_OFFSET_MM`` from the midline. None where the side has no slice (``mid`` at the
    edge of the volume). Index 0 is the patient's right (canonical layout).
    """
    d = labels_dhw.shape[0]
    per_slice = (labels_dhw == FORAMEN).sum(axis=(1, 2))
    offset = max(1, round(PARA_OFFSET_MM / spacing_dhw[0]))
    out: list[int | None] = []
    for side in (np.arange(0, mid), np.arange(mid + 1, d)):
        if side.size == 0:
            out.append(None)
        elif per_slice[side].any():
            out.append(int(side[np.argmax(per_slice[side])]))
        else:
            target = mid - offset if side[0] < mid else mid + offset
            out.append(int(side[np.argmin(np.abs(side - target))]))
    return out[0], out[1]


def hw_points(mask_2d: np.ndarray, spacing_hw: Sequence[float]) -> np.ndarray:
    """(n, 2) physical (h, w) positions in mm of a 2D mask's voxels."""
    return np.argwhere(mask_2d) * np.asarray(spacing_hw, float)


def minor_axis(points_hw: np.ndarray) -> np.ndarray:
    """The unit direction of least spread of (n, 2) points, pointing inferior (+h).

    For a disc, the direction across it: the local axis of the spine.
    """
    centred = points_hw - points_hw.mean(axis=0)
    cov = centred.T @ centred / max(len(points_hw), 1)
    _, vectors = np.linalg.eigh(cov)
    axis = vectors[:, 0]
    return axis if axis[0] >= 0 else -axis


def unit(vector: Sequence[float]) -> np.ndarray:
    v = np.asarray(vector, float)
    norm = float(np.linalg.norm(v))
    return v / norm if norm > 0 else np.array([1.0, 0.0])


def across(axis_hw: np.ndarray) -> np.ndarray:
    """The in-plane direction perpendicular to ``axis_hw``, pointing posterior (+w)."""
    t = np.array([-axis_hw[1], axis_hw[0]])
    return t if t[1] >= 0 else -t


def angle_deg(axis_hw: np.ndarray) -> float:
    """Tilt of an axis from the superior-inferior direction, positive toward posterior."""
    return float(np.degrees(np.arctan2(axis_hw[1], axis_hw[0])))


def sample_values(mask_2d: np.ndarray, spacing_hw: Sequence[float], points_hw: np.ndarray):
    """``mask_2d`` interpolated linearly at (..., 2) points in mm (0 outside the slice)."""
    index = np.moveaxis(points_hw / np.asarray(spacing_hw, float), -1, 0)
    values = ndimage.map_coordinates(
        mask_2d.astype(np.float32), index.reshape(2, -1), order=1, mode="constant", cval=0.0
    )
    return values.reshape(points_hw.shape[:-1])


def sample_mask(mask_2d: np.ndarray, spacing_hw: Sequence[float], points_hw: np.ndarray):
    """Whether each (..., 2) point in mm lies inside ``mask_2d`` (linear interpolation >= 0.5).

    Points outside the slice are outside.
    """
    return sample_values(mask_2d, spacing_hw, points_hw) >= 0.5


def runs(inside: np.ndarray) -> list[tuple[int, int]]:
    """[start, stop) index ranges of the True runs of a 1D boolean array."""
    padded = np.concatenate([[False], inside, [False]]).astype(np.int8)
    edges = np.flatnonzero(np.diff(padded))
    return list(zip(edges[::2].tolist(), edges[1::2].tolist(), strict=True))


def run_along(
    mask_2d: np.ndarray,
    spacing_hw: Sequence[float],
    origin_hw: np.ndarray,
    direction_hw: np.ndarray,
    reach_mm: tuple[float, float],
    at_mm: float = 0.0,
) -> tuple[float, float] | None:
    """The stretch of ``mask_2d`` along a line nearest to a point on it.

    Args:
      mask_2d: the structure on one slice.
      spacing_hw: the slice's pixel size in mm.
      origin_hw: a point of the line (mm).
      direction_hw: the line's unit direction.
      reach_mm: (from, to) in mm along the line from ``origin_hw`` to sample.
      at_mm: the run containing this position along the line, else the nearest run.

    Returns:
      (start, end) in mm along the line from ``origin_hw``, or None when the line misses the
      structure.
    """
    s = np.arange(reach_mm[0], reach_mm[1] + STEP_MM / 2, STEP_MM)
    points = np.asarray(origin_hw, float) + s[:, None] * np.asarray(direction_hw, float)
    values = sample_values(mask_2d, spacing_hw, points)
    found = runs(values >= 0.5)
    if not found:
        return None

    def distance(run: tuple[int, int]) -> float:
        lo, hi = s[run[0]] - STEP_MM / 2, s[run[1] - 1] + STEP_MM / 2
        return 0.0 if lo <= at_mm <= hi else min(abs(lo - at_mm), abs(hi - at_mm))

    lo, hi = min(found, key=distance)
    return _crossing(s, values, lo - 1, lo), _crossing(s, values, hi, hi - 1)


def _crossing(s: np.ndarray, values: np.ndarray, outside: int, inside: int) -> float:
    """Where the interpolated mask passes 0.5 between an outside and an inside sample.

    The mask is piecewise linear along the line, so this is exact between two samples on
    the same linear piece; at the end of the sampled reach, half a step beyond the last one.
    """
    if not 0 <= outside < len(s):
        return float(s[inside] + (STEP_MM / 2 if outside > inside else -STEP_MM / 2))
    a, b = float(values[outside]), float(values[inside])
    return float(s[outside] + (0.5 - a) / (b - a) * (s[inside] - s[outside]))


def span_along(
    mask_2d: np.ndarray,
    spacing_hw: Sequence[float],
    origin_hw: np.ndarray,
    direction_hw: np.ndarray,
    reach_mm: tuple[float, float],
) -> tuple[float, float] | None:
    """(first start, last end) in mm of all of ``mask_2d`` along a line, None if missed."""
    s = np.arange(reach_mm[0], reach_mm[1] + STEP_MM / 2, STEP_MM)
    points = np.asarray(origin_hw, float) + s[:, None] * np.asarray(direction_hw, float)
    inside = np.flatnonzero(sample_mask(mask_2d, spacing_hw, points))
    if inside.size == 0:
        return None
    return float(s[inside[0]] - STEP_MM / 2), float(s[inside[-1]] + STEP_MM / 2)


def rotate(axis_hw: np.ndarray, degrees: float) -> np.ndarray:
    """``axis_hw`` turned by ``degrees`` in the sagittal plane."""
    a = np.radians(degrees)
    c, s = np.cos(a), np.sin(a)
    return np.array([c * axis_hw[0] - s * axis_hw[1], s * axis_hw[0] + c * axis_hw[1]])


def run_length(*args, **kwargs) -> float | None:
    """Length in mm of ``run_along``'s stretch (same arguments), None when there is none."""
    found = run_along(*args, **kwargs)
    return None if found is None else found[1] - found[0]
