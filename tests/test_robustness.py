"""Failure behaviour: preemption, kills, exact resume, non-finite steps and bad input.

The kill and SIGTERM cases run training in a subprocess (tests/helpers/train_interruptible.py,
which is ``python -m lumbar_jax.train`` with hooks to slow it down); everything else runs in
process. Every interrupted run is resumed to the end and compared with one uninterrupted run
of the same config, parameter for parameter.
"""

from __future__ import annotations

import errno
import gzip
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import jax
import numpy as np
import pytest
import SimpleITK as sitk

from lumbar_jax import export, inference, parallel, stage, trainer
from lumbar_jax.checkpoint import CheckpointError, Checkpoints
from lumbar_jax.data import check, datasets, io
from tests.conftest import tiny_config
from tests.helpers import dicom

ROOT = Path(__file__).resolve().parents[1]
HELPER = Path(__file__).parent / "helpers" / "train_interruptible.py"
# 40 epochs of 3 steps: long enough to interrupt a subprocess (with a step delay), short
# enough to rerun. Validation only at the end, a checkpoint every epoch (max_to_keep 2).
RUN = {"optim.num_epochs": "40", "train.eval_every_epochs": "1000"}
TOTAL_STEPS = 120


def run_config(phantom_root, **overrides):
    return tiny_config(phantom_root, **{**RUN, **overrides})


def _leaves(tree) -> list[np.ndarray]:
    return [np.asarray(x) for x in jax.tree.leaves(tree)]


def assert_same_params(a, b) -> None:
    for x, y in zip(_leaves(a), _leaves(b), strict=True):
        np.testing.assert_array_equal(x, y)


@pytest.fixture(scope="module")
def reference(phantom_root, tmp_path_factory):
    """The final parameters of an uninterrupted run of ``run_config``."""
    result = trainer.train_and_evaluate(
        run_config(phantom_root), tmp_path_factory.mktemp("reference")
    )
    assert result["step"] == TOTAL_STEPS and result["preempted"] is None
    return result["params"]


def resume_to_the_end(phantom_root, workdir, reference) -> dict:
    result = trainer.train_and_evaluate(run_config(phantom_root), workdir)
    assert result["step"] == TOTAL_STEPS and result["test"] is not None
    assert_same_params(result["params"], reference)
    return result


def _on_batch(monkeypatch, calls: dict[int, callable]) -> None:
    """Runs ``calls[n]`` (given the batch) when the n-th batch of a run is placed."""
    place_batch = parallel.DataParallel.place_batch
    count = [0]

    def hooked(self, batch):
        count[0] += 1
        if count[0] in calls:
            batch = calls[count[0]](batch) or batch
        return place_batch(self, batch)

    monkeypatch.setattr(parallel.DataParallel, "place_batch", hooked)


def _signal_self(signum, times=1):
    # raise_signal goes to this (the main) thread, whose Python handler then runs before the
    # next one is sent. os.kill signals the process: another thread may take both, and two
    # pending signals of one kind reach the Python handler once (it failed so once here).
    def send(batch):
        for _ in range(times):
            signal.raise_signal(signum)

    return send


# --- Preemption ------------------------------------------------------------------------------


def test_sigint_checkpoints_the_step_and_resumes_exactly(
    phantom_root, tmp_path, reference, monkeypatch, capsys
):
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    _on_batch(monkeypatch, {8: _signal_self(signal.SIGINT)})  # mid-epoch: epochs end at 3, 6, 9
    result = trainer.train_and_evaluate(run_config(phantom_root), tmp_path)
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
        _on_batch(monkeypatch, {5: _signal_self(signal.SIGINT, times=2)})
        with pytest.raises(KeyboardInterrupt):
            trainer.train_and_evaluate(run_config(phantom_root), tmp_path)
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    finally:
        signal.signal(signal.SIGINT, before)
    # No checkpoint of the interrupted step; the epoch's one is complete.
    ckpt = Checkpoints(tmp_path)
    assert ckpt.latest_step() == 3
    ckpt.close()


def _env() -> dict[str, str]:
    # The subprocess reuses this session's compilation cache: it compiles nothing new.
    return {
        **os.environ,
        "JAX_COMPILATION_CACHE_DIR": str(jax.config.jax_compilation_cache_dir),
        "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0.5",
        "PYTHONPATH": str(ROOT),
    }


