"""What a phantom case drew, as numbers to test level names and measurements against.

``case_truth`` reads the drawing itself, not the rendered label map: every length is the run
of a label along a line of the drawing (``Phantom.plane`` evaluated every 0.05 mm), so it
holds whatever the drawing holds there (wedge-shaped discs, bulges, herniations displacing
the sac, Schmorl nodes, neighbours drawn over each other). The lines follow the drawn frame of
each segment (its centre and axis), and the definitions are those of
``lumbar_jax.inference.measure`` and ``canal`` (see the README):

- bodies: the run of body label along the body's axis through its centre;
- discs: the disc's anterior-posterior span on its centre line, limited to the body walls 3 mm
  beyond its half height, and its heights along its axis 10 % inside either end and at the
  middle; the canal (canal or cord label) run behind its centre along the same line;
- the narrowest canal between T12/L1 and L5/S1, perpendicular to the sac's centre line
  smoothed over 10 mm, its profile averaged over 5 mm;
- the foramina per level and side on the para-sagittal slice planes, area and longest run
  along the foramen's long axis;
- the conus: where the drawn cord ends (its tip on the sac's centre plane).

Lengths and positions are on the plane of the acquired mid-sagittal slice (the slice nearest
the sac's centre plane), as that is what the label map shows. Positions are canonical mm:
voxel (d, h, w) at (d, h, w) * spacing, i.e. the drawing's (y, z) less half a pixel.
"""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import numpy as np
from scipy import ndimage

from lumbar_jax.data.phantom.render import RenderedCase
from lumbar_jax.data.phantom.spine import Segment, wedge
from lumbar_jax.labels import BODY, CANAL, CORD, DISC, FORAMEN

STEP_MM = 0.05
REACH_MM = 60.0
WALL_OFFSET_MM = 3.0
MARGIN_SHARE = 0.1
VERSION = 1
# Beside each label map: labelsTr/<case>_truth.json.
SUFFIX = "_truth.json"


def _runs(inside: np.ndarray) -> list[tuple[int, int]]:
    padded = np.concatenate([[False], inside, [False]]).astype(np.int8)
    edges = np.flatnonzero(np.diff(padded))
    return list(zip(edges[::2].tolist(), edges[1::2].tolist(), strict=True))


def _frame(theta: float) -> tuple[np.ndarray, np.ndarray]:
    """(axis u, posterior v) unit vectors in (y, z) of a segment tilted by ``theta``."""
    return np.array([math.cos(theta), math.sin(theta)]), np.array(
        [-math.sin(theta), math.cos(theta)]
    )


class Drawing:
    """The drawn labels of one case on one sagittal plane, sampled along lines."""

    def __init__(self, case: RenderedCase, x: float):
        self.phantom, self.x = case.phantom, x

    def labels(self, points_yz: np.ndarray) -> np.ndarray:
        return self.phantom.plane(self.x, points_yz[..., 0], points_yz[..., 1]).label

    def inside(self, origin, direction, reach, classes) -> tuple[np.ndarray, np.ndarray]:
        """(positions along the line, whether each holds one of ``classes``)."""
        s = np.arange(reach[0], reach[1] + STEP_MM / 2, STEP_MM)
        points = np.asarray(origin, float) + s[:, None] * np.asarray(direction, float)
        return s, np.isin(self.labels(points), classes)

    def run(self, origin, direction, reach, classes, at=0.0) -> tuple[float, float] | None:
        """The run of ``classes`` along a line nearest to position ``at`` (mm), as (start, end)."""
        s, inside = self.inside(origin, direction, reach, classes)
        found = _runs(inside)
        if not found:
            return None

        def distance(r):
            lo, hi = s[r[0]] - STEP_MM / 2, s[r[1] - 1] + STEP_MM / 2
            return 0.0 if lo <= at <= hi else min(abs(lo - at), abs(hi - at))

        lo, hi = min(found, key=distance)
        return float(s[lo] - STEP_MM / 2), float(s[hi - 1] + STEP_MM / 2)

    def length(self, *args, **kwargs) -> float | None:
        found = self.run(*args, **kwargs)
        return None if found is None else found[1] - found[0]

    def span(self, origin, direction, reach, classes) -> tuple[float, float] | None:
        s, inside = self.inside(origin, direction, reach, classes)
        where = np.flatnonzero(inside)
        if where.size == 0:
            return None
        return float(s[where[0]] - STEP_MM / 2), float(s[where[-1]] + STEP_MM / 2)


