"""Level names from hand-built label maps whose answer is known, and how sure the naming is."""

import numpy as np
import pytest

from lumbar_jax.data import io
from lumbar_jax.inference import components, levels
from lumbar_jax.labels import BODY, DISC
from tests.helpers import REAL_DATA, spines

NORMAL = [
    "T11", "T11/T12", "T12", "T12/L1", "L1", "L1/L2", "L2", "L2/L3", "L3", "L3/L4",
    "L4", "L4/L5", "L5", "L5/S1", "S1", "S2",
]  # fmt: skip


def _names(named: levels.Levels) -> list[str]:
    return [c.name for c in named.components]


@pytest.mark.parametrize("spacing", [(4.0, 1.0, 1.0), (5.0, 0.6, 1.3)])
@pytest.mark.parametrize("tilt", [0.0, 15.0])
def test_a_normal_spine_is_named_from_the_sacrum_with_high_confidence(spacing, tilt):
    labels = spines.draw(spines.spine(), spacing, tilt_deg=tilt)
    named = levels.name_levels(labels, spacing)
    assert _names(named) == NORMAL
    assert named.confidence == "high" and named.reasons == []
    assert [c.kind for c in named.components] == ["body", "disc"] * 7 + ["body", "body"]
    assert named.summary() == {
        "bodies": [n for n in NORMAL if "/" not in n],
        "discs": [n for n in NORMAL if "/" in n],
        "level_confidence": "high",
        "reasons": [],
    }
    # The axis of each disc: the column's tilt, to within a degree.
    for disc in named.named("disc"):
        assert np.degrees(np.arctan2(disc.axis_hw[1], disc.axis_hw[0])) == pytest.approx(
            tilt, abs=1.0
        )


def test_the_field_of_view_ending_under_l5_s1_names_it_with_low_confidence():
    # The series ends below the L5/S1 disc: no sacrum to confirm it.
    labels = spines.draw(spines.spine(sacrum=False))
    named = levels.name_levels(labels, (4.0, 1.0, 1.0))
    assert _names(named) == NORMAL[:-2]
    assert named.confidence == "low"
    assert any("no vertebral body under the lowest disc" in r for r in named.reasons)


def test_a_missing_s1_is_not_named_silently():
    # Cut through L5: the lowest disc is L4/L5, named L5/S1 by the count, but the body under
    # it (the cut L5) is not the sacrum, and the naming says so.
    labels = spines.draw(spines.spine(sacrum=False)[:-1])
    labels = labels[:, : -(10 + 13)]  # L5's lower half out of the field of view
    named = levels.name_levels(labels, (4.0, 1.0, 1.0))
    # The count is one level off (L4 is called L5) and the naming says it may be.
    assert _names(named)[-3:] == ["L5", "L5/S1", "S1"]
    assert named.confidence == "low"
    assert any("does not look like the sacrum" in r for r in named.reasons)


def test_six_lumbar_looking_bodies_lower_the_confidence():
    labels = spines.draw(spines.spine(thoracic=2, lumbar=6))
    named = levels.name_levels(labels, (4.0, 1.0, 1.0))
    # Counted from the sacrum, the sixth lumbar-looking body is called T12.
    assert _names(named)[:4] == ["T10", "T10/T11", "T11", "T11/T12"]
    assert _names(named)[-4:] == ["L5", "L5/S1", "S1", "S2"]
    assert named.confidence == "low"
    assert any("6 lumbar-looking bodies" in r for r in named.reasons)


def test_four_lumbar_looking_bodies_lower_the_confidence():
    labels = spines.draw(spines.spine(thoracic=3, lumbar=4))
    named = levels.name_levels(labels, (4.0, 1.0, 1.0))
    assert _names(named)[-4:] == ["L5", "L5/S1", "S1", "S2"]
    assert named.confidence == "low"
    assert any("4 lumbar-looking bodies" in r for r in named.reasons)


def test_a_fused_segment_spans_two_levels_and_lowers_the_confidence():
    items = spines.spine()
    # L3, its disc and L4 as one block vertebra.
    l3 = items.index(spines.LUMBAR[0], 4 + 2 * 2)
    items[l3 : l3 + 3] = [("body", 26.0 + 9.0 + 26.0, 34.0)]
    named = levels.name_levels(spines.draw(items), (4.0, 1.0, 1.0))
    want = [n for n in NORMAL if n not in ("L3", "L3/L4", "L4")]
    want.insert(want.index("L4/L5"), "L3-L4")
    assert _names(named) == want
    assert named.confidence == "low"
    assert any("fused" in r for r in named.reasons)


