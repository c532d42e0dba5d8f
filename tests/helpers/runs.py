"""Runs of the tiny config that tests interrupt, resume and compare, and how to interrupt them.

Every interrupted run is resumed to the end and compared with one uninterrupted run of the same
config (the ``reference`` fixture of ``tests/training/conftest.py``), parameter for parameter.
The subprocess cases run ``tests/helpers/train_interruptible.py``: ``python -m lumbar_jax.train``
with hooks to slow it down.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np

from lumbar_jax.training import loop, parallel
from tests.conftest import tiny_config
from tests.helpers import HELPERS, ROOT

HELPER = HELPERS / "train_interruptible.py"
# 40 epochs of 3 steps: long enough to interrupt a subprocess (with a step delay), short
# enough to rerun. Validation only at the end, a checkpoint every epoch (max_to_keep 2).
RUN = {"optim.num_epochs": "40", "train.eval_every_epochs": "1000"}
TOTAL_STEPS = 120


def run_config(phantom_root, **overrides):
    return tiny_config(phantom_root, **{**RUN, **overrides})


def leaves(tree) -> list[np.ndarray]:
    return [np.asarray(x) for x in jax.tree.leaves(tree)]


def assert_same_params(a, b) -> None:
    for x, y in zip(leaves(a), leaves(b), strict=True):
        np.testing.assert_array_equal(x, y)


def resume_to_the_end(phantom_root, workdir, reference) -> dict:
    result = loop.train_and_evaluate(run_config(phantom_root), workdir)
    assert result["step"] == TOTAL_STEPS and result["test"] is not None
    assert_same_params(result["params"], reference)
    return result


def on_batch(monkeypatch, calls: dict[int, callable]) -> None:
    """Runs ``calls[n]`` (given the batch) when the n-th batch of a run is placed."""
    place_batch = parallel.DataParallel.place_batch
    count = [0]

    def hooked(self, batch):
        count[0] += 1
        if count[0] in calls:
            batch = calls[count[0]](batch) or batch
        return place_batch(self, batch)

    monkeypatch.setattr(parallel.DataParallel, "place_batch", hooked)


def signal_self(signum, times=1):
    # raise_signal goes to this (the main) thread, whose Python handler then runs before the
    # next one is sent. os.kill signals the process: another thread may take both, and two
    # pending signals of one kind reach the Python handler once (it failed so once here).
    def send(batch):
        for _ in range(times):
            signal.raise_signal(signum)

    return send


def _env() -> dict[str, str]:
    # The subprocess reuses this session's compilation cache: it compiles nothing new.
    return {
        **os.environ,
        "JAX_COMPILATION_CACHE_DIR": str(jax.config.jax_compilation_cache_dir),
        "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0.5",
        "PYTHONPATH": str(ROOT),
    }


def start_training(phantom_root, workdir, *hooks: str) -> subprocess.Popen:
    command = [sys.executable, str(HELPER), *hooks, "--", "--config=fine:tiny"]
    command += [f"--workdir={workdir}", f"--config.data.root={phantom_root}"]
    command += [f"--config.{k}={v}" for k, v in RUN.items()]
    return subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        encoding="utf-8",
        errors="replace",
        cwd=ROOT,
        env=_env(),
    )


def wait_for(predicate, proc: subprocess.Popen, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if proc.poll() is not None:
            raise AssertionError(f"training ended early ({proc.returncode}): {proc.stderr.read()}")
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError("timed out waiting for the training subprocess")
        time.sleep(0.02)


def logged_step(workdir: Path) -> int:
    path = workdir / "metrics.jsonl"
    if not path.is_file():
        return 0
    steps = [json.loads(line)["step"] for line in path.read_text().splitlines() if line.strip()]
    return max(steps, default=0)


def tmp_folders(workdir: Path) -> list[Path]:
    """Temporary folders of checkpoint saves that did not finish."""
    return list((workdir / "checkpoints").glob("*/*.orbax-checkpoint-tmp*"))