def _round(value: float | None, digits: int = 2) -> float | None:
    return None if value is None else round(float(value), digits)


def disc_truth(draw: Drawing, disc: Segment) -> dict:
    """Heights (anterior, middle, posterior) and the canal behind one drawn disc."""
    n, t = _frame(disc.theta)
    centre = np.array([disc.cy, disc.cz])
    reach = (-REACH_MM / 2, REACH_MM / 2)
    middle = draw.length(centre, n, reach, (DISC,))
    out = {"height_anterior_mm": None, "height_middle_mm": None, "height_posterior_mm": None}
    out["span_mm"] = None
    own = draw.run(centre, t, (-REACH_MM, REACH_MM), (DISC,))
    if middle is not None and own is not None:
        walls = [
            draw.span(
                centre + sign * (middle / 2 + WALL_OFFSET_MM) * n, t, (-REACH_MM, REACH_MM), (BODY,)
            )
            for sign in (-1.0, 1.0)
        ]
        walls = [w for w in walls if w is not None]
        front, back = own
        if walls:
            front = max(front, float(np.mean([w[0] for w in walls])))
            back = min(back, float(np.mean([w[1] for w in walls])))
        margin = MARGIN_SHARE * (back - front)
        keys = ("height_anterior_mm", "height_middle_mm", "height_posterior_mm")
        for key, s in zip(keys, (front + margin, (front + back) / 2, back - margin), strict=True):
            out[key] = _round(draw.length(centre + s * t, n, reach, (DISC,)))
        # The span's ends along t from the drawn centre (anterior negative).
        out["span_mm"] = [_round(front), _round(back)]
    out["canal_ap_mm"] = _round(draw.length(centre, t, (0.0, 2 * REACH_MM), (CANAL, CORD)))
    return out


def body_truth(draw: Drawing, body: Segment) -> float | None:
    n, _ = _frame(body.theta)
    centre = np.array([body.cy, body.cz])
    return _round(draw.length(centre, n, (-REACH_MM, REACH_MM), (BODY,)))


def _extent(segment: Segment) -> float:
    """Half the extent along its axis: a disc's wedge makes it taller at one margin."""
    if segment.kind == "body":
        return segment.half_height
    return segment.half_height * float(
        max(wedge(segment, -segment.half_depth), wedge(segment, segment.half_depth))
    )


def locate(segments: list[Segment], point_yz: np.ndarray) -> tuple[str, float]:
    """(name, fraction from superior to inferior end) of the segment holding a point.

    The same rule as ``lumbar_jax.inference.canal.locate``: the segment whose extent along
    its own axis holds the point, the nearest one otherwise.
    """
    best, best_key = None, None
    for s in segments:
        u, _ = s.local(np.asarray(point_yz[0]), np.asarray(point_yz[1]))
        half = _extent(s)
        outside = max(abs(float(u)) - half, 0.0)
        key = (outside, abs(float(u)) / (2 * half))
        if best_key is None or key < best_key:
            best, best_key = (s.name, min(max((float(u) + half) / (2 * half), 0.0), 1.0)), key
    return best