def test_bodies_joined_around_a_disc_are_cut_along_it():
    # Body predicted over the back 5 mm of L2/L3 joins L2 and L3 around the disc: a bridge
    # too wide for the erosion to take apart. The disc still crosses the piece, so it is cut
    # along the disc's plane, and nothing is taken for a fused segment.
    spacing = (4.0, 1.0, 1.0)
    labels = spines.draw(spines.spine(), spacing)
    disc = next(c for c in levels.name_levels(labels, spacing).components if c.name == "L2/L3")
    voxels = np.round(disc.points_mm / spacing).astype(int)
    labels[tuple(voxels[voxels[:, 2] >= voxels[:, 2].max() - 4].T)] = BODY
    named = levels.name_levels(labels, spacing)
    assert _names(named) == NORMAL
    assert named.confidence == "high", named.reasons
    # Disc material inside one body (a Schmorl node) is too narrow to cut it.
    body = next(c for c in named.components if c.name == "L3")
    blob = body.centroid_mm + np.array([[0.0, dh, dw] for dh in (-1, 0, 1) for dw in (-3, 0, 3)])
    node = components.Component("disc", 99, 100.0, blob.mean(axis=0), blob)
    assert components._cut_by_disc(body, node, np.array([1.0, 0.0])) is None


def test_a_disc_not_found_skips_its_level():
    items = spines.spine()
    i = items.index(("disc", 9.0, 33.0), 6)  # L2/L3
    items[i] = ("gap", 9.0, 0.0)
    named = levels.name_levels(spines.draw(items), (4.0, 1.0, 1.0))
    assert _names(named) == [n for n in NORMAL if n != "L2/L3"]
    assert named.confidence == "low"
    assert any("two bodies without a disc" in r for r in named.reasons)


def test_bodies_alone_and_discs_alone_are_named_from_their_own_kind():
    labels = spines.draw(spines.spine(sacrum=False))
    bodies = np.where(labels == BODY, BODY, 0).astype(np.uint8)
    only_bodies = (True, True, False, False, False, False)
    named = levels.name_levels(bodies, (4.0, 1.0, 1.0), labeled=only_bodies)
    # No sacrum in the map: the lowest body is taken as L5, and the naming says why.
    assert _names(named) == ["T11", "T12", "L1", "L2", "L3", "L4", "L5"]
    assert named.confidence == "low"
    assert any("taken as L5" in r for r in named.reasons)
    discs = np.where(spines.draw(spines.spine(), tilt_deg=10.0) == DISC, DISC, 0)
    only_discs = (True, False, True, False, False, False)
    named = levels.name_levels(discs.astype(np.uint8), (4.0, 1.0, 1.0), labeled=only_discs)
    assert _names(named) == [n for n in NORMAL if "/" in n]
    assert named.confidence == "low"


def test_crumbs_get_no_name_and_an_empty_map_is_low_confidence():
    labels = spines.draw(spines.spine())
    labels[3, 2, 2] = BODY  # one stray voxel far above the spine
    named = levels.name_levels(labels, (4.0, 1.0, 1.0))
    assert _names(named) == NORMAL
    empty = levels.name_levels(np.zeros((5, 20, 20), np.uint8), (4.0, 1.0, 1.0))
    assert empty.components == [] and empty.confidence == "low"


def test_a_blob_beside_a_body_at_its_height_is_not_a_level():
    # Tissue ahead of L4 taken for bone: a piece of a sixth of L4's size, 3 mm in front of it.
    spacing = (4.0, 1.0, 1.0)
    labels = np.pad(spines.draw(spines.spine(), spacing), ((0, 0), (0, 0), (15, 0)))
    l4 = next(c for c in levels.name_levels(labels, spacing).components if c.name == "L4")
    voxels = np.round(l4.points_mm / spacing).astype(int)
    (d_lo, h_lo, w_lo), (d_hi, h_hi, _) = voxels.min(0), voxels.max(0)
    assert w_lo >= 11
    h_mid = (h_lo + h_hi) // 2
    labels[d_lo : d_hi + 1, h_mid - 8 : h_mid + 8, w_lo - 11 : w_lo - 3] = BODY
    pieces = components.find(labels, spacing)[1]
    assert len([c for c in pieces if c.kind == "body"]) == 9  # the blob is no piece
    named = levels.name_levels(labels, spacing)
    assert _names(named) == NORMAL
    assert named.confidence == "high", named.reasons


