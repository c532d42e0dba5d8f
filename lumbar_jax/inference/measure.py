"""Measurements per level, in mm on the series' own grid: discs, bodies, canal, foramina, conus.

Every measurement is a length along a line on one sagittal slice (``geometry.run_along``),
in the frame of the level it belongs to: the spine axis ``n`` of a disc is the direction
of its least spread (across the disc), ``t`` the perpendicular pointing posterior.

- Disc heights (mid-sagittal slice): the disc's extent along ``n`` at three points of its
  anterior-posterior span on the line through its centre along ``t``. The span is the disc's
  run on that line, limited to the vertebral bodies' walls above and below it (their runs
  on parallel lines 3 mm beyond the disc), so a bulge or herniation behind the posterior wall
  does not move it. Anterior and posterior heights are taken 10 % of the span inside its
  ends, the middle height at its centre.
- Body height (mid-sagittal slice): the shortest chord of the body through its centre within
  20 degrees of its spine axis (perpendicular to parallel endplates).
- Canal AP diameter at a disc (mid-sagittal slice): the run of canal or cord (the dural sac
  with its contents) on the disc's centre line along ``t``, behind the disc.
- The narrowest canal, foramina and the conus: see ``canal.py``.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from lumbar_jax.inference import canal, geometry
from lumbar_jax.inference.components import Component
from lumbar_jax.inference.levels import Levels
from lumbar_jax.labels import BODY, CANAL, CORD

# Lines are sampled this far (mm) on either side of a structure's centre.
REACH_MM = 60.0
# The bodies' walls are read on lines this far (mm) beyond the disc's half height.
WALL_OFFSET_MM = 3.0
# Anterior and posterior disc heights are taken this share of the span inside its ends.
MARGIN_SHARE = 0.1
# Body height: the shortest chord within this many degrees of the spine axis.
BODY_TILT_DEG = 20


@dataclasses.dataclass
class DiscMeasurement:
    """One disc's heights and the canal behind it (mm; None where not measurable)."""

    component: Component
    anterior_mm: float | None
    middle_mm: float | None
    posterior_mm: float | None
    canal_ap_mm: float | None


@dataclasses.dataclass
class BodyMeasurement:
    component: Component
    height_mm: float | None


@dataclasses.dataclass
class Measurements:
    """Everything measured on one label map (see the module docstring and ``canal.py``)."""

    mid_slice: int
    para_slices: tuple[int | None, int | None]
    discs: list[DiscMeasurement]
    bodies: list[BodyMeasurement]
    narrowest: canal.Narrowest | None
    foramina: list[canal.Foramen]
    conus: canal.Conus | None

    def to_json(self) -> dict:
        """JSON-ready, in mm, each entry with its level's name, superior to inferior."""

        def mm(value: float | None) -> float | None:
            return None if value is None else round(float(value), 1)

        right, left = self.para_slices
        return {
            "mid_sagittal_slice": self.mid_slice,
            "para_sagittal_slices": {"right": right, "left": left},
            "discs": [
                {
                    "level": m.component.name,
                    "height_anterior_mm": mm(m.anterior_mm),
                    "height_middle_mm": mm(m.middle_mm),
                    "height_posterior_mm": mm(m.posterior_mm),
                    "canal_ap_mm": mm(m.canal_ap_mm),
                }
                for m in self.discs
            ],
            "bodies": [
                {"level": m.component.name, "height_mm": mm(m.height_mm)} for m in self.bodies
            ],
            "canal_narrowest": None if self.narrowest is None else self.narrowest.to_json(),
            "foramina": [f.to_json() for f in self.foramina],
            "conus": None if self.conus is None else self.conus.to_json(),
        }


def _slice_mask(levels: Levels, component: Component, d: int) -> np.ndarray:
    return levels.maps[component.kind][d] == component.label


def _centre(mask_2d: np.ndarray, spacing_hw) -> np.ndarray | None:
    points = geometry.hw_points(mask_2d, spacing_hw)
    return points.mean(axis=0) if len(points) else None


