"""PNG previews of phantom cases, to judge the phantom by eye."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lumbar_jax.data.transforms import auto_window
from lumbar_jax.labels import LABEL_COLOURS, LABEL_NAMES


def preview_slices(label_dhw: np.ndarray) -> dict[str, int]:
    """The slices a person looks at first: mid-sagittal and para-sagittal through a foramen.

    Mid-sagittal is the slice with the most spinal canal; para-sagittal the one with the most
    foramen (the structures tell, whatever the slice count and the centring).
    """
    counts = np.stack([(label_dhw == k).sum(axis=(1, 2)) for k in range(len(LABEL_NAMES))])
    canal, foramen = LABEL_NAMES.index("spinal_canal"), LABEL_NAMES.index("intervertebral_foramen")
    return {"mid": int(counts[canal].argmax()), "para": int(counts[foramen].argmax())}


def write_previews(
    image_dhw: np.ndarray,
    label_dhw: np.ndarray,
    spacing_dhw: tuple[float, float, float],
    out_dir: str | Path,
    case_id: str,
    dpi: int = 100,
) -> list[Path]:
    """PNG previews of one case: ``<case>_mid.png`` and ``<case>_para.png``.

    Each shows the slice as acquired (left) and with the label overlay (right), superior up and
    anterior to the left as on a scanner console, in physical proportions (pixels drawn at
    their size in mm). The grey scale is the pipeline's automatic window.

    Returns:
      The files written.
    """
    # Matplotlib's object interface with the Agg canvas: no pyplot, no display, no global
    # state, safe in worker processes.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.colors import ListedColormap
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    image = auto_window(image_dhw)
    _, h, w = image.shape
    extent = (0.0, w * spacing_dhw[2], h * spacing_dhw[1], 0.0)
    colours = ListedColormap(LABEL_COLOURS)
    written = []
    for name, d in preview_slices(label_dhw).items():
        height_in = h * spacing_dhw[1] / (w * spacing_dhw[2]) * 3.4
        fig = Figure(figsize=(7.0, height_in + 0.5), dpi=dpi)
        FigureCanvasAgg(fig)
        axes = fig.subplots(1, 2)
        for ax, overlay in zip(axes, (False, True), strict=True):
            ax.imshow(image[d], cmap="gray", vmin=0, vmax=1, extent=extent, interpolation="none")
            if overlay:
                ax.imshow(
                    label_dhw[d],
                    cmap=colours,
                    vmin=0,
                    vmax=len(LABEL_COLOURS) - 1,
                    alpha=0.45,
                    extent=extent,
                    interpolation="none",
                )
            ax.set_axis_off()
        what = "mid-sagittal" if name == "mid" else "para-sagittal (foramina)"
        fig.suptitle(f"{case_id}, slice {d + 1}/{image.shape[0]}, {what}", fontsize=9)
        fig.legend(
            handles=[
                Patch(color=c, label=n.replace("_", " "))
                for c, n in zip(LABEL_COLOURS[1:], LABEL_NAMES[1:], strict=True)
            ],
            loc="lower center",
            ncol=5,
            fontsize=6,
            frameon=False,
        )
        fig.subplots_adjust(left=0.01, right=0.99, top=0.93, bottom=0.07, wspace=0.03)
        path = out_dir / f"{case_id}_{name}.png"
        fig.savefig(path, dpi=dpi)
        written.append(path)
    return written
