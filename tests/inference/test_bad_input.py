"""Bad input at inference and export: the file is named and no output is left behind."""

from __future__ import annotations

import errno
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from lumbar_jax.data import datasets
from lumbar_jax.evaluation import cases, predictors
from lumbar_jax.evaluation.evaluator import Evaluator
from lumbar_jax.export import onnx
from lumbar_jax.inference import jax_stage, overlay, writer
from tests.helpers import ROOT
from tests.helpers.bad_files import (
    LABEL_MAP,
    make_broken_folder,
    write_bad_files,
)


@pytest.fixture
def broken_folder(phantom_root, tmp_path) -> Path:
    return make_broken_folder(phantom_root, tmp_path / "files", tmp_path / "broken")


@pytest.fixture(scope="module")
def cascade_models(tiny_runs):
    coarse, fine = jax_stage.load_stages(tiny_runs["coarse"], tiny_runs["fine"])
    return coarse, fine


def test_predict_names_the_file_and_leaves_no_output(
    cascade_models, phantom_root, tmp_path, monkeypatch
):
    models = tuple(s.cascade_model() for s in cascade_models)
    bad = write_bad_files(phantom_root, tmp_path / "in")
    out = tmp_path / "out"
    for kind, (path, message) in bad.items():
        with pytest.raises((OSError, ValueError), match=re.escape(str(path)) + ".*" + message):
            writer.predict_series(*models, path, out, kind)
    assert not out.exists() or not list(out.iterdir())

    # A write that fails half-way (a full disk at the overlay) leaves nothing either.
    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(overlay, "overlay_png", full)
    with pytest.raises(OSError, match="No space left"):
        writer.predict_series(*models, tmp_path / "in" / "good.nii.gz", out, "good")
    assert not list(out.iterdir())


def test_unwritable_output_folders_are_clear_errors(cascade_models, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    # Running as root, permissions do not stop writes; a file in the way does.
    with pytest.raises(OSError, match=re.escape(str(blocker / "out")) + ": output folder is not"):
        writer.check_output_folder(blocker / "out")
    with pytest.raises(OSError, match=re.escape(str(blocker))):
        onnx.export_stage(cascade_models[1], blocker / "model.onnx")
    assert blocker.read_text() == ""


def test_evaluation_names_a_bad_case(cascade_models, broken_folder):
    dataset = datasets.load_dataset(broken_folder, "folder", LABEL_MAP, "*_image.*")
    dataset.splits["bad"] = ["good0", "truncated_gz"]
    models = tuple(s.cascade_model() for s in cascade_models)
    evaluator = Evaluator(lambda: cases.series_cases(dataset, "bad"))
    with pytest.raises(ValueError, match=r"truncated_gz_image.nii.gz: truncated or corrupt"):
        evaluator(predictors.cascade_predictor(*models))


def test_inference_refuses_a_checkpoint_that_does_not_match_its_config(tiny_runs, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(tiny_runs["fine"], run)
    config = json.loads((run / "config.json").read_text())
    config["model"]["base_filters"] = 8
    (run / "config.json").write_text(json.dumps(config))
    with pytest.raises(jax_stage.StageLoadError, match=re.escape(str(run))):
        jax_stage.load_stage(run)


@pytest.mark.slow
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
