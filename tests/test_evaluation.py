"""Evaluation of a cascade: per-case scores, reports, and agreement with ``predict``."""

import csv
import json
import subprocess
import sys

import numpy as np
import pytest
import SimpleITK as sitk

from lumbar_jax import STRUCTURES, evaluation, inference, metrics, stage
from lumbar_jax.data import datasets, io, prepared


@pytest.fixture(scope="module")
def stages(tiny_runs):
    coarse, fine = stage.load_cascade(tiny_runs["coarse"], tiny_runs["fine"])
    return coarse.cascade_model(), fine.cascade_model()


def test_evaluation_scores_what_predict_writes(stages, phantom_root, tmp_path):
    dataset = datasets.load_dataset(phantom_root)
    ev = evaluation.evaluate(*stages, dataset, "validation")
    [case] = dataset.split("validation")
    assert ev.case_ids == [case.case_id]
    for stage_name in evaluation.STAGES:
        assert ev.dice[stage_name].shape == (1, len(STRUCTURES))
        assert ev.hd95[stage_name].shape == ev.assd[stage_name].shape == (1, len(STRUCTURES))

    # The same case through predict, read back from disk, scored independently.
    inference.predict_series(*stages, case.image_path, tmp_path, "case")
    predicted, _ = io.to_canonical(sitk.ReadImage(str(tmp_path / "case_labels.nii.gz")))
    reference = prepared.prepare_case(case, dataset).label_dhw
    dice = metrics.dice_per_class(predicted, reference, len(STRUCTURES) + 1)
    np.testing.assert_allclose(ev.dice["cascade"][0], dice, equal_nan=True)

    evaluation.write_reports(ev, tmp_path, "title", {"data": "x"})
    document = json.loads((tmp_path / "evaluation.json").read_text())
    assert set(document["summary"]) == {"coarse", "cascade"}
    assert document["summary"]["cascade"]["vertebral_body"]["instances"] == sum(
        1 for _, i in ev.instances["cascade"] if i.structure == "vertebral_body"
    )
    rows = list(csv.DictReader((tmp_path / "per_case.csv").open()))
    assert len(rows) == 2 * len(STRUCTURES)
    markdown = (tmp_path / "evaluation.md").read_text()
    assert "paper satisfactory" in markdown and "97.5 %" in markdown


def _evaluate_command(tiny_runs, phantom_root, split, output):
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "lumbar_jax.evaluate",
            f"--coarse={tiny_runs['coarse']}",
            f"--fine={tiny_runs['fine']}",
            f"--data={phantom_root}",
            f"--split={split}",
            f"--output={output}",
        ],
        capture_output=True,
        encoding="utf-8",
        errors="replace",
        timeout=300,
    )


def test_evaluate_command_writes_the_reports(tiny_runs, phantom_root, tmp_path):
    result = _evaluate_command(tiny_runs, phantom_root, "test", tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Coarse stage alone versus the cascade" in result.stdout
    document = json.loads((tmp_path / "evaluation.json").read_text())
    assert document["split"] == "test" and len(document["cases"]) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "evaluation.json",
        "evaluation.md",
        "per_case.csv",
    ]


def test_evaluate_command_on_an_unknown_split_is_a_clear_error(tiny_runs, phantom_root, tmp_path):
    result = _evaluate_command(tiny_runs, phantom_root, "nope", tmp_path / "out")
    assert result.returncode != 0
    assert "no split 'nope'" in result.stderr
    assert not (tmp_path / "out").exists()
