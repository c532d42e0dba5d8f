"""Measurements on synthetic shapes whose answer is known: boxes, tilted and wedge-shaped discs,
anisotropic voxels, a narrowed canal, a foramen, the cord's end."""

import math

import numpy as np
import pytest

from lumbar_jax.inference import canal, levels, measure
from lumbar_jax.labels import BODY, CANAL, CORD, DISC, FORAMEN
from tests.helpers import spines


def _measure(labels, spacing):
    named = levels.name_levels(labels, spacing)
    return named, measure.measure(named, labels)


def _by_name(entries):
    return {m.component.name: m for m in entries}


@pytest.mark.parametrize("spacing", [(4.0, 1.0, 1.0), (4.4, 0.5, 1.25)])
def test_box_discs_and_bodies_have_their_drawn_heights(spacing):
    labels = spines.draw(spines.spine(), spacing)
    _, found = _measure(labels, spacing)
    discs = _by_name(found.discs)
    assert set(discs) == {"T11/T12", "T12/L1", "L1/L2", "L2/L3", "L3/L4", "L4/L5", "L5/S1"}
    # The canal is 12 mm from front to back, as many whole voxels as fit.
    canal_ap = (labels[3] == CANAL).sum(axis=1).max() * spacing[2]
    assert canal_ap == pytest.approx(12.0, abs=spacing[2])
    for name, m in discs.items():
        want = 6.0 if name.startswith("T") else 9.0
        for got in (m.anterior_mm, m.middle_mm, m.posterior_mm):
            assert got == pytest.approx(want, abs=0.05)
        assert m.canal_ap_mm == pytest.approx(canal_ap, abs=0.05)
    bodies = _by_name(found.bodies)
    assert list(bodies) == ["T11", "T12", "L1", "L2", "L3", "L4", "L5"]  # not the sacrum
    for name, m in bodies.items():
        assert m.height_mm == pytest.approx(22.0 if name.startswith("T") else 26.0, abs=0.05)
    assert found.narrowest.ap_mm == pytest.approx(canal_ap, abs=0.05)


def _wedge_labels(front, back, depth, tilt_deg, spacing):
    """Body, wedge-shaped disc (``front`` mm high anteriorly, ``back`` posteriorly), body,
    the column tilted by ``tilt_deg``; then a sacrum-like pair of bodies to anchor names."""
    _sd, sh, sw = spacing
    shape = (5, int(160 / sh), int(120 / sw))
    hh, ww = np.meshgrid(
        (np.arange(shape[1]) + 0.5) * sh, (np.arange(shape[2]) + 0.5) * sw, indexing="ij"
    )
    a = math.radians(tilt_deg)
    u = (hh - 50.0) * math.cos(a) + (ww - 40.0) * math.sin(a)
    v = -(hh - 50.0) * math.sin(a) + (ww - 40.0) * math.cos(a)
    height = front + (back - front) * v / depth
    inside = (v >= 0) & (v < depth)
    plane = np.zeros(shape[1:], np.uint8)
    plane[inside & (u >= -26) & (u < 0)] = BODY
    plane[inside & (u >= 0) & (u < height)] = DISC
    plane[inside & (u >= height) & (u < height + 26)] = BODY
    # The sacrum under it: two bodies without a disc between them.
    plane[inside & (u >= height + 35) & (u < height + 55)] = BODY
    plane[inside & (u >= height + 57) & (u < height + 70)] = BODY
    plane[inside & (u >= height + 26) & (u < height + 35)] = DISC
    labels = np.zeros(shape, np.uint8)
    labels[1:4] = plane
    return labels


@pytest.mark.parametrize("tilt", [0.0, 20.0, -12.0])
@pytest.mark.parametrize("spacing", [(4.0, 0.25, 0.25), (4.0, 0.3, 0.45)])
def test_a_wedge_shaped_tilted_disc_has_its_heights_at_a_tenth_inside_its_ends(tilt, spacing):
    labels = _wedge_labels(12.0, 6.0, 34.0, tilt, spacing)
    _, found = _measure(labels, spacing)
    disc = found.discs[0]
    assert disc.component.name == "L4/L5"  # the disc above the sacrum's disc
    # Heights fall linearly from 12 mm (front) to 6 mm (back): at 10 %, 50 % and 90 %.
    tolerance = 0.35 + max(spacing[1:]) / 2
    assert disc.anterior_mm == pytest.approx(12.0 - 0.1 * 6.0, abs=tolerance)
    assert disc.middle_mm == pytest.approx(9.0, abs=tolerance)
    assert disc.posterior_mm == pytest.approx(6.0 + 0.1 * 6.0, abs=tolerance)