def _start(phantom_root, workdir, *hooks: str) -> subprocess.Popen:
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


def _wait_for(predicate, proc: subprocess.Popen, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if proc.poll() is not None:
            raise AssertionError(f"training ended early ({proc.returncode}): {proc.stderr.read()}")
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError("timed out waiting for the training subprocess")
        time.sleep(0.02)


def _logged_step(workdir: Path) -> int:
    path = workdir / "metrics.jsonl"
    if not path.is_file():
        return 0
    steps = [json.loads(line)["step"] for line in path.read_text().splitlines() if line.strip()]
    return max(steps, default=0)


def test_sigterm_saves_within_bounded_time_exits_0_and_resumes_exactly(
    phantom_root, tmp_path, reference
):
    proc = _start(phantom_root, tmp_path, "--step-delay=0.02")
    try:
        _wait_for(lambda: _logged_step(tmp_path) >= 4, proc)
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


# --- kill -9 ---------------------------------------------------------------------------------


def _tmp_folders(workdir: Path) -> list[Path]:
    return list((workdir / "checkpoints").glob("*/*.orbax-checkpoint-tmp*"))


def test_kill_9_mid_checkpoint_write_resumes_from_the_previous_one(
    phantom_root, tmp_path, reference
):
    proc = _start(phantom_root, tmp_path, "--step-delay=0.02", "--slow-save=120")
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True)
    reader.start()
    try:
        _wait_for(lambda: any(line.startswith("SAVING") for line in lines), proc)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == -signal.SIGKILL
    assert _tmp_folders(tmp_path), "the killed save left no temporary folder"
    ckpt = Checkpoints(tmp_path)
    assert ckpt.latest_step() == 3  # the first epoch's; the second was being written
    ckpt.close()
    resume_to_the_end(phantom_root, tmp_path, reference)
    assert not _tmp_folders(tmp_path)  # the resumed run cleaned up


def test_kill_9_at_a_random_moment_resumes_exactly(phantom_root, tmp_path, reference):
    rng = np.random.default_rng(8)
    proc = _start(phantom_root, tmp_path, "--step-delay=0.02")
    try:
        _wait_for(lambda: _logged_step(tmp_path) >= 3, proc)
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
    trainer.train_and_evaluate(run_config(phantom_root), tmp_path, max_steps=7)
    latest = tmp_path / "checkpoints" / "latest"
    assert sorted(p.name for p in latest.iterdir() if p.name.isdigit()) == ["6", "7"]
    for data in (latest / "7" / "state").rglob("ocdbt.process_0/d/*"):
        data.write_bytes(data.read_bytes()[:10])  # truncated after the rename: looks complete
    resume_to_the_end(phantom_root, tmp_path, reference)
    out = capsys.readouterr().out
    assert "checkpoint(s) 7" in out and "resuming from step 6" in out
    assert (latest / "7.unreadable").is_dir()


def test_checkpoint_of_another_model_is_a_clear_error_and_is_kept(phantom_root, tmp_path):
    trainer.train_and_evaluate(run_config(phantom_root), tmp_path, max_steps=3)
    (tmp_path / "config.json").unlink()  # so only the checkpoint itself can tell
    other = run_config(phantom_root, **{"model.base_filters": "8"})
    with pytest.raises(CheckpointError, match=r"checkpoints/latest: no checkpoint could be"):
        trainer.train_and_evaluate(other, tmp_path)
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
        trainer.train_and_evaluate(run_config(phantom_root), tmp_path)
    monkeypatch.undo()
    resume_to_the_end(phantom_root, tmp_path, reference)


# --- Non-finite steps ------------------------------------------------------------------------


def _nan_image(batch):
    return {**batch, "image_dhwc": np.full_like(batch["image_dhwc"], np.nan)}


def test_stop_policy_names_the_step_and_saves_nothing(phantom_root, tmp_path, monkeypatch):
    _on_batch(monkeypatch, {2: _nan_image})
    with pytest.raises(FloatingPointError, match=r"Loss is nan at step 2; training stopped"):
        trainer.train_and_evaluate(run_config(phantom_root), tmp_path)
    ckpt = Checkpoints(tmp_path)
    assert ckpt.latest_step() is None
    ckpt.close()


