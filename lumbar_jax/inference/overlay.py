"""The PNG a person looks at first: mid- and para-sagittal slices with the labels overlaid."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from lumbar_jax import files
from lumbar_jax.labels import LABEL_COLOURS, LABEL_NAMES, STRUCTURES


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
    with files.atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=90, format="png")
