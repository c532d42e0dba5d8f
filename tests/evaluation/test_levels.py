"""Level naming accuracy and measurement errors against the phantom's truth."""

import json

import numpy as np
import pytest

from lumbar_jax.data import datasets
from lumbar_jax.data.phantom import render, truth
from lumbar_jax.evaluation import cases, levels, reports
from lumbar_jax.evaluation.evaluator import Evaluator
from lumbar_jax.inference.components import Component
from lumbar_jax.labels import BODY, DISC
from tests.helpers.commands import run_command


@pytest.fixture(scope="module")
def rendered():
    case = render.render_case(7, matrix=192)
    return case, truth.case_truth(case)


def test_the_reference_is_named_right_and_a_map_without_sacrum_is_named_one_level_off(
    rendered,
):
    case, found = rendered
    score = levels.score_labels(case.label_dhw, case.spacing_dhw, found, "c", "reference")
    assert score.named >= 14 and score.wrong == []
    assert score.confidence == "high"
    # Everything below L5 taken out of the map (an S1 the network missed, a field of view
    # ending at L5): the lowest disc L4/L5 is counted as L5/S1, every name is one level off,
    # and the naming says it is unsure.
    l5 = next(e for e in found["levels"] if e["name"] == "L5")
    _, sh, sw = case.spacing_dhw
    h, w = np.meshgrid(
        np.arange(case.label_dhw.shape[1]) * sh,
        np.arange(case.label_dhw.shape[2]) * sw,
        indexing="ij",
    )
    # Below L5's lower endplate, in its own frame.
    u = (h - l5["centre_hw_mm"][0]) * l5["axis_hw"][0] + (w - l5["centre_hw_mm"][1]) * l5[
        "axis_hw"
    ][1]
    labels = case.label_dhw.copy()
    labels[(labels == BODY) & (u > l5["half_height_mm"] + 0.5)[None]] = 0
    # L5/S1 is steeper than L5: its back rises above L5's lower endplate.
    labels[(labels == DISC) & (u > l5["half_height_mm"] - 5.0)[None]] = 0
    shifted = levels.score_labels(labels, case.spacing_dhw, found, "c", "cascade")
    assert shifted.named >= 12 and len(shifted.wrong) == shifted.named
    assert ("L5/S1", "L4/L5") in shifted.wrong and ("L5", "L4") in shifted.wrong
    assert shifted.confidence == "low"
    # Measurements are matched by position, not by name: still right.
    assert np.median(np.abs(shifted.errors["disc_height_middle"])) < 1.0


def test_a_match_needs_overlap():
    entry = {
        "kind": "disc",
        "name": "L4/L5",
        "centre_hw_mm": [50.0, 50.0],
        "axis_hw": [1.0, 0.0],
        "half_extent_mm": 5.0,
        "half_depth_mm": 17.0,
    }
    inside = np.array([[0.0, 50.0, w] for w in range(40, 60)])
    comp = Component("disc", 1, 20.0, inside.mean(0), inside)
    assert levels.match_level(comp, [entry]) is entry
    near = inside + np.array([0.0, 15.0, 0.0])  # off the box, 15 mm from its centre
    assert levels.match_level(Component("disc", 1, 20.0, near.mean(0), near), [entry]) is entry
    outside = inside + np.array([0.0, 30.0, 0.0])
    assert levels.match_level(Component("disc", 1, 20.0, outside.mean(0), outside), [entry]) is None
    assert levels.match_level(Component("body", 1, 20.0, inside.mean(0), inside), [entry]) is None


def test_scorer_as_an_evaluator_hook_and_in_the_reports(phantom_root, tmp_path):
    dataset = datasets.load_dataset(phantom_root)
    truths = levels.load_truths(dataset, dataset.with_all_split("all"))
    assert len(truths) == 8
    scorer = levels.LevelScorer(truths, dataset.labeled_classes)
    evaluator = Evaluator(lambda: cases.series_cases(dataset, "test"), on_case=scorer)
    # A perfect predictor: the reference itself.
    ev = evaluator(lambda case: {"coarse": case.reference_dhw, "cascade": case.reference_dhw})
    summary = scorer.summary()
    assert list(summary) == ["reference", "coarse", "cascade"]
    assert summary["reference"] == summary["cascade"] == summary["coarse"]
    entry = summary["cascade"]
    assert entry["cases"] == 1 and entry["named"] > 0
    assert entry["naming_accuracy"] == round(entry["named_right"] / entry["named"], 4)
    assert set(entry["errors"]) == set(levels.MEASURES)
    text = scorer.markdown()
    assert "| level naming accuracy |" in text and "disc height, middle" in text
    reports.write_reports(ev, tmp_path, "t", {}, {"levels": (text, summary)})
    assert text in (tmp_path / "evaluation.md").read_text()
    assert json.loads((tmp_path / "evaluation.json").read_text())["levels"] == summary


def test_no_truth_files_no_scores(tmp_path):
    scorer = levels.LevelScorer({})
    assert scorer.summary() == {} and scorer.markdown() == ""


@pytest.mark.slow
def test_levels_command_names_and_scores_reference_maps(phantom_root, tmp_path):
    result = run_command(
        "levels", f"--data={phantom_root}", "--split=all", f"--output={tmp_path}", timeout=600
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "phantom_000: " in result.stdout and "level_confidence" in result.stdout
    document = json.loads((tmp_path / "levels.json").read_text())
    assert sorted(document["cases"]) == [f"phantom_{i:03d}" for i in range(8)]
    assert document["scores"]["reference"]["cases"] == 8
    assert "| level naming accuracy |" in (tmp_path / "levels.md").read_text()