def test_skip_policy_skips_a_nan_batch_and_keeps_the_state(phantom_root, tmp_path, monkeypatch):
    config = run_config(phantom_root, **{"train.nonfinite": "skip"})
    before = trainer.train_and_evaluate(config, tmp_path, max_steps=4)["params"]
    _on_batch(monkeypatch, {1: _nan_image})  # step 5
    result = trainer.train_and_evaluate(config, tmp_path, max_steps=5)
    assert result["skipped_steps"] == 1 and result["step"] == 5
    assert_same_params(result["params"], before)
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").open()]
    assert {"step": 5, "skipped_steps": 1}.items() <= rows[-1].items()
    assert "Loss is nan" in rows[-1]["skipped_update"]
    monkeypatch.undo()
    after = trainer.train_and_evaluate(config, tmp_path, max_steps=6)["params"]
    assert all(np.isfinite(x).all() for x in _leaves(after))
    assert any((x != y).any() for x, y in zip(_leaves(after), _leaves(before), strict=True))


def test_skip_policy_stops_after_too_many_in_a_row(phantom_root, tmp_path):
    good = run_config(phantom_root)
    trainer.train_and_evaluate(good, tmp_path, max_steps=3)
    # Adam's steps are ~lr in size whatever the gradient: lr 1e30 overflows within two steps.
    bad = run_config(
        phantom_root,
        **{
            "optim.learning_rate": "1e30",
            "train.nonfinite": "skip",
            "train.max_skipped_steps": "3",
        },
    )
    with pytest.raises(FloatingPointError, match=r"3 non-finite steps in a row") as err:
        trainer.train_and_evaluate(bad, tmp_path)
    assert "max_skipped_steps = 3" in str(err.value)
    ckpt = Checkpoints(tmp_path)
    state = jax.device_get(trainer.create_train_state(good, jax.random.key(0)))
    restored = ckpt.restore_latest(state)
    ckpt.close()
    assert all(np.isfinite(x).all() for x in _leaves(restored.params))


@pytest.mark.parametrize("mode", ["mesh", "pmap"])
def test_skip_is_decided_on_the_device_in_both_parallel_modes(phantom_root, mode):
    import functools

    config = tiny_config(phantom_root)
    dp = parallel.DataParallel(mode, 2)
    initial = jax.device_get(trainer.create_train_state(config, jax.random.key(0)))
    step = dp.wrap_step(functools.partial(trainer.train_step, config=config))
    rng = np.random.default_rng(0)
    batch = {
        "image_dhwc": rng.random((2, *config.data.input_shape, 1), np.float32),
        "label_dhw": rng.integers(0, 6, (2, *config.data.input_shape)).astype(np.uint8),
        "labeled_c": np.ones((2, 6), bool),
    }
    state, m = step(dp.place_state(initial), dp.place_batch(_nan_image(batch)), jax.random.key(1))
    assert not dp.host_metrics(m)["finite"]
    kept = dp.host_state(state)
    assert int(kept.step) == 1
    assert_same_params((kept.params, kept.opt_state), (initial.params, initial.opt_state))
    state, m = step(state, dp.place_batch(batch), jax.random.key(1))
    assert dp.host_metrics(m)["finite"]
    assert any(
        (x != y).any()
        for x, y in zip(_leaves(dp.host_state(state).params), _leaves(initial.params), strict=True)
    )


def test_unknown_nonfinite_policy_is_refused(phantom_root, tmp_path):
    with pytest.raises(ValueError, match=r"config.train.nonfinite is 'ignore'"):
        trainer.train_and_evaluate(
            run_config(phantom_root, **{"train.nonfinite": "ignore"}), tmp_path
        )
    assert not tmp_path.joinpath("config.json").exists()


# --- Bad input -------------------------------------------------------------------------------


def _phantom_pair(phantom_root: Path, index: int) -> tuple[sitk.Image, sitk.Image]:
    image = sitk.ReadImage(str(phantom_root / "imagesTr" / f"phantom_{index:03d}_0000.nii.gz"))
    label = sitk.ReadImage(str(phantom_root / "labelsTr" / f"phantom_{index:03d}.nii.gz"))
    return image, label


