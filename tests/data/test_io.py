import itertools

import numpy as np
import pytest
import SimpleITK as sitk

from lumbar_jax.data import io


def _oriented_image(orientation: str) -> tuple[sitk.Image, np.ndarray]:
    """A canonical test volume, reoriented to ``orientation`` (a different voxel order)."""
    canonical = np.arange(3 * 4 * 5, dtype=np.int16).reshape(3, 4, 5)
    image = io.canonical_image(canonical, (4.0, 0.8, 0.7), origin_lps=(10.0, -5.0, 3.0))
    return sitk.DICOMOrient(image, orientation), canonical


ORIENTATIONS = ["".join(p) for p in itertools.permutations("LPS")] + ["RAI", "PIL", "ASR", "IRP"]


@pytest.mark.parametrize("orientation", ORIENTATIONS)
def test_canonical_round_trip(orientation, tmp_path):
    image, canonical = _oriented_image(orientation)
    path = tmp_path / "x.nii.gz"
    io.write_image(image, path)
    volume = io.read_canonical(path)
    np.testing.assert_array_equal(volume.array_dhw, canonical)
    assert volume.spacing_dhw == pytest.approx((4.0, 0.8, 0.7))
    back = io.from_canonical(volume.array_dhw, volume.reference)
    assert back.GetSize() == image.GetSize()
    np.testing.assert_allclose(back.GetDirection(), image.GetDirection(), atol=1e-6)
    np.testing.assert_allclose(back.GetOrigin(), image.GetOrigin(), atol=1e-4)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(back), sitk.GetArrayFromImage(image))


def test_read_errors_name_the_file(tmp_path):
    with pytest.raises(io.ImageReadError, match="no such file"):
        io.read_image(tmp_path / "missing.nii.gz")
    junk = tmp_path / "junk.nii.gz"
    junk.write_bytes(b"not an image at all")
    with pytest.raises(io.ImageReadError, match=r"junk.nii.gz: truncated or corrupt gzip"):
        io.read_image(junk)
    junk = tmp_path / "junk.mha"
    junk.write_bytes(b"not an image at all")
    with pytest.raises(io.ImageReadError, match=r"junk.mha: not a readable image"):
        io.read_image(junk)
    flat = tmp_path / "flat.nii.gz"
    sitk.WriteImage(sitk.Image(4, 4, sitk.sitkUInt8), str(flat))
    with pytest.raises(io.ImageReadError, match=r"flat.nii.gz: expected a 3D image, got 2D"):
        io.read_image(flat)
    image, _ = _oriented_image("LPS")
    whole = tmp_path / "whole.nii.gz"
    io.write_image(image, whole)
    cut = tmp_path / "cut.nii.gz"
    cut.write_bytes(whole.read_bytes()[:-20])
    with pytest.raises(io.ImageReadError, match=r"cut.nii.gz: truncated or corrupt gzip data"):
        io.read_image(cut)
    with pytest.raises(io.ImageReadError, match="holds no DICOM series"):
        io.read_image(tmp_path)


def test_write_leaves_no_partial_file(tmp_path):
    image, _ = _oriented_image("LPS")
    with pytest.raises(OSError, match="cannot write image"):
        io.write_image(image, tmp_path / "missing_dir" / "x.nii.gz")
    assert not list(tmp_path.rglob("*.nii.gz"))


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz", ".mha", ".mhd", ".nrrd", "dicom"])
def test_every_format_reads_into_the_canonical_layout(suffix, tmp_path):
    from tests.helpers import dicom

    image, canonical = _oriented_image("RAS")  # neither the canonical order nor identity
    if suffix == "dicom":
        path = dicom.write_series(image, tmp_path / "series")
    else:
        path = tmp_path / f"scan{suffix}"
        sitk.WriteImage(image, str(path))
    volume = io.read_canonical(path)
    assert volume.spacing_dhw == pytest.approx((4.0, 0.8, 0.7), rel=1e-4)
    if suffix == "dicom":  # written as rescaled int16: same order of values
        assert np.corrcoef(volume.array_dhw.ravel(), canonical.ravel())[0, 1] > 0.9999
    else:
        np.testing.assert_array_equal(volume.array_dhw, canonical)
