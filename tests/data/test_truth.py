"""The phantom's truth: what it drew, checked against its drawing's parameters and against
measurements of its rendered label map."""

import json
import math

import numpy as np
import pytest

from lumbar_jax.data import datasets, io
from lumbar_jax.data.phantom import render, truth
from lumbar_jax.data.phantom.spine import wedge
from lumbar_jax.evaluation import levels as level_scores
from lumbar_jax.inference import levels, measure


@pytest.fixture(scope="module")
def case():
    return render.render_case(11, matrix=96)


@pytest.fixture(scope="module")
def case_truth(case):
    return truth.case_truth(case)


def _plain_discs(found):
    """Drawn discs with no pathology that could change their drawn shape."""
    return [
        entry
        for entry in found["levels"]
        if entry["kind"] == "disc"
        and entry["whole_in_view"]
        and not (entry["herniation"] or entry["schmorl_nodes"] or entry["bulge_mm"])
    ]


def test_truth_heights_are_the_drawn_segments(case, case_truth):
    segments = {s.name: s for s in case.phantom.segments}
    discs = _plain_discs(case_truth)
    assert discs
    for entry in discs:
        s = segments[entry["name"]]
        # A disc is 2 x half_height high at its centre, times its wedge factor off it; a
        # lordotic one taller in front.
        middle = sum(entry["span_mm"]) / 2
        want = 2 * s.half_height * wedge(s, middle)
        # The body below, drawn over the disc, meets its centre line at the disc's edge; off
        # the centre its endplate's own tilt moves that meeting point.
        lower = case.phantom.segments[[x.name for x in case.phantom.segments].index(s.name) + 1]
        tilt = abs(middle * math.tan(lower.theta - s.theta))
        assert entry["height_middle_mm"] == pytest.approx(want, abs=0.06 + tilt)
        if -s.theta + 0.1 > 0:
            assert entry["height_anterior_mm"] > entry["height_middle_mm"]
            assert entry["height_middle_mm"] > entry["height_posterior_mm"]
    nodes = {(n.disc, n.side) for n in case.phantom.schmorl_nodes}
    names = [s.name for s in case.phantom.segments]
    for entry in case_truth["levels"]:
        if entry["kind"] != "body" or not entry["whole_in_view"]:
            continue
        i = names.index(entry["name"])
        # A Schmorl node from the disc above (+1) or below (-1) would cut the body's run.
        if {(names[i - 1], 1), (names[(i + 1) % len(names)], -1)} & nodes:
            continue
        assert entry["height_mm"] == pytest.approx(
            2 * segments[entry["name"]].half_height, abs=0.06
        )


def test_truth_foramina_are_the_drawn_ellipses(case, case_truth):
    p = case.phantom
    bodies = {s.name: s for s in p.segments if s.kind == "body"}
    touched = {h.disc for h in p.herniations} | {n for n, b in p.bulge.items() if b}
    plain = [f for f in case_truth["foramina"] if f["level"] not in touched]
    assert {f["side"] for f in plain} == {"right", "left"}
    for f in plain:
        upper = bodies[f["level"].split("/")[0]]
        a, b = upper.half_height * 0.6 + 3.0, 4.8  # the ellipse Phantom._foramina draws
        assert f["area_mm2"] == pytest.approx(math.pi * a * b, rel=0.01)
        assert f["height_mm"] == pytest.approx(2 * a, abs=0.25)
        x = case.slice_x_mm[f["slice"]]
        assert (x < 0) == (f["side"] == "right")  # canonical d runs from right to left


def test_truth_conus_is_where_the_cord_was_drawn_to_end(case, case_truth):
    conus = case_truth["conus"]
    tip_h = case.phantom.conus_y - case.acquisition.pixel / 2
    assert conus["position_hw_mm"][0] == pytest.approx(tip_h, abs=0.01)
    assert conus["level"] in ("T12", "T12/L1", "L1", "L1/L2")
    assert 0.0 <= conus["fraction_of_level"] <= 1.0
    assert case_truth["mid_sagittal_slice"] == int(np.argmin(np.abs(case.slice_x_mm)))
    json.dumps(case_truth)  # JSON-ready as it is


@pytest.mark.parametrize("seed", [5, 23])
def test_reference_label_map_measurements_agree_with_the_truth(seed):
    # A realistic matrix: about 1 mm pixels.
    rendered = render.render_case(seed, matrix=288)
    found = truth.case_truth(rendered)
    score = level_scores.score_labels(
        rendered.label_dhw, rendered.spacing_dhw, found, f"seed{seed}", "reference"
    )
    assert score.wrong == [] and score.named >= 14
    for key in ("disc_height_anterior", "disc_height_middle", "disc_height_posterior"):
        assert len(score.errors[key]) >= 6
        assert np.median(np.abs(score.errors[key])) <= 1.0, key
    assert np.median(np.abs(score.errors["canal_ap_at_disc"])) <= 1.0
    assert np.median(np.abs(score.errors["body_height"])) <= 1.0
    named = levels.name_levels(rendered.label_dhw, rendered.spacing_dhw)
    assert named.by_name("L5/S1") is not None
    assert measure.measure(named, rendered.label_dhw).mid_slice == found["mid_sagittal_slice"]


def test_the_dataset_writes_a_truth_beside_each_label_and_loaders_ignore_it(phantom_root):
    dataset = datasets.load_dataset(phantom_root)
    assert len(dataset.cases) == 8
    for case_id, case in dataset.cases.items():
        assert case.label_path.name == f"{case_id}.nii.gz"
        path = level_scores.truth_file(case)
        assert path == phantom_root / "labelsTr" / f"{case_id}_truth.json"
        found = json.loads(path.read_text())
        assert found["version"] == truth.VERSION
        spacing = io.read_canonical(case.label_path).spacing_dhw
        np.testing.assert_allclose(found["spacing_dhw"], spacing, rtol=1e-4)
    assert sorted(level_scores.load_truths(dataset, "test")) == dataset.splits["test"]
