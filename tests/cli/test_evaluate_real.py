"""``python -m lumbar_jax evaluate_real``: both real sets scored in one line, with overlays."""

import pytest

from tests.helpers import REAL_DATA
from tests.helpers.commands import run_command


@pytest.mark.slow
def test_evaluate_real_scores_each_set_with_its_label_map(tiny_runs, tmp_path):
    # One series of each set, linked (the real data stays where it is).
    root = tmp_path / "real"
    for name, case in (("lumbar_discs_t2", "case11"), ("lumbar_vertebral_bodies_t2", "case02")):
        (root / name).mkdir(parents=True)
        for kind in ("image", "labels"):
            source = REAL_DATA / name / f"{case}_{kind}.nii.gz"
            (root / name / source.name).symlink_to(source)
    out = tmp_path / "out"
    result = run_command(
        "evaluate_real",
        f"--coarse={tiny_runs['coarse']}",
        f"--fine={tiny_runs['fine']}",
        f"--root={root}",
        f"--output={out}",
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    table = (out / "real_scans.md").read_text()
    # Each set is scored on the structure it labels, and only on that one.
    assert "| lumbar_discs_t2 | case11 | cascade | intervertebral_disc " in table
    assert "| lumbar_vertebral_bodies_t2 | case02 | coarse | vertebral_body " in table
    assert (
        "| lumbar_vertebral_bodies_t2 | case02 | cascade, labelled levels | vertebral_body "
        in table
    )
    assert "spinal_canal" not in table
    for name, case in (("lumbar_discs_t2", "case11"), ("lumbar_vertebral_bodies_t2", "case02")):
        assert (out / name / "evaluation.json").is_file()
        assert (out / name / f"{case}.png").stat().st_size > 1000
        assert (out / name / f"{case}_reference.png").stat().st_size > 1000
