import shutil

import numpy as np
import pytest
import SimpleITK as sitk

from lumbar_jax.data import check, datasets
from lumbar_jax.training import loop
from tests.conftest import tiny_config
from tests.helpers.commands import run_command


def test_clean_dataset_passes(phantom_root):
    ds = datasets.load_nnunet_raw(phantom_root)
    report = check.check_dataset(ds)
    assert report.problems == []
    assert report.cases == 8
    assert all(report.voxels_per_label[k] > 0 for k in range(6))
    text = check.format_report(ds, report)
    assert "8 cases, 8 readable" in text and "No problems found." in text


@pytest.fixture
def broken_root(phantom_root, tmp_path):
    """A copy of the phantom with a truncated image, a shifted label and an unknown label."""
    root = tmp_path / "broken"
    shutil.copytree(phantom_root, root)
    truncated = root / "imagesTr" / "phantom_000_0000.nii.gz"
    truncated.write_bytes(truncated.read_bytes()[:300])
    moved = root / "labelsTr" / "phantom_001.nii.gz"
    label = sitk.ReadImage(str(moved))
    label.SetSpacing(tuple(s * 1.5 for s in label.GetSpacing()))
    sitk.WriteImage(label, str(moved))
    unknown = root / "labelsTr" / "phantom_002.nii.gz"
    label = sitk.ReadImage(str(unknown))
    array = sitk.GetArrayFromImage(label)
    array[0, 0, :3] = 9
    bad = sitk.GetImageFromArray(array)
    bad.CopyInformation(label)
    sitk.WriteImage(bad, str(unknown))
    return root


def _run_check(*args):
    return run_command("check", *args, timeout=120)


@pytest.mark.slow
def test_check_command_names_every_problem(broken_root):
    result = _run_check(broken_root)
    assert result.returncode == 1
    out = result.stdout
    assert "3 problem(s):" in out
    assert "phantom_000_0000.nii.gz: truncated or corrupt gzip data" in out
    assert "phantom_001.nii.gz: spacing" in out and "differs from the image's" in out
    assert "phantom_002.nii.gz: label values [9] are not declared" in out
    assert "8 cases, 6 readable" in out


@pytest.mark.slow
def test_check_command_on_a_folder_that_is_no_dataset(tmp_path):
    as_nnunet = _run_check("--layout=nnunet", tmp_path)
    assert as_nnunet.returncode == 2
    assert "dataset.json: missing" in as_nnunet.stderr
    detected = _run_check(tmp_path)  # auto: neither nnU-Net nor SPIDER, so a folder of pairs
    assert detected.returncode == 2
    assert "needs a label map" in detected.stderr


def test_too_few_slices_and_constant_images(phantom_root, tmp_path):
    # (NaN cannot be tested through NIfTI files: SimpleITK reads NaN voxels back as 0.)
    root = tmp_path / "odd"
    shutil.copytree(phantom_root, root)
    for case, fill in (("phantom_003", 5.0),):
        path = root / "imagesTr" / f"{case}_0000.nii.gz"
        image = sitk.ReadImage(str(path), sitk.sitkFloat32)
        array = np.full(sitk.GetArrayFromImage(image).shape, fill, np.float32)
        out = sitk.GetImageFromArray(array)
        out.CopyInformation(image)
        sitk.WriteImage(out, str(path))
    report = check.check_dataset(datasets.load_nnunet_raw(root), min_slices=30)
    problems = "\n".join(report.problems)
    assert "phantom_003_0000.nii.gz: image is constant (5.0)" in problems
    assert "sagittal slices, fewer than 30" in problems


def test_training_refuses_a_broken_dataset(broken_root, tmp_path):
    config = tiny_config(broken_root)
    with pytest.raises(ValueError, match=r"fails the dataset check") as err:
        loop.train_and_evaluate(config, tmp_path / "run")
    assert "phantom_002.nii.gz: label values [9]" in str(err.value)
    assert not (tmp_path / "run" / "checkpoints").exists()
