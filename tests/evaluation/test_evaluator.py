"""The evaluator: per-case scores per stage, the reports, and agreement with ``predict``."""

import csv
import json

import numpy as np
import pytest
import SimpleITK as sitk

from lumbar_jax.data import datasets, io, prepared
from lumbar_jax.evaluation import cases, metrics, predictors, reports
from lumbar_jax.evaluation.evaluator import EvalCase, Evaluator
from lumbar_jax.inference import jax_stage, writer
from lumbar_jax.labels import STRUCTURES


@pytest.fixture(scope="module")
def stages(tiny_runs):
    coarse, fine = jax_stage.load_stages(tiny_runs["coarse"], tiny_runs["fine"])
    return coarse.cascade_model(), fine.cascade_model()


def test_evaluation_scores_what_predict_writes(stages, phantom_root, tmp_path):
    dataset = datasets.load_dataset(phantom_root)
    evaluator = Evaluator(
        lambda: cases.series_cases(dataset, "validation"), surface=True, instances=True
    )
    ev = evaluator(predictors.cascade_predictor(*stages))
    [case] = dataset.split("validation")
    assert ev.case_ids == [case.case_id]
    assert ev.stages == ("coarse", "cascade")
    for stage_name in ev.stages:
        assert ev.dice[stage_name].shape == (1, len(STRUCTURES))
        assert ev.hd95[stage_name].shape == ev.assd[stage_name].shape == (1, len(STRUCTURES))

    # The same case through predict, read back from disk, scored independently.
    writer.predict_series(*stages, case.image_path, tmp_path, "case")
    predicted, _ = io.to_canonical(sitk.ReadImage(str(tmp_path / "case_labels.nii.gz")))
    reference = prepared.prepare_case(case, dataset).label_dhw
    dice = metrics.dice_per_class(predicted, reference, len(STRUCTURES) + 1)
    np.testing.assert_allclose(ev.dice["cascade"][0], dice, equal_nan=True)

    reports.write_reports(ev, tmp_path, "title", {"data": "x"})
    document = json.loads((tmp_path / "evaluation.json").read_text())
    assert set(document["summary"]) == {"coarse", "cascade"}
    assert document["summary"]["cascade"]["vertebral_body"]["instances"] == sum(
        1 for _, i in ev.instances["cascade"] if i.structure == "vertebral_body"
    )
    rows = list(csv.DictReader((tmp_path / "per_case.csv").open()))
    assert len(rows) == 2 * len(STRUCTURES)
    markdown = (tmp_path / "evaluation.md").read_text()
    assert "paper satisfactory" in markdown and "97.5 %" in markdown


def _case(reference: np.ndarray, labeled=(True,) * 6) -> EvalCase:
    return EvalCase("c", reference, reference, (1.0, 1.0, 1.0), np.array(labeled))


def test_evaluator_scores_every_stage_with_known_answers():
    ref = np.zeros((4, 8, 8), np.uint8)
    ref[1:3, 2:6, 2:6] = 1  # 32 body voxels
    half = ref.copy()
    half[1] = 0  # 16 of them predicted
    evaluator = Evaluator([_case(ref)], surface=True, instances=True)
    ev = evaluator(lambda case: {"exact": case.reference_dhw, "half": half})
    assert ev.stages == ("exact", "half")
    assert ev.dice["exact"][0, 0] == 1.0
    assert ev.dice["half"][0, 0] == pytest.approx(2 * 16 / (16 + 32))
    assert np.isnan(ev.dice["exact"][0, 1:]).all()  # absent from both: undefined
    assert ev.hd95["exact"][0, 0] == 0.0
    summary = ev.summary()
    assert summary["exact"]["vertebral_body"]["satisfactory"] == 1
    assert summary["half"]["vertebral_body"]["satisfactory"] == 0  # recall 0.5 < 0.9
    assert ev.mean_dice("exact") == 1.0


def test_evaluator_without_cases_scores_nothing():
    ev = Evaluator([])(lambda case: {"network": case.reference_dhw})
    assert ev.case_ids == [] and np.isnan(ev.mean_dice("network"))
    assert ev.dice_summary("network")["count"].tolist() == [0] * len(STRUCTURES)


def test_unlabelled_classes_are_left_out():
    ref = np.zeros((2, 4, 4), np.uint8)
    ref[0, :2, :2] = 2
    pred = ref.copy()
    pred[1, :2, :2] = 1  # predicted body where the reference does not label bodies
    labeled = (True, False, True, False, False, False)
    ev = Evaluator([_case(ref, labeled)])(lambda case: {"network": pred})
    assert np.isnan(ev.dice["network"][0, 0]) and ev.dice["network"][0, 1] == 1.0
