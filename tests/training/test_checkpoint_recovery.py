"""kill -9 at any moment, damaged or foreign checkpoints, a full disk: resume stays exact."""

from __future__ import annotations

import errno
import os
import signal
import threading
import time

import numpy as np
import pytest

from lumbar_jax.checkpoint import CheckpointError, Checkpoints
from lumbar_jax.training import loop
from tests.helpers.runs import (
    logged_step,
    resume_to_the_end,
    run_config,
    start_training,
    tmp_folders,
    wait_for,
)


@pytest.mark.slow
def test_kill_9_mid_checkpoint_write_resumes_from_the_previous_one(
    phantom_root, tmp_path, reference
):
    proc = start_training(phantom_root, tmp_path, "--step-delay=0.02", "--slow-save=120")
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True)
    reader.start()
    try:
        wait_for(lambda: any(line.startswith("SAVING") for line in lines), proc)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == -signal.SIGKILL
    assert tmp_folders(tmp_path), "the killed save left no temporary folder"
    ckpt = Checkpoints(tmp_path)
    assert ckpt.latest_step() == 3  # the first epoch's; the second was being written
    ckpt.close()
    resume_to_the_end(phantom_root, tmp_path, reference)
    assert not tmp_folders(tmp_path)  # the resumed run cleaned up


@pytest.mark.slow
def test_kill_9_at_a_random_moment_resumes_exactly(phantom_root, tmp_path, reference):
    rng = np.random.default_rng(8)
    proc = start_training(phantom_root, tmp_path, "--step-delay=0.02")
    try:
        wait_for(lambda: logged_step(tmp_path) >= 3, proc)
        time.sleep(rng.uniform(0, 1.0))
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == -signal.SIGKILL
    resume_to_the_end(phantom_root, tmp_path, reference)


def test_unreadable_newest_checkpoint_falls_back_to_the_previous(
    phantom_root, tmp_path, reference, capsys
):
    loop.train_and_evaluate(run_config(phantom_root), tmp_path, max_steps=7)
    latest = tmp_path / "checkpoints" / "latest"
    assert sorted(p.name for p in latest.iterdir() if p.name.isdigit()) == ["6", "7"]
    for data in (latest / "7" / "state").rglob("ocdbt.process_0/d/*"):
        data.write_bytes(data.read_bytes()[:10])  # truncated after the rename: looks complete
    resume_to_the_end(phantom_root, tmp_path, reference)
    out = capsys.readouterr().out
    assert "checkpoint(s) 7" in out and "resuming from step 6" in out
    assert (latest / "7.unreadable").is_dir()


def test_checkpoint_of_another_model_is_a_clear_error_and_is_kept(phantom_root, tmp_path):
    loop.train_and_evaluate(run_config(phantom_root), tmp_path, max_steps=3)
    (tmp_path / "config.json").unlink()  # so only the checkpoint itself can tell
    other = run_config(phantom_root, **{"model.base_filters": "8"})
    with pytest.raises(CheckpointError, match=r"checkpoints/latest: no checkpoint could be"):
        loop.train_and_evaluate(other, tmp_path)
    assert (tmp_path / "checkpoints" / "latest" / "3").is_dir()  # nothing moved aside


def test_full_disk_during_a_checkpoint_keeps_the_previous_one(
    phantom_root, tmp_path, reference, monkeypatch
):
    from grain._src.python.checkpoint import handler

    save, calls = handler.CheckpointHandler.save, []

    def disk_full_on_second_save(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        return save(self, *args, **kwargs)

    monkeypatch.setattr(handler.CheckpointHandler, "save", disk_full_on_second_save)
    with pytest.raises(
        OSError, match=r"cannot write checkpoint 6: the disk is full; checkpoint 3 is kept"
    ):
        loop.train_and_evaluate(run_config(phantom_root), tmp_path)
    monkeypatch.undo()
    resume_to_the_end(phantom_root, tmp_path, reference)
