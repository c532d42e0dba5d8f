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
from lumbar_jax.labels import STRUCTURES

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

    A component of ``structure_report`` and one of ``levels`` are the same voxels when their
    centroids coincide; components without a name (crumbs) get ``None``.
    """
    canonical = sitk.DICOMOrient(label_image, io.CANONICAL_ORIENTATION)
    spacing = np.asarray(levels.spacing_dhw, float)
    named = []
    for comp in levels.named():
        index_xyz = (comp.centroid_mm / spacing)[::-1]
        world = canonical.TransformContinuousIndexToPhysicalPoint(
            tuple(float(v) for v in index_xyz)
        )
        named.append((comp.kind, np.asarray(world), comp.name))
    for kind, name in (("body", "vertebral_body"), ("disc", "intervertebral_disc")):
        for entry in structures[name]["components"]:
            centre = np.asarray(entry["centroid_world_mm"])
            near = [
                (float(np.linalg.norm(world - centre)), level)
                for k, world, level in named
                if k == kind
            ]
            best = min(near, default=(np.inf, None))
            # Report centroids are rounded to 0.01 mm.
            entry["level"] = best[1] if best[0] < 0.1 else None
