"""The canal, the foramina and the cord's end, in mm, placed at the spine's named levels.

- Narrowest canal (a stenosis screen, mid-sagittal slice): the canal (canal or cord label) is
  followed row by row from the T12/L1 disc's centre (or the top of the canal in view) to
  the L5/S1 disc's centre (or its bottom); its centre line is the mean position of each row's
  canal, smoothed over 10 mm. At every row the canal's chord perpendicular to that centre
  line is its AP diameter; the profile is averaged over 5 mm and its minimum reported, with
  the level it lies at.
- Foramina (para-sagittal slices): each foramen component on either side of the mid-sagittal
  slice (not those cut by the field of view), on the slice where it is largest. Its area is its pixel area there, its height the
  longest chord along its own long axis (the direction of its greatest spread, close to the
  spine's). Its level is the disc nearest its lower part (a disc lies in the lower half of
  its foramen).
- Conus (mid-sagittal slice): going down the cord row by row, the thickness of the cord
  label in the anterior half of the dural sac (the cauda equina roots lie in its posterior
  half), against its median over the cord's top 40 mm; the cord's tip is the upper edge of
  the first row from which it stays below 25 % of that for 3 mm.
- A point's level: the named body or disc whose extent along its own spine axis holds the
  point (else the nearest), with the point's fraction of the way down that extent.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy import ndimage

from lumbar_jax.inference import geometry
from lumbar_jax.inference.components import Component
from lumbar_jax.inference.levels import Levels
from lumbar_jax.labels import CANAL, CORD, FORAMEN

CENTRE_SMOOTH_MM = 10.0
PROFILE_SMOOTH_MM = 5.0
CHORD_REACH_MM = 30.0
# The cord's thickness above its end is the median over this length from its top.
CORD_TOP_MM = 40.0
# The cord ends where its anterior part is thinner than this share of its thickness above,
# over at least this length (a hole of a row or two in a predicted cord is not its end).
CORD_END_SHARE = 0.25
CORD_END_MM = 3.0
# Foramen pieces smaller than this (mm^3) are not measured.
MIN_FORAMEN_MM3 = 20.0


def _mm(value: float | None) -> float | None:
    return None if value is None else round(float(value), 1)


def locate(levels: Levels, point_hw: np.ndarray) -> tuple[str | None, float | None]:
    """(level name, fraction from its superior to its inferior end) of a sagittal point."""
    best, best_key = None, None
    for comp in levels.named():
        proj = comp.points_hw @ comp.axis_hw
        lo, hi = float(proj.min()), float(proj.max())
        p = float(np.asarray(point_hw) @ comp.axis_hw)
        outside = max(lo - p, p - hi, 0.0)
        key = (outside, abs(p - (lo + hi) / 2) / max(hi - lo, 1e-6))
        if best_key is None or key < best_key:
            best, best_key = (comp.name, min(max((p - lo) / max(hi - lo, 1e-6), 0.0), 1.0)), key
    return best if best else (None, None)


@dataclasses.dataclass
class Narrowest:
    ap_mm: float
    position_hw: np.ndarray
    level: str | None

    def to_json(self) -> dict:
        return {"ap_mm": _mm(self.ap_mm), "level": self.level}


def _smooth(values: np.ndarray, step_mm: float, window_mm: float) -> np.ndarray:
    size = max(1, round(window_mm / step_mm))
    return ndimage.uniform_filter1d(np.asarray(values, float), size, mode="nearest")


def _behind(levels: Levels, name: str, canal_2d: np.ndarray, default: float) -> float:
    """The height (h, mm) of the canal's middle behind a named disc's centre."""
    disc = levels.by_name(name)
    if disc is None:
        return default
    t = geometry.across(disc.axis_hw)
    spacing_hw = levels.spacing_dhw[1:]
    run = geometry.run_along(canal_2d, spacing_hw, disc.centre_hw, t, (0.0, 4 * CHORD_REACH_MM))
    if run is None:
        return default
    return float(disc.centre_hw[0] + (run[0] + run[1]) / 2 * t[0])


def narrowest(levels: Levels, labels_dhw: np.ndarray) -> Narrowest | None:
    """The narrowest canal between T12/L1 and L5/S1 on the mid-sagittal slice."""
    spacing_hw = levels.spacing_dhw[1:]
    canal_2d = np.isin(labels_dhw[levels.mid_slice], (CANAL, CORD))
    rows = np.flatnonzero(canal_2d.any(axis=1))
    if rows.size < 3:
        return None
    h_all = np.arange(rows[0], rows[-1] + 1) * spacing_hw[0]
    centres = [np.flatnonzero(canal_2d[r]).mean() * spacing_hw[1] for r in rows]
    w_all = _smooth(
        np.interp(h_all, rows * spacing_hw[0], centres), spacing_hw[0], CENTRE_SMOOTH_MM
    )
    slope = np.gradient(w_all, spacing_hw[0]) if len(h_all) > 1 else np.zeros(1)
    top = _behind(levels, "T12/L1", canal_2d, h_all[0])
    bottom = _behind(levels, "L5/S1", canal_2d, h_all[-1])
    chords, points = [], []
    for h, w, dw in zip(h_all, w_all, slope, strict=True):
        if not top <= h <= bottom:
            continue
        point = np.array([h, w])
        normal = geometry.across(geometry.unit([1.0, dw]))
        chord = geometry.run_length(
            canal_2d, spacing_hw, point, normal, (-CHORD_REACH_MM, CHORD_REACH_MM)
        )
        if chord is not None:
            chords.append(chord)
            points.append(point)
    if not chords:
        return None
    profile = _smooth(chords, spacing_hw[0], PROFILE_SMOOTH_MM)
    i = int(np.argmin(profile))
    return Narrowest(float(profile[i]), points[i], locate(levels, points[i])[0])


@dataclasses.dataclass
class Foramen:
    side: str  # "right" or "left" (of the patient)
    slice: int
    level: str | None
    centre_mm: np.ndarray  # (d, h, w)
    height_mm: float | None
    area_mm2: float

    def to_json(self) -> dict:
        return {
            "level": self.level,
            "side": self.side,
            "slice": self.slice,
            "height_mm": _mm(self.height_mm),
            "area_mm2": _mm(self.area_mm2),
        }


def _foramen_level(levels: Levels, points_hw: np.ndarray) -> Component | None:
    """The named disc nearest, along its own axis, to the lower part of a foramen."""
    lo, hi = points_hw[:, 0].min(), points_hw[:, 0].max()
    ref = np.array([lo + 0.75 * (hi - lo), points_hw[:, 1].mean()])
    discs = levels.named("disc")
    if not discs:
        return None
    return min(discs, key=lambda c: abs(float((ref - c.centre_hw) @ c.axis_hw)))


def _longest_chord(mask_2d, spacing_hw, centre, axis) -> float | None:
    t = geometry.across(axis)
    chords = [
        geometry.run_length(mask_2d, spacing_hw, centre + off * t, axis, (-40.0, 40.0))
        for off in np.arange(-15.0, 15.25, 0.25)
    ]
    found = [c for c in chords if c is not None]
    return max(found) if found else None


def _at_border(piece: np.ndarray) -> bool:
    """Whether a piece touches the in-plane border: cut by the field of view."""
    rows, cols = piece.any(axis=(0, 2)), piece.any(axis=(0, 1))
    return bool(rows[0] or rows[-1] or cols[0] or cols[-1])


def foramina(levels: Levels, labels_dhw: np.ndarray) -> list[Foramen]:
    """Every foramen on either side of the mid-sagittal slice, superior to inferior."""
    spacing = np.asarray(levels.spacing_dhw, float)
    mid = levels.mid_slice
    found = []
    for side, slices in (("right", slice(0, mid)), ("left", slice(mid + 1, None))):
        mask = np.zeros(labels_dhw.shape, bool)
        mask[slices] = labels_dhw[slices] == FORAMEN
        pieces, count = ndimage.label(mask, structure=np.ones((3, 3, 3), bool))
        for i in range(1, count + 1):
            piece = pieces == i
            if piece.sum() * spacing.prod() < MIN_FORAMEN_MM3 or _at_border(piece):
                continue
            d = int(np.argmax(piece.sum(axis=(1, 2))))
            piece_2d = piece[d]
            points = geometry.hw_points(piece_2d, spacing[1:])
            disc = _foramen_level(levels, points)
            # Its long axis: across the direction of its least spread.
            axis = geometry.across(geometry.minor_axis(points)) if len(points) > 2 else [1, 0]
            centre = points.mean(axis=0)
            found.append(
                Foramen(
                    side,
                    d,
                    disc.name if disc else None,
                    np.array([d * spacing[0], *centre]),
                    _longest_chord(piece_2d, spacing[1:], centre, axis),
                    float(piece_2d.sum() * spacing[1] * spacing[2]),
                )
            )
    return sorted(found, key=lambda f: (f.side, f.centre_mm[1]))


@dataclasses.dataclass
class Conus:
    position_hw: np.ndarray
    level: str | None
    fraction: float | None

    def to_json(self) -> dict:
        return {
            "level": self.level,
            "fraction_of_level": None if self.fraction is None else round(self.fraction, 2),
        }


def cord_tip(labels_2d: np.ndarray, spacing_hw) -> np.ndarray | None:
    """(h, w) in mm of the cord's tip on a sagittal slice (see the module docstring)."""
    cord_2d = labels_2d == CORD
    rows = np.flatnonzero(cord_2d.any(axis=1))
    if rows.size < 3:
        return None
    sac = np.isin(labels_2d, (CANAL, CORD))
    thickness = np.zeros(labels_2d.shape[0])
    for r in range(rows[0], labels_2d.shape[0]):
        if sac[r].any():
            # Only the cord in the sac's anterior half: the roots lie behind its middle.
            front = np.arange(labels_2d.shape[1]) <= np.flatnonzero(sac[r]).mean()
            thickness[r] = (cord_2d[r] & front).sum() * spacing_hw[1]
    top = rows[rows * spacing_hw[0] <= rows[0] * spacing_hw[0] + CORD_TOP_MM]
    full = float(np.median(thickness[top]))
    thin = thickness < CORD_END_SHARE * full
    # The first row of a thin stretch of CORD_END_MM or more below the cord's top.
    span = max(1, round(CORD_END_MM / spacing_hw[0]))
    for r in range(rows[0], labels_2d.shape[0] - span + 1):
        if thin[r : r + span].all():
            last = max(r - 1, rows[0])
            w = np.flatnonzero(cord_2d[last]).mean() * spacing_hw[1] if cord_2d[last].any() else 0
            return np.array([(r - 0.5) * spacing_hw[0], w])
    return None  # the cord does not end in view


def conus(levels: Levels, labels_dhw: np.ndarray) -> Conus | None:
    """The cord's end on the mid-sagittal slice and its level; None if it ends out of view."""
    tip = cord_tip(labels_dhw[levels.mid_slice], levels.spacing_dhw[1:])
    if tip is None:
        return None
    return Conus(tip, *locate(levels, tip))