def test_a_bulge_behind_the_posterior_wall_does_not_move_the_posterior_height():
    spacing = (4.0, 0.25, 0.25)
    labels = _wedge_labels(12.0, 6.0, 34.0, 0.0, spacing)
    # Disc material 5 mm behind the bodies' posterior wall, 3 mm high, at the disc's middle.
    rows = (np.arange(labels.shape[1]) + 0.5) * 0.25 - 50.0
    cols = (np.arange(labels.shape[2]) + 0.5) * 0.25 - 40.0
    bulge = (rows[:, None] >= 3.0) & (rows[:, None] < 6.0) & (cols >= 34) & (cols < 39)
    labels[1:4][:, bulge] = DISC
    _, found = _measure(labels, spacing)
    assert found.discs[0].posterior_mm == pytest.approx(6.6, abs=0.5)


def test_a_narrowed_canal_is_found_at_its_level():
    spacing = (4.0, 0.5, 0.5)
    labels = spines.draw(spines.spine(), spacing)
    named = levels.name_levels(labels, spacing)
    l4_l5 = named.by_name("L4/L5")
    centre_row = round(l4_l5.centroid_mm[1] / spacing[1])
    canal_cols = np.flatnonzero((labels[3] == CANAL).any(axis=0))
    # 20 mm of canal length narrowed from 12 to 7 mm AP, from the front (as a herniation).
    rows = slice(centre_row - 20, centre_row + 20)
    labels[2:5, rows, canal_cols[0] : canal_cols[0] + 10] = 0
    _, found = _measure(labels, spacing)
    assert found.narrowest.ap_mm == pytest.approx(7.0, abs=0.05)
    assert found.narrowest.level == "L4/L5"
    assert _by_name(found.discs)["L4/L5"].canal_ap_mm == pytest.approx(7.0, abs=0.05)
    assert _by_name(found.discs)["L3/L4"].canal_ap_mm == pytest.approx(12.0, abs=0.05)


def test_a_foramen_has_its_drawn_height_area_side_and_level():
    spacing = (4.0, 0.5, 0.5)
    labels = spines.draw(spines.spine(), spacing, slices=9)
    named = levels.name_levels(labels, spacing)
    disc = named.by_name("L3/L4")
    top_row = round((disc.centroid_mm[1] - 14.0) / spacing[1])
    back = int(np.flatnonzero((labels[4] == BODY).any(axis=0)).max()) + 1
    # 20 mm high, 8 mm deep, behind the column on the right (slice 1) and left (slice 7).
    for d in (1, 7):
        labels[d, top_row : top_row + 40, back + 2 : back + 18] = FORAMEN
    _, found = _measure(labels, spacing)
    assert [(f.side, f.slice, f.level) for f in found.foramina] == [
        ("left", 7, "L3/L4"),
        ("right", 1, "L3/L4"),
    ]
    for f in found.foramina:
        assert f.height_mm == pytest.approx(20.0, abs=0.05)
        assert f.area_mm2 == pytest.approx(160.0, abs=1e-6)
    assert found.para_slices == (1, 7)


def test_the_cord_ends_where_its_anterior_part_ends_not_at_the_roots():
    spacing = (4.0, 0.5, 0.5)
    labels = spines.draw(spines.spine(), spacing)
    named = levels.name_levels(labels, spacing)
    l1 = named.by_name("L1")
    end_row = round(l1.centroid_mm[1] / spacing[1])  # the cord ends mid-L1
    cols = np.flatnonzero((labels[3] == CANAL).any(axis=0))  # 12 mm of canal
    labels[2:5, :end_row, cols[2] : cols[10]] = CORD  # 4 mm thick, in the front half
    labels[2:5, end_row - 8 : end_row + 120, cols[14] : cols[18]] = CORD  # roots behind
    _, found = _measure(labels, spacing)
    assert found.conus.position_hw[0] == pytest.approx((end_row - 0.5) * spacing[1], abs=1e-6)
    assert found.conus.level == "L1"
    assert found.conus.fraction == pytest.approx(0.5, abs=0.05)
    # No cord at all, or one that does not end in view: no conus.
    assert canal.cord_tip(np.zeros((40, 40), np.uint8), (1.0, 1.0)) is None


def test_measurements_as_json():
    labels = spines.draw(spines.spine())
    _, found = _measure(labels, (4.0, 1.0, 1.0))
    document = found.to_json()
    assert document["mid_sagittal_slice"] == 3
    assert [d["level"] for d in document["discs"]][-1] == "L5/S1"
    assert document["discs"][-1]["height_middle_mm"] == 9.0
    assert document["bodies"][0] == {"level": "T11", "height_mm": 22.0}
    assert document["conus"] is None and document["foramina"] == []
