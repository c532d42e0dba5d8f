"""The GPU probe's dry run on this CPU at the tiny shape, so it never breaks unseen."""

import json
import subprocess
import sys

import pytest

from tests.helpers import ROOT


@pytest.mark.slow
def test_gpu_probe_dry_run_writes_a_line_per_variant(tmp_path):
    command = [sys.executable, str(ROOT / "benchmarks" / "gpu_probe.py"), f"--out={tmp_path}"]
    command += ["--shape=tiny", "--steps=2", "--variants=jax_bf16_custom,torch_tf32", "--sweep=1"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = [json.loads(line) for line in (tmp_path / "gpu_probe.jsonl").open()]
    assert [(r["variant"], r["batch"]) for r in rows] == [
        ("jax_bf16_custom", 2),
        ("torch_tf32", 2),
        ("jax_bf16_custom", 1),  # the batch sweep of the fastest JAX variant
    ]
    jax_row = rows[0]
    assert jax_row["step_s_median"] > 0 and jax_row["flops_per_step"] > 0
    assert jax_row["compile_s"] > 0 and jax_row["device"]
    torch_row = rows[1]
    assert "step_s_median" in torch_row or torch_row.get("skipped") == "PyTorch is not installed"
    table = (tmp_path / "gpu_probe.md").read_text()
    assert "| jax_bf16_custom | 2 |" in table and "| jax_bf16_custom | 1 |" in table
