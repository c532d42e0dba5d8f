"""Level names of the vertebral bodies and discs of a label map, counted from the sacrum.

The bodies and discs are the pieces of their labels (``components.find``: crumbs and pieces
off the column left out), ordered superior to inferior along the spine. The lowest disc with the sacrum below it is
L5/S1 (``_anchor`` says how the sacrum is recognised); from there names go up the chain
L5, L4/L5, L4, ... T12/L1, T12, ..., alternating disc and body, and down S1, S2, ... through
the sacrum. Whatever makes the count doubtful (no sacrum, bodies and discs that do not
alternate, a fused segment, a lumbar spine of 4 or 6 bodies) is listed in ``reasons`` and
makes ``confidence`` "low".
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Sequence

import numpy as np

from lumbar_jax.inference import components, geometry
from lumbar_jax.inference.components import Component, gap

# Body and disc names from T1 down to S1, alternating body and disc.
_SPINE = [f"T{i}" for i in range(1, 13)] + [f"L{i}" for i in range(1, 6)] + ["S1"]
CHAIN = [n for up, low in itertools.pairwise(_SPINE) for n in (up, f"{up}/{low}")]
CHAIN.append("S1")
L5_S1 = CHAIN.index("L5/S1")
SACRAL_SEGMENTS = 5
BODIES = _SPINE + [f"S{i}" for i in range(2, SACRAL_SEGMENTS + 1)]
# The sacrum under the lowest disc: a body this many times the median body height (S1-S5
# as one component), or a disc this many degrees steeper than the disc above it.
SACRUM_HEIGHT_RATIO = 1.5
LUMBOSACRAL_ANGLE_DEG = 10.0
# A body of this many times the median height above the sacrum spans two levels (fused).
FUSED_HEIGHT_RATIO = 1.6
# Two bodies closer than this along the spine have no disc space between them.
MIN_DISC_SPACE_MM = 3.0
# A body is lumbar-looking at this share of the median mid-sagittal area of L3-L5 or more,
# thoracic-looking below the second; in between it is neither (the phantom's and real
# bodies vary by 10-20 % at one level).
LUMBAR_LOOKING, THORACIC_LOOKING = 0.85, 0.75


@dataclasses.dataclass
class Levels:
    """The named bodies and discs of one label map.

    Attributes:
      components: every body and disc component, superior to inferior along the spine.
      confidence: "high" or "low".
      reasons: why the confidence is low (empty when high).
      maps: {"body", "disc"} -> component map (0 outside, ``Component.label`` inside).
      spacing_dhw: voxel size in mm.
      mid_slice: the mid-sagittal slice (``geometry.mid_sagittal_slice``).
    """

    components: list[Component]
    confidence: str
    reasons: list[str]
    maps: dict[str, np.ndarray]
    spacing_dhw: tuple[float, float, float]
    mid_slice: int

    def named(self, kind: str | None = None) -> list[Component]:
        return [c for c in self.components if c.name and (kind is None or c.kind == kind)]

    def by_name(self, name: str) -> Component | None:
        return next((c for c in self.components if c.name == name), None)

    def mask(self, component: Component) -> np.ndarray:
        return self.maps[component.kind] == component.label

    def summary(self) -> dict:
        """JSON-ready: names superior to inferior per kind, confidence and reasons."""
        return {
            "bodies": [c.name for c in self.named("body")],
            "discs": [c.name for c in self.named("disc")],
            "level_confidence": self.confidence,
            "reasons": list(self.reasons),
        }


def _median_height(bodies: list[Component]) -> float:
    whole = [b.height_mm for b in bodies if not b.cut] or [b.height_mm for b in bodies]
    return float(np.median(whole)) if whole else float("nan")


def _sacrum_below_disc(comps: list[Component], low: int) -> list[str]:
    """Signs that the bodies under the disc ``comps[low]`` are the sacrum (none: empty)."""
    below = comps[low + 1 :]
    signs = []
    if len(below) >= 2:
        signs.append("bodies without a disc between them under the lowest disc (sacral segments)")
    above = [c for c in comps[:low] if c.kind == "body"][-5:]
    if below and below[0].height_mm >= SACRUM_HEIGHT_RATIO * _median_height(above):
        signs.append("a body under the lowest disc as tall as several (the sacrum)")
    upper_discs = [c for c in comps[:low] if c.kind == "disc"]
    if upper_discs:
        steeper = geometry.angle_deg(comps[low].axis_hw) - geometry.angle_deg(
            upper_discs[-1].axis_hw
        )
        if steeper >= LUMBOSACRAL_ANGLE_DEG:
            signs.append(f"the lowest disc {steeper:.0f} degrees steeper than the one above")
    return signs


def _anchor(comps: list[Component], kinds: set[str]) -> tuple[int, int, list[str]]:
    """(index in ``comps``, position in CHAIN, reasons for doubt) of the naming's anchor.

    With discs: the lowest disc is L5/S1, confirmed by the sacrum below it (``_sacrum_below_
    disc``). Without discs: the top of the lowest group of bodies without disc spaces between
    them is S1 when that group looks like the sacrum, else the lowest body is taken as L5.
    """
    reasons = []
    if "disc" in kinds:
        low = max(i for i, c in enumerate(comps) if c.kind == "disc")
        signs = _sacrum_below_disc(comps, low)
        has_below = low + 1 < len(comps)
        if "body" not in kinds:
            reasons.append("no vertebral bodies: bodies and discs cannot be checked to alternate")
            if not signs:
                reasons.append("the lowest disc is not steeper than the one above (not L5/S1?)")
        elif not has_below:
            reasons.append(
                "no vertebral body under the lowest disc: the sacrum is outside the field of "
                "view or not found, so the lowest disc is taken as L5/S1"
            )
        elif not signs:
            reasons.append(
                "the body under the lowest disc does not look like the sacrum (one body, not "
                "tall, the disc above not steeper): it may be L5 with L5/S1 not found"
            )
        return low, L5_S1, reasons
    low = len(comps) - 1
    top = low
    while top > 0 and gap(comps[top - 1], comps[top]) < MIN_DISC_SPACE_MM:
        top -= 1
    reasons.append("no intervertebral discs: bodies and discs cannot be checked to alternate")
    if top < low or comps[low].height_mm >= SACRUM_HEIGHT_RATIO * _median_height(comps[:low]):
        return top, len(CHAIN) - 1, reasons
    reasons.append("no sacrum under the lowest body: it is taken as L5")
    return low, CHAIN.index("L5"), reasons


def _step_up(prev: Component, comp: Component, both: bool, median_h: float):
    """(chain positions to go up, fused name pair or None, reason or None) from prev to comp."""
    if not both:
        # One kind only: the other level lies between them unseen.
        if comp.kind == "body" and gap(comp, prev) < MIN_DISC_SPACE_MM:
            return 2, None, f"no disc space between two bodies above {prev.name}: fused?"
        return 2, None, None
    if comp.kind == prev.kind:
        together = comp.height_mm + prev.height_mm + gap(comp, prev)
        if gap(comp, prev) < 1.5 and (comp.kind == "disc" or together <= 1.3 * median_h):
            return 0, None, None  # two pieces of one structure
        plural, other = ("bodies", "disc") if comp.kind == "body" else ("discs", "body")
        return 2, None, f"two {plural} without a {other} between them above {prev.name}"
    if comp.kind == "body" and comp.height_mm >= FUSED_HEIGHT_RATIO * median_h:
        ratio = comp.height_mm / median_h
        return 3, "fused", f"a body {ratio:.1f} times the median height above {prev.name}: fused"
    return 1, None, None


def _name_up(comps: list[Component], anchor: int, position: int, reasons: list[str]) -> None:
    kinds = {c.kind for c in comps}
    both = kinds == {"body", "disc"}
    median_h = _median_height([c for c in comps[:anchor] if c.kind == "body"])
    prev = comps[anchor]
    for comp in reversed(comps[:anchor]):
        steps, fused, reason = _step_up(prev, comp, both, median_h)
        if reason:
            reasons.append(reason)
        position -= steps
        if position < 0:
            break
        if fused:
            comp.name = f"{CHAIN[position]}-{CHAIN[position + 2]}"
        else:
            comp.name = CHAIN[position]
        prev = comp


def _name_sacrum(sacral: list[Component], median_h: float) -> None:
    """S1, S2, ... down the sacrum; a piece as tall as n bodies spans n segments ("S1-S2")."""
    number = 1
    for comp in sacral:
        spans = max(1, round(comp.height_mm / median_h)) if np.isfinite(median_h) else 1
        last = min(number + spans - 1, SACRAL_SEGMENTS)
        comp.name = f"S{number}" if last <= number else f"S{number}-S{last}"
        number = last + 1


def level_range(name: str) -> list[str]:
    """The body levels a name covers: "L3-L4" -> ["L3", "L4"], "L4" -> ["L4"]."""
    if "-" not in name:
        return [name]
    first, last = name.split("-")
    return BODIES[BODIES.index(first) : BODIES.index(last) + 1]


def _lumbar_count(comps: list[Component]) -> str | None:
    """A reason when the lumbar-looking bodies above the sacrum are clearly not five.

    L5 (on the sacrum) counts; going up from it, bodies of at least ``LUMBAR_LOOKING`` times
    the median mid-sagittal area of L3-L5 are lumbar-looking too. The count is known when a
    body below ``THORACIC_LOOKING`` times that ends the run inside the field of view; a body
    in between, or a body cut by the field of view, leaves it unknown (no reason).
    """
    bodies = [c for c in comps if c.kind == "body" and c.name and not c.name.startswith("S")]
    names = [c.name for c in bodies]
    if any("-" in n for n in names) or "L5" not in names:
        return None  # a fused segment is reported already; without L5 nothing to count
    ref = [c.mid_area_mm2 for c in bodies if c.name in ("L3", "L4", "L5") and not c.cut]
    if not ref:
        return None
    ref_area = float(np.median(ref))
    if ref_area <= 0.0:
        return None  # L3-L5 off the mid-sagittal slice: no area to compare with
    count = 1
    for body in reversed(bodies[: names.index("L5")]):
        share = body.mid_area_mm2 / ref_area
        if body.cut or THORACIC_LOOKING <= share < LUMBAR_LOOKING:
            return None
        if share < THORACIC_LOOKING:
            break
        count += 1
    else:
        return None
    if count == 5:
        return None
    return f"{count} lumbar-looking bodies above the sacrum instead of 5 (transitional vertebra?)"


def name_levels(
    labels_dhw: np.ndarray,
    spacing_dhw: Sequence[float],
    labeled: Sequence[bool] | None = None,
) -> Levels:
    """Names the bodies and discs of a label map, counting up from the lumbosacral junction.

    Args:
      labels_dhw: our labels (0..5) in canonical layout.
      spacing_dhw: voxel size in mm.
      labeled: which of our classes the map labels (default all): a map without discs or
        without bodies is named from the other kind alone.

    Returns:
      The components with their names, ``confidence`` and ``reasons``.
    """
    spacing = tuple(float(s) for s in spacing_dhw)
    maps, comps = components.find(labels_dhw, spacing, labeled)
    mid = geometry.mid_sagittal_slice(labels_dhw, spacing)
    for c in comps:
        c.mid_area_mm2 = float((maps[c.kind][mid] == c.label).sum() * spacing[1] * spacing[2])
    if not comps:
        return Levels(comps, "low", ["no vertebral body or disc found"], maps, spacing, mid)
    kinds = {c.kind for c in comps}
    anchor, position, reasons = _anchor(comps, kinds)
    comps[anchor].name = CHAIN[position]
    # Down through the sacrum (none below a lowest body taken as L5).
    first = anchor + 1 if comps[anchor].kind == "disc" else anchor
    if comps[anchor].kind == "disc" or position == len(CHAIN) - 1:
        above = [c for c in comps[:first] if c.kind == "body"]
        _name_sacrum(comps[first:], _median_height(above))
    _name_up(comps, anchor, position, reasons)
    count = _lumbar_count(comps)
    if count:
        reasons.append(count)
    return Levels(comps, "low" if reasons else "high", reasons, maps, spacing, mid)
