"""``python -m lumbar_jax evaluate``: the reports, clear errors, both backends."""

import json

import pytest

from tests.helpers.commands import run_command


def _evaluate(tiny_runs, phantom_root, split, output, *extra):
    return run_command(
        "evaluate",
        f"--coarse={tiny_runs['coarse']}",
        f"--fine={tiny_runs['fine']}",
        f"--data={phantom_root}",
        f"--split={split}",
        f"--output={output}",
        *extra,
    )


@pytest.mark.slow
def test_evaluate_command_writes_the_reports(tiny_runs, phantom_root, tmp_path):
    result = _evaluate(
        tiny_runs,
        phantom_root,
        "test",
        tmp_path,
        "--box_scales=1,1.2",
        "--background_scale=0.5,0.6,0.7,0.8,0.9",
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Coarse stage alone versus the cascade" in result.stdout
    document = json.loads((tmp_path / "evaluation.json").read_text())
    assert document["split"] == "test" and len(document["cases"]) == 1
    assert document["backend"] == "jax" and document["box_scales"] == [1.0, 1.2]
    assert document["background_scale"] == [0.5, 0.6, 0.7, 0.8, 0.9]
    # The phantom's truth files are there: names and measurements against them.
    assert document["levels"]["reference"]["naming_accuracy"] is not None
    assert "| level naming accuracy |" in (tmp_path / "evaluation.md").read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "evaluation.json",
        "evaluation.md",
        "per_case.csv",
    ]


@pytest.mark.slow
def test_evaluate_command_on_an_unknown_split_is_a_clear_error(tiny_runs, phantom_root, tmp_path):
    result = _evaluate(tiny_runs, phantom_root, "nope", tmp_path / "out")
    assert result.returncode == 1
    assert "error:" in result.stderr and "no split 'nope'" in result.stderr
    assert not (tmp_path / "out").exists()
    result = _evaluate(tiny_runs, phantom_root, "test", tmp_path / "out", "--box_scales=1,big")
    assert result.returncode == 1 and "--box_scales=1,big: could not convert" in result.stderr
    assert not (tmp_path / "out").exists()
    result = _evaluate(tiny_runs, phantom_root, "test", tmp_path / "out", "--background_scale=1,1")
    assert result.returncode == 1 and "--background_scale: 2 background scales" in result.stderr
    assert not (tmp_path / "out").exists()
