import json

import numpy as np
import pytest

from lumbar_jax import config as config_lib
from lumbar_jax.cli import score
from tests.conftest import tiny_config
from tests.helpers.commands import run_command


@pytest.fixture
def tiny_run(tiny_runs):
    return tiny_runs["fine"]


def test_score_matches_the_runs_own_test_split(tiny_run, phantom_root):
    ev = score.score(tiny_run, phantom_root, split="test")
    summary = ev.dice_summary("network")
    assert len(ev.case_ids) == 1
    saved = json.loads((tiny_run / "test_dice.json").read_text())["mean"]
    for value, name in zip(summary["mean"], saved, strict=True):
        if saved[name] is None:
            assert np.isnan(value)
        else:
            assert value == pytest.approx(saved[name], abs=1e-4)


@pytest.mark.slow
def test_score_command_on_partially_labelled_data(tiny_run, phantom_root):
    result = run_command(
        "score",
        f"--workdir={tiny_run}",
        f"--data={phantom_root}",
        "--label_map=1:1,2:2,3-5:0",  # as if only bodies and discs were labelled
    )
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["cases"] == 8
    means = report["mean_dice"]
    assert means["vertebral_body"] is not None and means["intervertebral_disc"] is not None
    assert means["spinal_canal"] is None and means["cord_cauda_equina"] is None


def test_score_without_checkpoint_is_a_clear_error(tmp_path, phantom_root):
    config_lib.save_config(tiny_config(phantom_root), tmp_path)
    with pytest.raises(ValueError, match="no checkpoint found"):
        score.score(tmp_path, phantom_root)
