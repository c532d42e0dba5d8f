"""The PNG a person looks at first: mid- and para-sagittal slices with the labels overlaid.

The slices are chosen by anatomy (``geometry``): the mid-sagittal slice through the canal, and
on each side of it the slice through that side's foramina, never the same slice twice. The
level names stand beside the bodies and discs of the mid-sagittal panel.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from lumbar_jax import files
from lumbar_jax.inference import geometry
from lumbar_jax.inference.levels import Levels
from lumbar_jax.labels import LABEL_COLOURS, LABEL_NAMES


def panel_slices(
    labels_dhw: np.ndarray, spacing_dhw: Sequence[float], levels: Levels | None = None
) -> list[tuple[str, int | None]]:
    """(panel name, slice or None) for the right para-, mid- and left para-sagittal panels."""
    mid = levels.mid_slice if levels else geometry.mid_sagittal_slice(labels_dhw, spacing_dhw)
    right, left = geometry.para_sagittal_slices(labels_dhw, spacing_dhw, mid)
    return [("right para-sagittal", right), ("mid-sagittal", mid), ("left para-sagittal", left)]


def _names(ax, levels: Levels, spacing_dhw: Sequence[float]) -> None:
    """Writes each named body and disc's level in front of it on the mid-sagittal panel."""
    from matplotlib import patheffects

    sh, sw = spacing_dhw[1], spacing_dhw[2]
    for comp in levels.named():
        here = levels.mask(comp)[levels.mid_slice]
        points = geometry.hw_points(here, (sh, sw)) if here.any() else comp.points_hw
        # Voxel k covers [k, k + 1) * spacing on the panel's axes.
        h = float(points[:, 0].mean()) + sh / 2
        w = float(points[:, 1].min()) - 1.0
        colour = LABEL_COLOURS[1] if comp.kind == "body" else LABEL_COLOURS[2]
        ax.text(
            w,
            h,
            comp.name,
            color=colour,
            fontsize=6,
            ha="right",
            va="center",
            # A dark outline keeps the name legible on bright fat and dark muscle alike.
            path_effects=[patheffects.withStroke(linewidth=1.5, foreground="black")],
        )


def overlay_png(
    image_dhw: np.ndarray,
    labels_dhw: np.ndarray,
    spacing_dhw: Sequence[float],
    path: str | Path,
    title: str = "",
    levels: Levels | None = None,
    panels: list[tuple[str, int | None]] | None = None,
) -> None:
    """Mid-sagittal and two para-sagittal slices, image and label overlay, in true aspect.

    Args:
      image_dhw: windowed [0, 1] image, canonical layout.
      labels_dhw: label map on the same grid.
      spacing_dhw: voxel size in mm, for the physical aspect ratio.
      path: PNG to write (atomically).
      title: figure title.
      levels: the named levels of ``labels_dhw``, written beside the structures.
      panels: (name, slice) of the three panels; default ``panel_slices`` of the labels (pass
        another map's, to show a reference on the same slices as a prediction).
    """
    # The object interface on an Agg canvas: no pyplot state, safe in any thread or process.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.colors import ListedColormap
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    _, h, w = image_dhw.shape
    extent = (0, w * spacing_dhw[2], h * spacing_dhw[1], 0)
    cmap = ListedColormap(LABEL_COLOURS[1:])
    aspect = h * spacing_dhw[1] / (w * spacing_dhw[2])  # panel height / width
    fig = Figure(figsize=(9, 6 * aspect + 1))
    FigureCanvasAgg(fig)
    axes = fig.subplots(2, 3)
    panels = panels or panel_slices(labels_dhw, spacing_dhw, levels)
    for col, (name, k) in enumerate(panels):
        for row in range(2):
            ax = axes[row, col]
            ax.axis("off")
            if k is None:
                ax.set_title(f"{name}: no slice on this side" if row == 0 else "", fontsize=8)
                continue
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
                if levels is not None and name == "mid-sagittal":
                    _names(ax, levels, spacing_dhw)
            ax.set_title(f"{name} (slice {k})" if row == 0 else "labels", fontsize=8)
    handles = [Patch(color=c, alpha=0.6) for c in LABEL_COLOURS[1:]]
    fig.legend(handles, LABEL_NAMES[1:], loc="lower center", ncol=5, fontsize=7, frameon=False)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout(rect=(0, 0.04, 1, 0.97))
    with files.atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=90, format="png")