def _with_array(image: sitk.Image, array: np.ndarray) -> sitk.Image:
    out = sitk.GetImageFromArray(array)
    out.CopyInformation(image)
    return out


def write_bad_files(phantom_root: Path, folder: Path) -> dict[str, tuple[Path, str]]:
    """One file per kind of bad image: {kind: (path, what the error must say)}."""
    folder.mkdir(parents=True, exist_ok=True)
    image, _ = _phantom_pair(phantom_root, 0)
    array = sitk.GetArrayFromImage(image).astype(np.float32)
    good = folder / "good.nii.gz"
    sitk.WriteImage(image, str(good))
    bad = {}

    def add(kind, name, message):
        bad[kind] = (folder / name, message)
        return folder / name

    add("missing", "missing.nii.gz", "no such file")
    add("garbage", "notes.nii.gz", "truncated or corrupt gzip").write_text("not an image")
    add("garbage_mha", "notes.mha", "not a readable image").write_text("not an image")
    add("truncated_gz", "cut.nii.gz", "truncated or corrupt gzip").write_bytes(
        good.read_bytes()[:-100]
    )
    raw = gzip.decompress(good.read_bytes())
    add("truncated_nii", "cut.nii", "truncated: its header describes").write_bytes(raw[:-100])
    sitk.WriteImage(image[:, :, 0], str(add("2d", "flat.nii.gz", "expected a 3D image, got 2D")))
    four = sitk.JoinSeries([image, image])
    sitk.WriteImage(four, str(add("4d", "series.nii.gz", "expected a 3D image, got 4D")))
    nan = array.copy()
    nan[2, 10, 10] = np.nan  # NIfTI readers turn NaN into 0; MetaImage keeps it
    sitk.WriteImage(_with_array(image, nan), str(add("nan", "nan.mha", "NaN or Inf")))
    constant = _with_array(image, np.full_like(array, 7.0))
    sitk.WriteImage(constant, str(add("constant", "flat_value.nii.gz", "image is constant")))
    return bad


READER_ERRORS = ("missing", "garbage", "garbage_mha", "truncated_gz", "truncated_nii")
READER_ERRORS += ("2d", "4d")


def test_readers_name_the_file_and_the_problem(phantom_root, tmp_path):
    bad = write_bad_files(phantom_root, tmp_path)
    for kind in READER_ERRORS:
        path, message = bad[kind]
        with pytest.raises(io.ImageReadError, match=re.escape(f"{path}: ") + ".*" + message):
            io.read_canonical(path)
    vector = sitk.Compose([_phantom_pair(phantom_root, 0)[0]] * 2)
    sitk.WriteImage(vector, str(tmp_path / "rgb.nii.gz"))
    with pytest.raises(io.ImageReadError, match=r"rgb.nii.gz: expected one channel, got 2"):
        io.read_image(tmp_path / "rgb.nii.gz")


@pytest.fixture
def broken_folder(phantom_root, tmp_path) -> Path:
    """A folder-layout dataset (any format per case): two good cases and every kind of bad."""
    root = tmp_path / "broken"
    root.mkdir()
    for i in range(2):
        image, label = _phantom_pair(phantom_root, i)
        sitk.WriteImage(image, str(root / f"good{i}_image.nii.gz"))
        sitk.WriteImage(label, str(root / f"good{i}_labels.nii.gz"))
    _, label = _phantom_pair(phantom_root, 0)  # write_bad_files makes case 0's image bad
    for kind, (path, _) in write_bad_files(phantom_root, tmp_path / "files").items():
        if kind == "missing":
            continue
        suffix = "".join(path.suffixes)
        shutil.copy(path, root / f"{kind}_image{suffix}")
        # Labels in the image's format (the folder layout pairs names), readable.
        label_suffix = ".nii" if suffix == ".nii" else ".mha" if suffix == ".mha" else ".nii.gz"
        sitk.WriteImage(label, str(root / f"{kind}_labels{label_suffix}"))
    image, label = _phantom_pair(phantom_root, 2)
    moved = sitk.Image(label)
    moved.SetSpacing(tuple(s * 1.5 for s in label.GetSpacing()))
    sitk.WriteImage(image, str(root / "geometry_image.nii.gz"))
    sitk.WriteImage(moved, str(root / "geometry_labels.nii.gz"))
    unknown = sitk.GetArrayFromImage(label)
    unknown[0, 0, :3] = 9
    sitk.WriteImage(image, str(root / "unknown_image.nii.gz"))
    sitk.WriteImage(_with_array(label, unknown), str(root / "unknown_labels.nii.gz"))
    return root