# The real series' own level labels (../shared/data/real/README.md): discs 1 = L5/S1 ..
# 5 = L1/L2; bodies T11..L5 by instance ids listed superior to inferior per case.
REAL_DISCS = {1: "L5/S1", 2: "L4/L5", 3: "L3/L4", 4: "L2/L3", 5: "L1/L2"}
REAL_BODY_ORDER = {
    "case02": [7, 6, 5, 4, 3, 1, 2],
    "case04": [7, 3, 1, 2, 4, 5, 6],
    "case06": [7, 6, 5, 4, 3, 2, 1],
    "case08": [6, 7, 5, 4, 3, 2, 1],
    "case10": [7, 6, 5, 4, 2, 3, 1],
    "case12": [7, 5, 6, 4, 2, 3, 1],
}


def _real_names(folder: str, case: str, value_to_ours: int, labeled):
    raw = io.read_canonical(REAL_DATA / folder / f"{case}_labels.nii.gz")
    ours = np.where(raw.array_dhw > 0, value_to_ours, 0).astype(np.uint8)
    named = levels.name_levels(ours, raw.spacing_dhw, labeled)
    given = {}
    for comp in named.components:
        values = raw.array_dhw[named.mask(comp)]
        given[int(np.bincount(values).argmax())] = comp.name
    return named, given


@pytest.mark.skipif(not REAL_DATA.is_dir(), reason="../shared/data/real is not here")
@pytest.mark.parametrize("case", ["case11", "case20"])
def test_real_discs_get_their_labelled_levels(case):
    named, given = _real_names("lumbar_discs_t2", case, DISC, (True, False, True) + (False,) * 3)
    assert given == REAL_DISCS
    # Only discs are labelled: the lumbosacral disc is found by its angle, but bodies and
    # discs cannot be checked to alternate.
    assert named.confidence == "low"
    assert named.reasons == ["no vertebral bodies: bodies and discs cannot be checked to alternate"]


@pytest.mark.skipif(not REAL_DATA.is_dir(), reason="../shared/data/real is not here")
@pytest.mark.parametrize("case", sorted(REAL_BODY_ORDER))
def test_real_bodies_get_their_labelled_levels(case):
    folder = "lumbar_vertebral_bodies_t2"
    named, given = _real_names(folder, case, BODY, (True, True) + (False,) * 4)
    names = ["T11", "T12", "L1", "L2", "L3", "L4", "L5"]
    assert given == dict(zip(REAL_BODY_ORDER[case], names, strict=True))
    # The sacrum is in view but not labelled: nothing in the map says the lowest body is L5.
    assert named.confidence == "low"
    assert any("taken as L5" in r for r in named.reasons)


def test_sacral_segments_that_touch_are_one_piece_named_for_the_segments_it_spans():
    # S1 and S2 drawn without a gap (as at 1.5 mm pixels), then S3 apart.
    sacrum = [("body", 26.0, 34.0), ("body", 22.0, 30.0), ("gap", 2.0, 0.0), ("body", 18, 26)]
    labels = spines.draw(spines.spine(sacrum=False) + sacrum)
    named = levels.name_levels(labels, (4.0, 1.0, 1.0))
    assert _names(named) == [*NORMAL[:-2], "S1-S2", "S3"]
    assert named.confidence == "high"
    assert levels.level_range("S1-S2") == ["S1", "S2"]
    assert levels.level_range("T12-L2") == ["T12", "L1", "L2"]
    assert levels.level_range("L4/L5") == ["L4/L5"]


def test_lumbar_bodies_off_the_mid_sagittal_slice_leave_the_count_unknown():
    def body(name, area):
        point = np.zeros((1, 3))
        return components.Component("body", 1, 100.0, point[0], point, mid_area_mm2=area, name=name)

    # A prediction whose L3-L5 pieces miss the mid-sagittal slice (an untrained network).
    bodies = [body(n, 0.0) for n in ("L1", "L2", "L3", "L4", "L5")] + [body("S1", 900.0)]
    assert levels._lumbar_count(bodies) is None
    bodies = [body("T12", 300.0)] + [body(n, 900.0) for n in ("L2", "L3", "L4", "L5")]
    assert "4 lumbar-looking bodies" in levels._lumbar_count(bodies)