def disc_span(disc_2d, bodies_2d, spacing_hw, centre, n, middle) -> tuple[float, float] | None:
    """The disc's anterior-posterior span on its centre line, within the bodies' walls.

    Returns (anterior end, posterior end) in mm along ``t`` from ``centre``.
    """
    t = geometry.across(n)
    own = geometry.run_along(disc_2d, spacing_hw, centre, t, (-REACH_MM, REACH_MM))
    if own is None:
        return None
    walls = []
    for sign in (-1.0, 1.0):
        origin = centre + sign * (middle / 2 + WALL_OFFSET_MM) * n
        found = geometry.span_along(bodies_2d, spacing_hw, origin, t, (-REACH_MM, REACH_MM))
        if found is not None:
            walls.append(found)
    if walls:
        return max(own[0], float(np.mean([w[0] for w in walls]))), min(
            own[1], float(np.mean([w[1] for w in walls]))
        )
    return own


def measure_disc(levels: Levels, disc: Component, labels_dhw: np.ndarray) -> DiscMeasurement:
    """Heights and canal AP diameter of one disc on the mid-sagittal slice."""
    d, spacing_hw = levels.mid_slice, levels.spacing_dhw[1:]
    disc_2d = _slice_mask(levels, disc, d)
    centre = _centre(disc_2d, spacing_hw)
    if centre is None:
        return DiscMeasurement(disc, None, None, None, None)
    n, t = disc.axis_hw, geometry.across(disc.axis_hw)
    reach = (-REACH_MM / 2, REACH_MM / 2)
    middle = geometry.run_length(disc_2d, spacing_hw, centre, n, reach)
    span = None
    if middle is not None:
        span = disc_span(disc_2d, labels_dhw[d] == BODY, spacing_hw, centre, n, middle)
    heights: list[float | None] = [None, None, None]
    if span is not None:
        front, back = span
        margin = MARGIN_SHARE * (back - front)
        for i, s in enumerate((front + margin, (front + back) / 2, back - margin)):
            heights[i] = geometry.run_length(disc_2d, spacing_hw, centre + s * t, n, reach)
    canal_2d = np.isin(labels_dhw[d], (CANAL, CORD))
    canal_ap = geometry.run_length(canal_2d, spacing_hw, centre, t, (0.0, 2 * REACH_MM))
    return DiscMeasurement(disc, *heights, canal_ap)


def measure_body(levels: Levels, body: Component) -> BodyMeasurement:
    """The height of one body on the mid-sagittal slice (None for a body cut by the view)."""
    spacing_hw = levels.spacing_dhw[1:]
    body_2d = _slice_mask(levels, body, levels.mid_slice)
    centre = _centre(body_2d, spacing_hw)
    if centre is None or body.cut:
        return BodyMeasurement(body, None)
    chords = [
        geometry.run_length(
            body_2d, spacing_hw, centre, geometry.rotate(body.axis_hw, a), (-REACH_MM, REACH_MM)
        )
        for a in range(-BODY_TILT_DEG, BODY_TILT_DEG + 1)
    ]
    found = [c for c in chords if c is not None]
    return BodyMeasurement(body, min(found) if found else None)


def measure(levels: Levels, labels_dhw: np.ndarray) -> Measurements:
    """Every measurement of a named label map (``levels.name_levels`` of ``labels_dhw``).

    Sacral bodies, fused segments and bodies cut by the field of view get no body height.
    """
    discs = [measure_disc(levels, c, labels_dhw) for c in levels.named("disc")]
    bodies = [
        measure_body(levels, c)
        for c in levels.named("body")
        if not c.name.startswith("S") and "-" not in c.name
    ]
    para = geometry.para_sagittal_slices(labels_dhw, levels.spacing_dhw, levels.mid_slice)
    return Measurements(
        mid_slice=levels.mid_slice,
        para_slices=para,
        discs=discs,
        bodies=bodies,
        narrowest=canal.narrowest(levels, labels_dhw),
        foramina=canal.foramina(levels, labels_dhw),
        conus=canal.conus(levels, labels_dhw),
    )
