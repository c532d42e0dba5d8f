"""What a clinic or a pipeline reads from a prediction: a JSON summary and a PNG overlay.

Coordinates are world (patient) coordinates in mm, in the LPS convention of DICOM and ITK
(x to the patient's left, y posterior, z superior), computed from the label map's own grid.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from lumbar_jax import LABEL_COLOURS, LABEL_NAMES, STRUCTURES

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


def _para_slices(labels_dhw: np.ndarray) -> tuple[int, int]:
    """A right and a left para-sagittal slice: the ones with most foramen, else quarter way."""
    d = labels_dhw.shape[0]
    per_slice = (labels_dhw == STRUCTURES.index("intervertebral_foramen") + 1).sum(axis=(1, 2))
    half = d // 2
    right = int(np.argmax(per_slice[:half])) if per_slice[:half].any() else d // 4
    left = half + int(np.argmax(per_slice[half:])) if per_slice[half:].any() else 3 * d // 4
    return right, left


def overlay_png(
    image_dhw: np.ndarray,
    labels_dhw: np.ndarray,
    spacing_dhw: Sequence[float],
    path: str | Path,
    title: str = "",
) -> None:
    """Mid-sagittal and two para-sagittal slices, image and label overlay, in true aspect.

    Args:
      image_dhw: windowed [0, 1] image, canonical layout.
      labels_dhw: label map on the same grid.
      spacing_dhw: voxel size in mm, for the physical aspect ratio.
      path: PNG to write (atomically).
      title: figure title.
    """
    # The object interface on an Agg canvas: no pyplot state, safe in any thread or process.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.colors import ListedColormap
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    d, h, w = image_dhw.shape
    right, left = _para_slices(labels_dhw)
    slices = [
        ("right para-sagittal", right),
        ("mid-sagittal", d // 2),
        ("left para-sagittal", left),
    ]
    extent = (0, w * spacing_dhw[2], h * spacing_dhw[1], 0)
    cmap = ListedColormap(LABEL_COLOURS[1:])
    aspect = h * spacing_dhw[1] / (w * spacing_dhw[2])  # panel height / width
    fig = Figure(figsize=(9, 6 * aspect + 1))
    FigureCanvasAgg(fig)
    axes = fig.subplots(2, 3)
    for col, (name, k) in enumerate(slices):
        for row in range(2):
            ax = axes[row, col]
            ax.imshow(image_dhw[k], cmap="gray", vmin=0, vmax=1, extent=extent)
            if row == 1:
                masked = np.ma.masked_equal(labels_dhw[k], 0)
                ax.imshow(
                    masked,
                    cmap=cmap,
                    vmin=0.5,
                    vmax=5.5,
                    alpha=0.45,
                    extent=extent,
                    interpolation="nearest",
                )
            ax.set_title(f"{name} (slice {k})" if row == 0 else "labels", fontsize=8)
            ax.axis("off")
    handles = [Patch(color=c, alpha=0.6) for c in LABEL_COLOURS[1:]]
    fig.legend(handles, LABEL_NAMES[1:], loc="lower center", ncol=5, fontsize=7, frameon=False)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout(rect=(0, 0.04, 1, 0.97))
    path = Path(path)
    tmp = path.with_name(f".tmp-{path.name}")
    fig.savefig(tmp, dpi=90, format="png")
    tmp.replace(path)