LABEL_MAP = "1:1,2:2,3:3,4:4,5:5"  # the phantom's labels are ours
FOLDER = {"data.layout": "folder", "data.label_map": LABEL_MAP, "data.image_glob": "*_image.*"}


def test_dataset_check_and_training_name_every_bad_case(broken_folder, phantom_root, tmp_path):
    config = run_config(broken_folder, **FOLDER)
    dataset = datasets.from_config(config.data)
    problems = "\n".join(check.check_dataset(dataset).problems)
    expected = [
        "garbage_image.nii.gz: truncated or corrupt gzip",
        "garbage_mha_image.mha: not a readable image",
        "truncated_gz_image.nii.gz: truncated or corrupt gzip",
        "truncated_nii_image.nii: truncated: its header describes",
        "2d_image.nii.gz: expected a 3D image, got 2D",
        "4d_image.nii.gz: expected a 3D image, got 4D",
        "nan_image.mha: image holds NaN or Inf values",
        "constant_image.nii.gz: image is constant",
        "geometry_labels.nii.gz: spacing",
        "unknown_labels.nii.gz: label values [9] are not declared",
    ]
    for line in expected:
        assert line in problems, f"{line!r} not in\n{problems}"
    assert "good0" not in problems and "good1" not in problems
    with pytest.raises(ValueError, match="fails the dataset check") as err:
        trainer.train_and_evaluate(config, tmp_path / "run")
    assert all(line in str(err.value) for line in expected)
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_missing_files_and_empty_datasets_are_clear_errors(phantom_root, tmp_path):
    root = tmp_path / "missing_label"
    shutil.copytree(phantom_root, root)
    (root / "labelsTr" / "phantom_003.nii.gz").unlink()
    with pytest.raises(ValueError, match=r"labelsTr/phantom_003.nii.gz: missing label"):
        trainer.train_and_evaluate(tiny_config(root), tmp_path / "run1")
    empty = tmp_path / "empty"
    (empty / "imagesTr").mkdir(parents=True)
    shutil.copy(phantom_root / "dataset.json", empty)
    with pytest.raises(ValueError, match=r"empty/imagesTr: no images named"):
        trainer.train_and_evaluate(tiny_config(empty), tmp_path / "run2")
    with pytest.raises(ValueError, match=r"nowhere: no such dataset folder"):
        trainer.train_and_evaluate(tiny_config(tmp_path / "nowhere"), tmp_path / "run3")
    for run in ("run1", "run2", "run3"):
        assert not (tmp_path / run / "checkpoints").exists()


