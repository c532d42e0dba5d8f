"""Hand-built label maps of a spine: boxes of bodies and discs, top to bottom, with a canal."""

from __future__ import annotations

import math

import numpy as np

from lumbar_jax.labels import BODY, CANAL, DISC

# (kind, height mm, depth mm): kind "body", "disc" or "gap" (nothing drawn).
Item = tuple[str, float, float]

THORACIC: list[Item] = [("body", 22.0, 28.0), ("disc", 6.0, 27.0)]
LUMBAR: list[Item] = [("body", 26.0, 34.0), ("disc", 9.0, 33.0)]
# S1 and S2 with a thin gap and no disc between them, as fused sacral segments.
SACRUM: list[Item] = [("body", 26.0, 34.0), ("gap", 2.0, 0.0), ("body", 20.0, 28.0)]


def spine(thoracic: int = 2, lumbar: int = 5, sacrum: bool = True) -> list[Item]:
    """Items of a spine: thoracic and lumbar bodies each with the disc below, then the sacrum."""
    items = THORACIC * thoracic + LUMBAR * lumbar
    return items + SACRUM if sacrum else items


def draw(
    items: list[Item],
    spacing_dhw: tuple[float, float, float] = (4.0, 1.0, 1.0),
    margin_mm: float = 10.0,
    slices: int = 7,
    tilt_deg: float = 0.0,
) -> np.ndarray:
    """The label map (d, h, w) of ``items`` stacked from the top, anterior sides aligned.

    Each item is a box across ``slices - 2`` slices; the canal (12 mm AP) runs behind the
    column on the three middle slices. ``tilt_deg`` turns the whole column in the sagittal
    plane (about its top), so its axis leans posterior going down.
    """
    _sd, sh, sw = spacing_dhw
    total = sum(h for _, h, _ in items)
    extent_h = total + 2 * margin_mm
    depth = max(d for _, _, d in items)
    extent_w = depth + 12.0 + 2 * margin_mm + total * abs(math.sin(math.radians(tilt_deg)))
    shape = (slices, math.ceil(extent_h / sh), math.ceil(extent_w / sw))
    h = (np.arange(shape[1]) + 0.5) * sh  # voxel centres, from the top edge
    w = (np.arange(shape[2]) + 0.5) * sw
    hh, ww = np.meshgrid(h, w, indexing="ij")
    a = math.radians(tilt_deg)
    # Coordinates in the column's frame: u down its axis, v posterior.
    u = (hh - margin_mm) * math.cos(a) + (ww - margin_mm) * math.sin(a)
    v = -(hh - margin_mm) * math.sin(a) + (ww - margin_mm) * math.cos(a)
    plane = np.zeros(shape[1:], np.uint8)
    top = 0.0
    for kind, height, d in items:
        if kind != "gap":
            box = (u >= top) & (u < top + height) & (v >= 0) & (v < d)
            plane[box] = BODY if kind == "body" else DISC
        top += height
    canal = (u >= 0) & (u < total) & (v >= depth + 2.0) & (v < depth + 14.0)
    labels = np.zeros(shape, np.uint8)
    labels[1:-1] = plane
    middle = slices // 2
    labels[middle - 1 : middle + 2][:, canal] = CANAL
    return labels
