"""The vertebral bodies and discs of a label map as components along the spine.

Each body and disc is a connected piece of its label. Pieces joined only by a bridge one or
two voxels wide (a rim of the disc predicted as body, a speck over a disc) are split at the
bridge: the pieces are grown back from the label eroded by one voxel in the sagittal plane.
A body piece that a disc crosses (two bodies joined around a disc by a wider bridge) is cut
along the disc's plane.
Crumbs (small pieces) and pieces away from the spinal column (specks in the abdomen, posterior
elements taken for bodies) are left out. What is left is ordered superior to inferior, and
each piece gets its local spine axis and height.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from lumbar_jax.inference import geometry
from lumbar_jax.labels import BODY, DISC, LABEL_NAMES

# Pieces below this volume, or below this share of the median of their kind's five largest
# pieces, are crumbs (partial volume, a corner of a structure cut by the field of view).
MIN_COMPONENT_MM3 = 50.0
MIN_SHARE = 0.1
# Pieces whose bounding boxes are this close (mm) left-right and front-back, and this close
# superior-inferior, belong to one column; the column is the group with the most volume.
COLUMN_GAP_MM = 8.0
COLUMN_GAP_ALONG_MM = 45.0
# A disc cuts a body piece in two when each side holds at least this share of the piece and
# the disc spans at least this share of the piece's width across the spine (a Schmorl node,
# disc material inside one body, does not).
SPLIT_MIN_SIDE = 0.25
SPLIT_MIN_WIDTH = 0.5
# A piece beside one of its kind this many times larger, at its height, is not a level.
SIDE_LARGER = 3.0


@dataclasses.dataclass
class Component:
    """A vertebral body or disc as found in a label map.

    Attributes:
      kind: "body" or "disc".
      label: its number in ``Levels.maps[kind]``.
      volume_mm3: its volume.
      centroid_mm: (d, h, w) centre in mm (voxel (i, j, k) at (i, j, k) * spacing).
      points_mm: (n, 3) positions (d, h, w) in mm of its voxels.
      axis_hw: the local spine axis, a unit (h, w) vector pointing inferior: across a disc,
        the direction of its least spread; for a body, the mean of its discs' axes.
      height_mm: its extent along ``axis_hw``, from the 2nd to the 98th percentile of its
        voxels' positions (scaled to the whole), so thin appendages do not count.
      cut: it touches the superior or inferior border of the field of view.
      mid_area_mm2: its area on the mid-sagittal slice.
      name: its level ("L4", "L4/L5", "L3-L4" for a fused segment), None when not named.
    """

    kind: str
    label: int
    volume_mm3: float
    centroid_mm: np.ndarray
    points_mm: np.ndarray
    axis_hw: np.ndarray = dataclasses.field(default_factory=lambda: np.array([1.0, 0.0]))
    height_mm: float = 0.0
    cut: bool = False
    mid_area_mm2: float = 0.0
    name: str | None = None

    @property
    def centre_hw(self) -> np.ndarray:
        return self.centroid_mm[1:]

    @property
    def points_hw(self) -> np.ndarray:
        """(n, 2) sagittal positions (h, w) in mm of its voxels, all slices together."""
        return self.points_mm[:, 1:]

    def extent_along(self, axis_hw: np.ndarray) -> tuple[float, float]:
        """(min, max) of its voxels' projections on ``axis_hw`` (mm, from the origin)."""
        proj = self.points_hw @ axis_hw
        return float(proj.min()), float(proj.max())


def _split_at_bridges(mask: np.ndarray, spacing: np.ndarray) -> np.ndarray:
    """Connected pieces of ``mask``, pieces joined by bridges up to two voxels wide apart."""
    pieces = np.zeros(mask.shape, np.int32)
    where = np.argwhere(mask)
    if where.size:
        # Within the mask's box only: the distance transform's indices cost 12 bytes a voxel.
        box = tuple(slice(lo, hi + 1) for lo, hi in zip(where.min(0), where.max(0), strict=True))
        pieces[box] = _split_box(mask[box], spacing)
    return pieces


def _split_box(mask: np.ndarray, spacing: np.ndarray) -> np.ndarray:
    connect = np.ones((3, 3, 3), bool)
    whole, _ = ndimage.label(mask, structure=connect)
    in_plane = np.zeros((3, 3, 3), bool)
    in_plane[1] = ndimage.generate_binary_structure(2, 1)
    seeds, count = ndimage.label(ndimage.binary_erosion(mask, in_plane), structure=connect)
    pieces = np.zeros(mask.shape, np.int32)
    if count:
        nearest = ndimage.distance_transform_edt(
            seeds == 0, sampling=spacing, return_distances=False, return_indices=True
        )
        nearest = tuple(nearest)
        # Each voxel joins the nearest core of its own connected piece: a bridge is shared
        # out between the cores it joins, a thin edge stays with its core.
        same = mask & (whole[nearest] == whole)
        pieces[same] = seeds[nearest][same]
    # Pieces the erosion took whole (thin ones) stay as they are.
    rest, _ = ndimage.label(mask & (pieces == 0), structure=connect)
    pieces[rest > 0] = rest[rest > 0] + count
    return pieces