def test_unwritable_workdir_is_a_clear_error(phantom_root, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    with pytest.raises(OSError, match=re.escape(str(blocker / "run"))):
        trainer.train_and_evaluate(tiny_config(phantom_root), blocker / "run")


@pytest.fixture(scope="module")
def cascade_models(tiny_runs):
    coarse, fine = stage.load_cascade(tiny_runs["coarse"], tiny_runs["fine"])
    return coarse, fine


def test_predict_names_the_file_and_leaves_no_output(
    cascade_models, phantom_root, tmp_path, monkeypatch
):
    models = tuple(s.cascade_model() for s in cascade_models)
    bad = write_bad_files(phantom_root, tmp_path / "in")
    out = tmp_path / "out"
    for kind, (path, message) in bad.items():
        with pytest.raises((OSError, ValueError), match=re.escape(str(path)) + ".*" + message):
            inference.predict_series(*models, path, out, kind)
    assert not out.exists() or not list(out.iterdir())
    # A write that fails half-way (a full disk at the overlay) leaves nothing either.
    from lumbar_jax import report

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(report, "overlay_png", full)
    with pytest.raises(OSError, match="No space left"):
        inference.predict_series(*models, tmp_path / "in" / "good.nii.gz", out, "good")
    assert not list(out.iterdir())


def test_unwritable_output_folders_are_clear_errors(cascade_models, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    # Running as root, permissions do not stop writes; a file in the way does.
    with pytest.raises(OSError, match=re.escape(str(blocker / "out")) + ": output folder is not"):
        inference.check_output_folder(blocker / "out")
    with pytest.raises(OSError, match=re.escape(str(blocker))):
        export.export_stage(cascade_models[1], blocker / "model.onnx")
    assert blocker.read_text() == ""


def test_evaluation_names_a_bad_case(cascade_models, broken_folder):
    dataset = datasets.load_dataset(broken_folder, "folder", LABEL_MAP, "*_image.*")
    dataset.splits["bad"] = ["good0", "truncated_gz"]
    models = tuple(s.cascade_model() for s in cascade_models)
    from lumbar_jax import evaluation

    with pytest.raises(ValueError, match=r"truncated_gz_image.nii.gz: truncated or corrupt"):
        evaluation.evaluate(*models, dataset, "bad")


def test_inference_refuses_a_checkpoint_that_does_not_match_its_config(tiny_runs, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(tiny_runs["fine"], run)
    config = json.loads((run / "config.json").read_text())
    config["model"]["base_filters"] = 8
    (run / "config.json").write_text(json.dumps(config))
    with pytest.raises(stage.StageLoadError, match=re.escape(str(run))):
        stage.load_stage(run)


def test_train_command_exits_1_with_the_error(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    command = [sys.executable, "-m", "lumbar_jax.train", "--config=fine:tiny"]
    command += [f"--workdir={blocker / 'run'}", f"--config.data.root={tmp_path / 'nowhere'}"]
    result = subprocess.run(
        command,
        capture_output=True,
        encoding="utf-8",
        errors="replace",
        timeout=120,
        cwd=ROOT,
    )
    assert result.returncode == 1
    assert (
        result.stderr.strip()
        .splitlines()[-1]
        .startswith(f"error: [Errno 20] Not a directory: '{blocker}")
    )


# --- No patient identifiers ------------------------------------------------------------------


def test_no_patient_identifiers_in_logs_reports_or_outputs(
    phantom_root, cascade_models, tmp_path, capsys
):
    # A dataset whose image headers carry a name and an ID (NIfTI descrip, MetaImage tags).
    root = tmp_path / "named"
    shutil.copytree(phantom_root, root)
    for path in (root / "imagesTr").glob("*.nii.gz"):
        image = sitk.ReadImage(str(path))
        image.SetMetaData("ITK_FileNotes", f"{dicom.PATIENT_NAME} {dicom.PATIENT_ID}")
        sitk.WriteImage(image, str(path))
    assert dicom.PATIENT_NAME.encode() in gzip.decompress(path.read_bytes())
    workdir = tmp_path / "run"
    trainer.train_and_evaluate(tiny_config(root, **{"optim.num_epochs": "1"}), workdir)
    image = sitk.ReadImage(str(path))
    for key, value in (("PatientName", dicom.PATIENT_NAME), ("PatientID", dicom.PATIENT_ID)):
        image.SetMetaData(key, value)
    sitk.WriteImage(image, str(tmp_path / "scan.mha"))
    models = tuple(s.cascade_model() for s in cascade_models)
    out = tmp_path / "out"
    inference.predict_series(*models, tmp_path / "scan.mha", out, "scan")
    print(
        check.format_report(
            datasets.load_nnunet_raw(root), check.check_dataset(datasets.load_nnunet_raw(root))
        )
    )
    texts = {"stdout": capsys.readouterr().out}
    for path in [*workdir.rglob("*"), *out.iterdir()]:
        if path.is_file() and path.suffix in (".json", ".jsonl", ".md", ".mha"):
            texts[str(path)] = path.read_bytes().decode("latin-1")
    assert str(workdir / "metrics.jsonl") in texts and str(out / "scan.json") in texts
    for name, text in texts.items():
        for secret in (dicom.PATIENT_NAME, dicom.PATIENT_ID, "Secretia", "8675309"):
            assert secret not in text, f"{secret!r} in {name}"