def narrowest_truth(case: RenderedCase, draw: Drawing) -> dict | None:
    """The narrowest canal between the canal behind T12/L1 and behind L5/S1."""
    p, fov = case.phantom, case.acquisition.pixel * case.acquisition.matrix
    discs = {s.name: s for s in p.segments if s.kind == "disc"}
    ends = []
    for name, default in (("T12/L1", 0.0), ("L5/S1", fov)):
        s = discs.get(name)
        run = None
        if s is not None:
            _, t = _frame(s.theta)
            run = draw.run(np.array([s.cy, s.cz]), t, (0.0, 120.0), (CANAL, CORD))
        ends.append(default if run is None else s.cy + (run[0] + run[1]) / 2 * t[0])
    top, bottom = max(ends[0], 0.0), min(ends[1], fov)
    if bottom - top < 5.0:
        return None
    step = 0.5
    y_wide = np.arange(top - 20.0, bottom + 20.0, step)
    z_wide = ndimage.uniform_filter1d(p.sac_center_z(y_wide), int(10.0 / step), mode="nearest")
    y = np.arange(top, bottom + step / 2, step)
    z = np.interp(y, y_wide, z_wide)
    slope = np.interp(y, y_wide, np.gradient(z_wide, step))
    normal = np.stack([-slope, np.ones_like(slope)], axis=-1)
    normal /= np.linalg.norm(normal, axis=-1, keepdims=True)
    chord_step = 0.1
    s = np.arange(-30.0, 30.0 + chord_step / 2, chord_step)
    points = np.stack([y, z], -1)[:, None, :] + s[None, :, None] * normal[:, None, :]
    inside = np.isin(draw.labels(points), (CANAL, CORD))
    chords = []
    for row in inside:
        found = _runs(row)
        if not found:
            chords.append(np.nan)
            continue
        centre = len(s) // 2
        lo, hi = min(
            found,
            key=lambda r: (
                0 if r[0] <= centre < r[1] else min(abs(r[0] - centre), abs(r[1] - centre))
            ),
        )
        chords.append((hi - lo) * chord_step)
    chords = np.asarray(chords)
    ok = np.isfinite(chords)
    profile = ndimage.uniform_filter1d(chords[ok], int(5.0 / step), mode="nearest")
    i = int(np.argmin(profile))
    where = np.array([y[ok][i], z[ok][i]])
    name, _ = locate(p.segments, where)
    return {"ap_mm": _round(profile[i]), "level": name, "position_hw_mm": _canonical(case, where)}


def _canonical(case: RenderedCase, point_yz: np.ndarray) -> list[float]:
    """Canonical (h, w) mm of a drawing point: voxel centres sit half a pixel in."""
    return [round(float(v) - case.acquisition.pixel / 2, 2) for v in point_yz]


def _foramen_on_plane(draw: Drawing, centre, n, t, a: float, b: float) -> tuple[float, float]:
    """(area mm^2, longest run along the long axis mm) of the foramen drawn around ``centre``."""
    step = 0.2  # fine enough: area within about 1 %, height within 0.2 mm
    u = np.arange(-a - 1.0, a + 1.0 + step / 2, step)
    v = np.arange(-b - 1.0, b + 1.0 + step / 2, step)
    grid = centre + u[:, None, None] * n + v[None, :, None] * t
    # Only this foramen's ellipse and a margin: never a neighbour's.
    near = (u[:, None] / (a + 1.0)) ** 2 + (v[None, :] / (b + 1.0)) ** 2 <= 1.0
    inside = (draw.labels(grid) == FORAMEN) & near
    longest = max((hi - lo for col in inside.T for lo, hi in _runs(col)), default=0)
    return float(inside.sum() * step * step), float(longest * step)