def _pieces(labels_dhw, spacing: np.ndarray, value: int, kind: str):
    """Piece map and the pieces (crumbs included) of one label."""
    pieces = _split_at_bridges(labels_dhw == value, spacing)
    found = []
    last_row = labels_dhw.shape[1] - 1
    for i, box in enumerate(ndimage.find_objects(pieces), start=1):
        if box is None:
            continue
        where = np.argwhere(pieces[box] == i) + [s.start for s in box]
        found.append(
            Component(
                kind=kind,
                label=i,
                volume_mm3=float(len(where) * spacing.prod()),
                centroid_mm=where.mean(axis=0) * spacing,
                points_mm=where * spacing,
                cut=bool(box[1].start == 0 or box[1].stop - 1 == last_row),
            )
        )
    return pieces, found


def _cut_by_disc(body: Component, disc: Component, normal: np.ndarray) -> np.ndarray | None:
    """Which of ``body``'s voxels lie below ``disc``'s plane, when the disc crosses it.

    ``normal`` is the disc's direction of least spread (across it: along the spine).
    """
    across = np.array([-normal[1], normal[0]])
    side = (body.points_hw - disc.centre_hw) @ normal
    below = side > 0
    share = below.mean()
    if min(share, 1.0 - share) < SPLIT_MIN_SIDE:
        return None
    body_lo, body_hi = body.extent_along(across)
    disc_lo, disc_hi = disc.extent_along(across)
    overlap = min(body_hi, disc_hi) - max(body_lo, disc_lo)
    return below if overlap >= SPLIT_MIN_WIDTH * (body_hi - body_lo) else None


def _split_at_discs(
    bodies: list[Component], discs: list[Component], pieces: np.ndarray, spacing: np.ndarray
) -> list[Component]:
    """Bodies, each piece that a disc crosses cut in two along it (``pieces`` relabelled)."""
    normals = [geometry.minor_axis(disc.points_hw) for disc in discs]
    todo, done = list(bodies), []
    new_label, last_row = int(pieces.max()), pieces.shape[1] - 1
    while todo:
        body = todo.pop()
        for disc, normal in zip(discs, normals, strict=True):
            below = _cut_by_disc(body, disc, normal)
            if below is not None:
                break
        else:
            done.append(body)
            continue
        new_label += 1
        voxels = np.round(body.points_mm / spacing).astype(int)
        pieces[tuple(voxels[below].T)] = new_label
        for label, mask in ((body.label, ~below), (new_label, below)):
            rows = voxels[mask, 1]
            todo.append(
                dataclasses.replace(
                    body,
                    label=label,
                    volume_mm3=body.volume_mm3 * mask.mean(),
                    centroid_mm=body.points_mm[mask].mean(axis=0),
                    points_mm=body.points_mm[mask],
                    cut=bool(rows.min() == 0 or rows.max() == last_row),
                )
            )
    return done


def _without_crumbs(found: list[Component]) -> list[Component]:
    big = [c for c in found if c.volume_mm3 >= MIN_COMPONENT_MM3]
    if not big:
        return []
    # The median of the five largest: a typical body or disc even among many crumbs.
    typical = float(np.median(sorted(c.volume_mm3 for c in big)[-5:]))
    return [c for c in big if c.volume_mm3 >= MIN_SHARE * typical]


def _without_side_pieces(comps: list[Component]) -> list[Component]:
    """Drops a piece that lies in front of or behind a piece of its kind at least
    ``SIDE_LARGER`` times its volume, at that piece's height: levels stack along the spine,
    so of two pieces side by side only the larger is a level (a blob of tissue ahead of a
    body taken for bone is not a body of its own)."""
    h_axis, w_axis = np.array([1.0, 0.0]), np.array([0.0, 1.0])

    def beside(piece: Component, other: Component) -> bool:
        if other.kind != piece.kind or other.volume_mm3 < SIDE_LARGER * piece.volume_mm3:
            return False
        h_lo, h_hi = other.extent_along(h_axis)
        w_lo, w_hi = other.extent_along(w_axis)
        off_w = abs(piece.centroid_mm[2] - other.centroid_mm[2])
        return h_lo <= piece.centroid_mm[1] <= h_hi and off_w > 0.5 * (w_hi - w_lo)

    return [c for c in comps if not any(beside(c, other) for other in comps)]


