"""``python -m lumbar_jax tune_decision``: the sweep's reports and clear errors."""

import json

import pytest

from tests.helpers.commands import run_command


def _tune(tiny_runs, phantom_root, output, *extra):
    return run_command(
        "tune_decision",
        f"--coarse={tiny_runs['coarse']},{tiny_runs['coarse']}",
        f"--fine={tiny_runs['fine']},{tiny_runs['fine']}",
        f"--data={phantom_root}",
        "--split=test",
        f"--output={output}",
        *extra,
    )


@pytest.mark.slow
def test_tune_decision_writes_every_trial_and_the_choice(tiny_runs, phantom_root, tmp_path):
    result = _tune(
        tiny_runs, phantom_root, tmp_path, "--grid=1,0.5", "--rounds=1", "--fixed=spinal_canal=0.7"
    )
    assert result.returncode == 0, result.stderr[-2000:]
    document = json.loads((tmp_path / "decision_sweep.json").read_text())
    # Two runs, four swept structures (the canal held), two scales each.
    assert len(document["trials"]) == 8
    assert all(len(t["dice_per_run"]) == 2 for t in document["trials"])
    assert document["chosen"][3] == 0.7 and set(document["chosen"]) <= {1.0, 0.5, 0.7, 0.8}
    chosen = ",".join(f"{s:g}" for s in document["chosen"])
    assert result.stdout.strip().endswith(f'--config.inference.background_scale="({chosen})"')
    assert "| structure | mean Dice, start |" in (tmp_path / "decision_sweep.md").read_text()


@pytest.mark.slow
def test_tune_decision_refuses_unpaired_runs_and_unknown_structures(
    tiny_runs, phantom_root, tmp_path
):
    result = run_command(
        "tune_decision",
        f"--coarse={tiny_runs['coarse']}",
        f"--fine={tiny_runs['fine']},{tiny_runs['fine']}",
        f"--data={phantom_root}",
        f"--output={tmp_path / 'out'}",
    )
    assert result.returncode == 1 and "--coarse has 1 runs and --fine 2" in result.stderr
    result = _tune(tiny_runs, phantom_root, tmp_path / "out", "--fixed=bone=0.5")
    assert result.returncode == 1 and "'bone' is not one of vertebral_body" in result.stderr
    assert not (tmp_path / "out").exists()
