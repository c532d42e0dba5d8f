"""SIGINT and SIGTERM while training: a checkpoint of the step in flight, an exact resume."""

from __future__ import annotations

import re
import signal
import time

import pytest

from lumbar_jax.checkpoint import Checkpoints
from lumbar_jax.training import loop
from tests.helpers.runs import (
    TOTAL_STEPS,
    logged_step,
    on_batch,
    resume_to_the_end,
    run_config,
    signal_self,
    start_training,
    wait_for,
)


def test_sigint_checkpoints_the_step_and_resumes_exactly(
    phantom_root, tmp_path, reference, monkeypatch, capsys
):
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    on_batch(monkeypatch, {8: signal_self(signal.SIGINT)})  # mid-epoch: epochs end at 3, 6, 9
    result = loop.train_and_evaluate(run_config(phantom_root), tmp_path)
    assert result["preempted"] == "SIGINT" and result["step"] == 8 and result["test"] is None
    assert "Preempted by SIGINT: checkpoint of step 8 saved" in capsys.readouterr().out
    assert {s: signal.getsignal(s) for s in before} == before  # handlers restored
    assert Checkpoints(tmp_path).latest_step() == 8
    monkeypatch.undo()
    resume_to_the_end(phantom_root, tmp_path, reference)


def test_a_second_signal_stops_at_once(phantom_root, tmp_path, monkeypatch):
    # Python's own Ctrl-C handler before training, whatever earlier tests in this process left
    # (the test failed in full local sessions only, never alone; the cause was not pinned down).
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        on_batch(monkeypatch, {5: signal_self(signal.SIGINT, times=2)})
        with pytest.raises(KeyboardInterrupt):
            loop.train_and_evaluate(run_config(phantom_root), tmp_path)
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    finally:
        signal.signal(signal.SIGINT, before)
    # No checkpoint of the interrupted step; the epoch's one is complete.
    ckpt = Checkpoints(tmp_path)
    assert ckpt.latest_step() == 3
    ckpt.close()


@pytest.mark.slow
def test_sigterm_saves_within_bounded_time_exits_0_and_resumes_exactly(
    phantom_root, tmp_path, reference
):
    proc = start_training(phantom_root, tmp_path, "--step-delay=0.02")
    try:
        wait_for(lambda: logged_step(tmp_path) >= 4, proc)
        sent = time.perf_counter()
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=120)
        exited = time.perf_counter() - sent
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    match = re.search(
        r"Preempted by SIGTERM: checkpoint of step (\d+) saved .* ([\d.]+) s after", out
    )
    assert match, out
    step, saved_s = int(match.group(1)), float(match.group(2))
    assert "Run the same command to resume." in out
    print(
        f"SIGTERM -> checkpoint saved: {saved_s:.2f} s; SIGTERM -> process exited: {exited:.2f} s"
    )
    # One tiny step and one tiny checkpoint; generous for a loaded 2-core machine.
    assert saved_s < 10
    ckpt = Checkpoints(tmp_path)
    assert ckpt.latest_step() == step and 4 <= step < TOTAL_STEPS
    ckpt.close()
    resume_to_the_end(phantom_root, tmp_path, reference)
