"""What a clinic or a pipeline reads from a prediction: a JSON summary and a PNG overlay.

Coordinates are world (patient) coordinates in mm, in the LPS convention of DICOM and ITK
(x to the patient's left, y posterior, z superior), computed from the label map's own grid.
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from lumbar_jax.data import io
from lumbar_jax.inference.levels import Levels
from lumbar_jax.labels import BODY, DISC, STRUCTURES

# Connected pieces smaller than this are counted but not listed: partial-volume crumbs.
MIN_COMPONENT_MM3 = 50.0


def _world(image: sitk.Image, index_zyx: np.ndarray) -> np.ndarray:
    """World (LPS, mm) points of continuous numpy indices (n, 3) in (z, y, x) order."""
    index_xyz = np.asarray(index_zyx, float)[:, ::-1]
    direction = np.asarray(image.GetDirection(), float).reshape(3, 3)
    spacing = np.asarray(image.GetSpacing(), float)
    return np.asarray(image.GetOrigin(), float) + (index_xyz * spacing) @ direction.T


def _round(values: np.ndarray) -> list[float]:
    return [round(float(v), 2) for v in values]


def structure_report(label_image: sitk.Image, min_component_mm3: float = MIN_COMPONENT_MM3):
    """Per structure: voxels, volume, bounding box, centroid and connected components.

    Args:
      label_image: a label map (values 0..5) on the series' grid.
      min_component_mm3: smaller connected pieces are counted as ``small_pieces`` only.

    Returns:
      {structure name: {"label", "voxels", "volume_mm3", "bbox_world_mm" (min and max
      corner, LPS), "centroid_world_mm", "components": [{"volume_mm3",
      "centroid_world_mm"}, ...] ordered superior to inferior, "small_pieces"}}.
    """
    labels_zyx = sitk.GetArrayViewFromImage(label_image)
    voxel_mm3 = float(np.prod(label_image.GetSpacing()))
    # Corners of a voxel box, as offsets of -0.5/+0.5 in each index.
    corners = np.array([[a, b, c] for a in (0, 1) for b in (0, 1) for c in (0, 1)], float)
    out = {}
    for value, name in enumerate(STRUCTURES, start=1):
        mask = labels_zyx == value
        count = int(mask.sum())
        entry: dict = {"label": value, "voxels": count, "volume_mm3": round(count * voxel_mm3, 1)}
        if count == 0:
            entry |= {
                "bbox_world_mm": None,
                "centroid_world_mm": None,
                "components": [],
                "small_pieces": 0,
            }
            out[name] = entry
            continue
        where = np.nonzero(mask)
        lo = np.array([w.min() for w in where]) - 0.5
        hi = np.array([w.max() for w in where]) + 0.5
        box_world = _world(label_image, lo + corners * (hi - lo))
        entry["bbox_world_mm"] = [_round(box_world.min(0)), _round(box_world.max(0))]
        entry["centroid_world_mm"] = _round(
            _world(label_image, np.array([w.mean() for w in where])[None])[0]
        )
        pieces, n = ndimage.label(mask, structure=np.ones((3, 3, 3), bool))
        sizes = np.bincount(pieces.ravel(), minlength=n + 1)[1:]
        centres = ndimage.center_of_mass(mask, pieces, range(1, n + 1))
        components = []
        for size, centre in zip(sizes, centres, strict=True):
            if size * voxel_mm3 >= min_component_mm3:
                world = _world(label_image, np.asarray(centre)[None])[0]
                components.append(
                    {"volume_mm3": round(float(size * voxel_mm3), 1), "centroid_world_mm": world}
                )
        components.sort(key=lambda c: -c["centroid_world_mm"][2])  # LPS z points superior
        for c in components:
            c["centroid_world_mm"] = _round(c["centroid_world_mm"])
        entry["components"] = components
        entry["small_pieces"] = int(n - len(components))
        out[name] = entry
    return out


def grid_report(image: sitk.Image) -> dict:
    """The grid of an image: size, spacing, origin and direction (no other metadata)."""
    return {
        "size_xyz": list(image.GetSize()),
        "spacing_mm": _round(image.GetSpacing()),
        "origin_world_mm": _round(image.GetOrigin()),
        "direction": [round(v, 6) for v in image.GetDirection()],
    }


def add_levels(structures: dict, levels: Levels, label_image: sitk.Image) -> None:
    """Writes each body and disc component's level name (``"level"``) into ``structures``.

    A component of ``structure_report`` takes the names of the named pieces of ``levels``
    that make up at least a quarter of it ("L5+S1" where two vertebrae touch in the label
    map but were named apart), None when it has none (a crumb).
    """
    named = levels.named()
    index = np.zeros(levels.maps["body"].shape, np.int16)
    for k, comp in enumerate(named, start=1):
        index[levels.mask(comp)] = k
    # A copy: a view would outlive the temporary image it looks into.
    index_zyx = sitk.GetArrayFromImage(io.from_canonical(index, label_image))
    labels_zyx = sitk.GetArrayViewFromImage(label_image)
    for value, name in ((BODY, "vertebral_body"), (DISC, "intervertebral_disc")):
        entries = structures[name]["components"]
        if not entries:
            continue
        pieces, n = ndimage.label(labels_zyx == value, structure=np.ones((3, 3, 3), bool))
        centres = np.array(ndimage.center_of_mass(labels_zyx == value, pieces, range(1, n + 1)))
        worlds = _world(label_image, centres)
        for entry in entries:
            # The same piece as structure_report's: the one with its (rounded) centroid.
            i = int(np.argmin(np.linalg.norm(worlds - entry["centroid_world_mm"], axis=1)))
            votes = np.bincount(index_zyx[pieces == i + 1], minlength=len(named) + 1)[1:]
            share = votes / max(int((pieces == i + 1).sum()), 1)
            found = [named[k].name for k in np.flatnonzero(share >= 0.25)]
            entry["level"] = "+".join(dict.fromkeys(found)) or None