def foramina_truth(case: RenderedCase) -> list[dict]:
    """Area and height of every drawn foramen per level and side.

    Each on the para-sagittal slice planes of its side that cut the foramina (the drawing's
    foramina are the same on every plane between the pedicles; a herniation may cover part),
    the plane where it is largest. Foramina not wholly in the field of view are left out.
    """
    p, fov = case.phantom, case.acquisition.pixel * case.acquisition.matrix
    lo, hi = p.sac_rx + 1.5, p.sac_rx + 9.0
    bodies = [s for s in p.segments if s.kind == "body"]
    out = []
    for side, sign in (("right", -1.0), ("left", 1.0)):
        planes = [(d, x) for d, x in enumerate(case.slice_x_mm) if lo <= sign * x <= hi]
        for upper, lower in itertools.pairwise(bodies):
            if upper.name.startswith("S"):
                break
            n, t = _frame(upper.theta)
            # The ellipse of ``Phantom._foramina``.
            a, b = upper.half_height * 0.6 + 3.0, 4.8
            centre = np.array([upper.cy, upper.cz]) + upper.half_height * 0.55 * n
            centre = centre + (upper.half_depth + 6.0) * t
            if not (a + 1 <= centre[0] <= fov - a - 1 and a + 1 <= centre[1] <= fov - a - 1):
                continue
            best = None
            for d, x in planes:
                area, height = _foramen_on_plane(Drawing(case, x), centre, n, t, a, b)
                if area > 0 and (best is None or area > best[1]):
                    best = (d, area, height)
            if best is not None:
                out.append(
                    {
                        "level": f"{upper.name}/{lower.name}",
                        "side": side,
                        "slice": best[0],
                        "centre_hw_mm": _canonical(case, centre),
                        "area_mm2": _round(best[1]),
                        "height_mm": _round(best[2]),
                    }
                )
    return out


def _segment_entry(case: RenderedCase, draw: Drawing, s: Segment) -> dict:
    p, a = case.phantom, case.acquisition
    fov = a.pixel * a.matrix
    n, _t = _frame(s.theta)
    reach = _extent(s) + s.half_depth
    centre = np.array([s.cy, s.cz])
    entry = {
        "name": s.name,
        "kind": s.kind,
        "centre_hw_mm": _canonical(case, centre),
        "axis_hw": [round(float(v), 5) for v in n],
        "half_height_mm": round(s.half_height, 3),
        "half_extent_mm": round(_extent(s), 3),
        "half_depth_mm": round(s.half_depth, 3),
        "voxels": _voxels(case, s),
        "whole_in_view": bool(reach <= s.cy <= fov - reach and reach <= s.cz <= fov - reach),
    }
    if s.kind == "body":
        entry["height_mm"] = body_truth(draw, s)
        return entry
    entry |= disc_truth(draw, s)
    entry |= {
        "degenerate": s.degenerate,
        "bulge_mm": round(p.bulge[s.name], 2),
        "herniation": any(h.disc == s.name for h in p.herniations),
        "schmorl_nodes": sum(node.disc == s.name for node in p.schmorl_nodes),
    }
    return entry


def _voxels(case: RenderedCase, s: Segment) -> int:
    """Voxels of the segment's label inside its drawn box in the rendered label map."""
    px = case.acquisition.pixel
    coords = (np.arange(case.acquisition.matrix) + 0.5) * px
    y, z = np.meshgrid(coords, coords, indexing="ij")
    u, v = s.local(y, z)
    box = (np.abs(u) <= _extent(s)) & (np.abs(v) <= s.half_depth)
    value = BODY if s.kind == "body" else DISC
    return int(((case.label_dhw == value) & box[None]).sum())


def write_truth(truth: dict, path: Path) -> None:
    """Writes a ``case_truth`` as JSON to ``path``."""
    path.write_text(json.dumps(truth, indent=1) + "\n")


def case_truth(case: RenderedCase) -> dict:
    """The truth of one rendered case (see the module docstring), JSON-ready."""
    p = case.phantom
    mid = int(np.argmin(np.abs(case.slice_x_mm)))
    draw = Drawing(case, float(case.slice_x_mm[mid]))
    tip = np.array([p.conus_y, float(p.sac_center_z(p.conus_y)) - 0.8])
    level, fraction = locate(p.segments, tip)
    return {
        "version": VERSION,
        "spacing_dhw": [round(float(v), 5) for v in case.spacing_dhw],
        "mid_sagittal_slice": mid,
        "levels": [_segment_entry(case, draw, s) for s in p.segments],
        "canal_narrowest": narrowest_truth(case, draw),
        "foramina": foramina_truth(case),
        "conus": {
            "position_hw_mm": _canonical(case, tip),
            "level": level,
            "fraction_of_level": round(fraction, 3),
        },
    }
