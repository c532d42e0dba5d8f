"""``make demo`` end to end at tiny size: both stages, a predicted series, the evaluation."""

import json
import os

import pytest

from tests.helpers.commands import run_command


@pytest.mark.slow
def test_demo_runs_the_whole_cascade(tmp_path):
    env = {**os.environ, "LUMBAR_JAX_CACHE": str(tmp_path / "cache")}
    result = run_command(
        "demo", "--size=tiny", f"--workdir={tmp_path / 'demo'}", timeout=600, env=env
    )
    assert result.returncode == 0, result.stderr[-3000:]
    demo = tmp_path / "demo"
    for stage in ("coarse", "fine"):
        assert (demo / stage / "config.json").is_file()
        assert (demo / stage / "test_dice.json").is_file()
        assert list((demo / stage / "tensorboard").glob("events.out.tfevents.*"))
    [report] = (demo / "predict").glob("*.json")
    summary = json.loads(report.read_text())
    assert (demo / "predict" / summary["outputs"]["labels"]).is_file()
    assert (demo / "predict" / summary["outputs"]["overlay"]).is_file()
    assert (demo / "onnx" / "coarse.onnx").is_file() and (demo / "onnx" / "fine.onnx").is_file()
    assert "label maps agree on" in result.stdout
    evaluation = json.loads((demo / "evaluation" / "evaluation.json").read_text())
    assert evaluation["split"] == "test"
    # The phantom's truth files: level names and measurements scored too.
    assert set(evaluation["levels"]) == {"reference", "coarse", "cascade"}
    assert summary["levels"]["level_confidence"] in ("high", "low")
    assert "Cascade beside the paper" in result.stdout
    assert "Demo finished" in result.stdout
