"""Surface distances in mm between binary masks: HD95 and average symmetric surface distance.

Conventions (those of MONAI's ``compute_hausdorff_distance(percentile=95)`` and
``compute_average_surface_distance(symmetric=True)``):
  * surface voxels are mask voxels with a face neighbour outside the mask (or on the border
    of the volume); distances are between voxel centres, in mm, using the voxel spacing;
  * HD95 is the larger of the two directed 95th percentiles of surface-to-surface distance;
  * ASSD is the mean over both surfaces' voxels of the distance to the other surface;
  * both empty: NaN (undefined, ignored when averaging); exactly one empty: inf.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage

_FACES = ndimage.generate_binary_structure(3, 1)


def _surface(mask: np.ndarray) -> np.ndarray:
    return mask & ~ndimage.binary_erosion(mask, _FACES, border_value=0)


def surface_distances(
    pred: np.ndarray, ref: np.ndarray, spacing: Sequence[float]
) -> tuple[np.ndarray, np.ndarray]:
    """(distances from pred's surface to ref's, from ref's surface to pred's), in mm.

    Both masks must be non-empty.
    """
    pred, ref = np.asarray(pred, bool), np.asarray(ref, bool)
    # Work in the box holding both masks: every surface voxel and its nearest surface voxel
    # on the other mask lie inside it, so the distances are exact.
    where = np.nonzero(pred | ref)
    box = tuple(slice(w.min(), w.max() + 1) for w in where)
    pred_s, ref_s = _surface(pred)[box], _surface(ref)[box]
    to_ref = ndimage.distance_transform_edt(~ref_s, sampling=spacing)
    to_pred = ndimage.distance_transform_edt(~pred_s, sampling=spacing)
    return to_ref[pred_s], to_pred[ref_s]


def hd95_assd(pred: np.ndarray, ref: np.ndarray, spacing: Sequence[float]) -> tuple[float, float]:
    """(HD95, ASSD) in mm between two binary masks; NaN if both empty, inf if one is."""
    has_pred, has_ref = bool(np.any(pred)), bool(np.any(ref))
    if not (has_pred or has_ref):
        return float("nan"), float("nan")
    if not (has_pred and has_ref):
        return float("inf"), float("inf")
    a, b = surface_distances(pred, ref, spacing)
    hd95 = max(np.percentile(a, 95), np.percentile(b, 95))
    assd = (a.sum() + b.sum()) / (a.size + b.size)
    return float(hd95), float(assd)


def per_class(
    pred_dhw: np.ndarray,
    ref_dhw: np.ndarray,
    spacing: Sequence[float],
    num_classes: int,
    labeled_c: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(HD95, ASSD) per foreground class, each (num_classes - 1,); NaN where unlabelled."""
    hd95 = np.full(num_classes - 1, np.nan)
    assd = np.full(num_classes - 1, np.nan)
    for c in range(1, num_classes):
        if labeled_c is not None and not labeled_c[c]:
            continue
        hd95[c - 1], assd[c - 1] = hd95_assd(pred_dhw == c, ref_dhw == c, spacing)
    return hd95, assd
