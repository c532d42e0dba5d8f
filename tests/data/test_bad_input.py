"""Bad images and datasets: every reader, the dataset check and training name the file."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
import SimpleITK as sitk

from lumbar_jax.data import check, datasets, io
from lumbar_jax.training import loop
from tests.conftest import tiny_config
from tests.helpers.bad_files import (
    FOLDER,
    READER_ERRORS,
    make_broken_folder,
    phantom_pair,
    write_bad_files,
)
from tests.helpers.runs import (
    run_config,
)


def test_readers_name_the_file_and_the_problem(phantom_root, tmp_path):
    bad = write_bad_files(phantom_root, tmp_path)
    for kind in READER_ERRORS:
        path, message = bad[kind]
        with pytest.raises(io.ImageReadError, match=re.escape(f"{path}: ") + ".*" + message):
            io.read_canonical(path)
    vector = sitk.Compose([phantom_pair(phantom_root, 0)[0]] * 2)
    sitk.WriteImage(vector, str(tmp_path / "rgb.nii.gz"))
    with pytest.raises(io.ImageReadError, match=r"rgb.nii.gz: expected one channel, got 2"):
        io.read_image(tmp_path / "rgb.nii.gz")


@pytest.fixture
def broken_folder(phantom_root, tmp_path) -> Path:
    return make_broken_folder(phantom_root, tmp_path / "files", tmp_path / "broken")


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
        loop.train_and_evaluate(config, tmp_path / "run")
    assert all(line in str(err.value) for line in expected)
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_missing_files_and_empty_datasets_are_clear_errors(phantom_root, tmp_path):
    root = tmp_path / "missing_label"
    shutil.copytree(phantom_root, root)
    (root / "labelsTr" / "phantom_003.nii.gz").unlink()
    with pytest.raises(ValueError, match=r"labelsTr/phantom_003.nii.gz: missing label"):
        loop.train_and_evaluate(tiny_config(root), tmp_path / "run1")
    empty = tmp_path / "empty"
    (empty / "imagesTr").mkdir(parents=True)
    shutil.copy(phantom_root / "dataset.json", empty)
    with pytest.raises(ValueError, match=r"empty/imagesTr: no images named"):
        loop.train_and_evaluate(tiny_config(empty), tmp_path / "run2")
    with pytest.raises(ValueError, match=r"nowhere: no such dataset folder"):
        loop.train_and_evaluate(tiny_config(tmp_path / "nowhere"), tmp_path / "run3")
    for run in ("run1", "run2", "run3"):
        assert not (tmp_path / run / "checkpoints").exists()


def test_unwritable_workdir_is_a_clear_error(phantom_root, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    with pytest.raises(OSError, match=re.escape(str(blocker / "run"))):
        loop.train_and_evaluate(tiny_config(phantom_root), blocker / "run")