def _column(comps: list[Component]) -> list[Component]:
    """The pieces of the spinal column: the group of nearby pieces with the most volume."""
    if len(comps) < 2:
        return comps
    lo = np.array([c.points_mm.min(axis=0) for c in comps])
    hi = np.array([c.points_mm.max(axis=0) for c in comps])
    # Gaps between boxes per axis (d, h, w), 0 where they overlap. Along the spine a gap may
    # be a whole level (a map of discs alone); across it, pieces of the column overlap.
    gaps = np.maximum(0.0, np.maximum(lo[:, None] - hi[None], lo[None] - hi[:, None]))
    near = (gaps[..., 1] <= COLUMN_GAP_ALONG_MM) & (gaps[..., [0, 2]] <= COLUMN_GAP_MM).all(-1)
    group = _groups(near)
    volumes = np.bincount(group, weights=[c.volume_mm3 for c in comps])
    keep = int(np.argmax(volumes))
    return [c for c, g in zip(comps, group, strict=True) if g == keep]


def _groups(adjacent: np.ndarray) -> np.ndarray:
    """Group number of each node of a graph given as a boolean adjacency matrix."""
    group = np.full(len(adjacent), -1)
    for start in range(len(adjacent)):
        if group[start] >= 0:
            continue
        stack, group[start] = [start], start
        while stack:
            node = stack.pop()
            for other in np.flatnonzero(adjacent[node] & (group < 0)):
                group[other] = start
                stack.append(other)
    return group


def find(
    labels_dhw: np.ndarray, spacing_dhw: Sequence[float], labeled: Sequence[bool] | None = None
) -> tuple[dict[str, np.ndarray], list[Component]]:
    """The bodies and discs of a label map.

    Args:
      labels_dhw: our labels in canonical layout.
      spacing_dhw: voxel size in mm.
      labeled: which of our classes the map labels (default all); unlabelled kinds are
        left out.

    Returns:
      ({"body", "disc"} -> piece map, with ``Component.label`` inside), and the components
      of the column superior to inferior, axes and heights set.
    """
    spacing = np.asarray(spacing_dhw, float)
    labeled = tuple(labeled) if labeled is not None else (True,) * len(LABEL_NAMES)
    maps, kept = {}, {}
    for value, kind in ((BODY, "body"), (DISC, "disc")):
        maps[kind], found = _pieces(labels_dhw, spacing, value, kind)
        kept[kind] = _without_crumbs(found) if labeled[value] else []
    kept["body"] = _split_at_discs(kept["body"], kept["disc"], maps["body"], spacing)
    comps = kept["body"] + kept["disc"]
    comps = sorted(_without_side_pieces(_column(comps)), key=lambda c: c.centroid_mm[1])
    set_axes(comps, spacing)
    return maps, comps


def set_axes(comps: list[Component], spacing_dhw: Sequence[float]) -> None:
    """Each component's spine axis and height (see ``Component``)."""
    for c in comps:
        if c.kind == "disc":
            c.axis_hw = geometry.minor_axis(c.points_hw)
    for i, c in enumerate(comps):
        if c.kind != "body":
            continue
        near = [comps[j] for j in (i - 1, i + 1) if 0 <= j < len(comps)]
        discs = [n.axis_hw for n in near if n.kind == "disc"]
        if discs:
            c.axis_hw = geometry.unit(np.mean(discs, axis=0))
        elif near:
            # No disc beside it: the direction of the chain through its neighbours.
            upper = comps[i - 1] if i > 0 else c
            lower = comps[i + 1] if i + 1 < len(comps) else c
            c.axis_hw = geometry.unit(lower.centre_hw - upper.centre_hw)
    for c in comps:
        lo, hi = np.percentile(c.points_hw @ c.axis_hw, [2.0, 98.0])
        footprint = abs(c.axis_hw[0]) * spacing_dhw[1] + abs(c.axis_hw[1]) * spacing_dhw[2]
        c.height_mm = float(hi - lo) / 0.96 + footprint


def gap(upper: Component, lower: Component) -> float:
    """Distance in mm along the spine from ``upper``'s lower end to ``lower``'s upper end.

    Measured slice by slice (a spine curving sideways would blur the two together if all
    slices were pooled), the median over the slices that hold both.
    """
    axis = geometry.unit(upper.axis_hw + lower.axis_hw)
    gaps = []
    for d in np.intersect1d(upper.points_mm[:, 0], lower.points_mm[:, 0]):
        above = upper.points_mm[upper.points_mm[:, 0] == d, 1:] @ axis
        below = lower.points_mm[lower.points_mm[:, 0] == d, 1:] @ axis
        gaps.append(below.min() - above.max())
    if not gaps:
        return lower.extent_along(axis)[0] - upper.extent_along(axis)[1]
    return float(np.median(gaps))
