"""Data-parallel modes on simulated CPU devices, and multi-process runs on 127.0.0.1."""

import hashlib
import json
import socket
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from lumbar_jax.checkpoint import Checkpoints
from lumbar_jax.training import state as state_lib
from lumbar_jax.training.parallel import DataParallel, check_batch
from tests.conftest import tiny_config
from tests.helpers import HELPERS, ROOT


@pytest.mark.slow
def test_pmap_and_mesh_match_one_device(tmp_path):
    out = tmp_path / "params.npz"
    subprocess.run(
        [sys.executable, str(HELPERS / "data_parallel_steps.py"), "4", str(out)],
        check=True,
        timeout=600,
        cwd=ROOT,
    )
    results = np.load(out)
    params = [k.split("/", 1)[1] for k in results.files if k.startswith("one_device/[")]
    for mode in ("mesh", "pmap"):
        for series in ("losses", "grad_norms"):
            # Same loss and same gradient size: a gradient summed instead of averaged over
            # devices would show here (Adam's update alone is blind to gradient scale).
            np.testing.assert_allclose(
                results[f"{mode}/{series}"], results[f"one_device/{series}"], rtol=1e-5
            )
        diffs = np.concatenate(
            [np.abs(results[f"{mode}/{k}"] - results[f"one_device/{k}"]).ravel() for k in params]
        )
        # Only the order of float32 sums differs. Adam normalizes each update, so a
        # parameter whose gradient is ~0 may step +-lr on rounding noise: every parameter
        # agrees within 2 * steps * lr, and all but 0.1 % within 1e-5.
        assert diffs.max() <= 2 * 3 * 1e-3
        assert np.mean(diffs > 1e-5) < 1e-3, np.mean(diffs > 1e-5)


def test_uneven_batch_is_a_clear_error():
    with pytest.raises(ValueError) as err:
        check_batch(5, 4)
    message = str(err.value)
    assert "Global batch 5 does not divide across 4 devices" in message
    assert "multiple of 4 (e.g. 4 or 8)" in message
    assert "or run on 1, 5 devices" in message
    assert check_batch(8, 4) == 2
    with pytest.raises(ValueError, match=r"e\.g\. 4\)"):
        check_batch(2, 4)
    with pytest.raises(ValueError, match=r"Unknown config\.parallel 'ddp'"):
        DataParallel("ddp", 4)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(count, root, workdir, *extra):
    port = _free_port()
    return [
        subprocess.Popen(
            [
                sys.executable,
                str(HELPERS / "multihost_train.py"),
                *map(str, (port, count, i, root, workdir)),
                *extra,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            encoding="utf-8",
            errors="replace",
            cwd=ROOT,
        )
        for i in range(count)
    ]


def _finish(procs, deadline_s):
    """Waits for every process; kills all of them at the deadline (a stuck peer blocks)."""
    outputs = []
    end = time.monotonic() + deadline_s
    for p in procs:
        try:
            out, err = p.communicate(timeout=max(1.0, end - time.monotonic()))
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            pytest.fail(f"multi-process run still running after {deadline_s} s")
        outputs.append((p.returncode, out, err))
    return outputs


@pytest.mark.slow
def test_two_processes_train_identically_and_checkpoint_once(phantom_root, tmp_path):
    workdir = tmp_path / "run"
    results = _finish(_start(2, phantom_root, workdir), deadline_s=400)
    reports = []
    for code, out, err in results:
        assert code == 0, err[-3000:]
        reports.append(json.loads(out.strip().splitlines()[-1]))
    assert [r["step"] for r in reports] == [2, 2]
    assert reports[0]["params_sha256"] == reports[1]["params_sha256"]
    # One checkpoint, written jointly, with each process's data-iterator position.
    steps = sorted(p.name for p in (workdir / "checkpoints" / "latest").iterdir() if p.is_dir())
    assert steps == ["2"]
    # It restores in a single-process run to the same parameters.
    config = tiny_config(phantom_root)
    template = jax.device_get(state_lib.create_train_state(config, jax.random.key(0)))
    ckpt = Checkpoints(workdir)
    assert not ckpt.has_iterator_state(2)  # saved per process: process_{0,1}-of-2
    restored = ckpt.restore_latest(template)
    ckpt.close()
    digest = hashlib.sha256()
    for leaf in jax.tree.leaves(restored.params):
        digest.update(np.asarray(leaf).tobytes())
    assert int(restored.step) == 2
    assert digest.hexdigest() == reports[0]["params_sha256"]


@pytest.mark.slow
def test_killed_peer_ends_the_other(phantom_root, tmp_path):
    procs = _start(2, phantom_root, tmp_path / "run", "die")
    start = time.monotonic()
    (code0, _, _), (code1, _, _) = _finish(procs, deadline_s=300)
    elapsed = time.monotonic() - start
    assert code1 == -9  # the peer was killed
    assert code0 != 0, "the surviving process must fail, not report success"
    # Heartbeat time-out is 5 s in the helper; start-up and compilation take the rest.
    assert elapsed < 180, elapsed
