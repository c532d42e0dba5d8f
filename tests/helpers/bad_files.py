"""Bad files for the tests of clear errors: one per kind of bad image, and a broken dataset."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import numpy as np
import SimpleITK as sitk


def phantom_pair(phantom_root: Path, index: int) -> tuple[sitk.Image, sitk.Image]:
    image = sitk.ReadImage(str(phantom_root / "imagesTr" / f"phantom_{index:03d}_0000.nii.gz"))
    label = sitk.ReadImage(str(phantom_root / "labelsTr" / f"phantom_{index:03d}.nii.gz"))
    return image, label


def with_array(image: sitk.Image, array: np.ndarray) -> sitk.Image:
    out = sitk.GetImageFromArray(array)
    out.CopyInformation(image)
    return out


def write_bad_files(phantom_root: Path, folder: Path) -> dict[str, tuple[Path, str]]:
    """One file per kind of bad image: {kind: (path, what the error must say)}."""
    folder.mkdir(parents=True, exist_ok=True)
    image, _ = phantom_pair(phantom_root, 0)
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
    sitk.WriteImage(with_array(image, nan), str(add("nan", "nan.mha", "NaN or Inf")))
    constant = with_array(image, np.full_like(array, 7.0))
    sitk.WriteImage(constant, str(add("constant", "flat_value.nii.gz", "image is constant")))
    return bad


READER_ERRORS = ("missing", "garbage", "garbage_mha", "truncated_gz", "truncated_nii")
READER_ERRORS += ("2d", "4d")


def make_broken_folder(phantom_root: Path, files: Path, root: Path) -> Path:
    """A folder-layout dataset in ``root`` (any format per case): two good cases and every
    kind of bad (their files first written to ``files``)."""
    root.mkdir()
    for i in range(2):
        image, label = phantom_pair(phantom_root, i)
        sitk.WriteImage(image, str(root / f"good{i}_image.nii.gz"))
        sitk.WriteImage(label, str(root / f"good{i}_labels.nii.gz"))
    _, label = phantom_pair(phantom_root, 0)  # write_bad_files makes case 0's image bad
    for kind, (path, _) in write_bad_files(phantom_root, files).items():
        if kind == "missing":
            continue
        suffix = "".join(path.suffixes)
        shutil.copy(path, root / f"{kind}_image{suffix}")
        # Labels in the image's format (the folder layout pairs names), readable.
        label_suffix = ".nii" if suffix == ".nii" else ".mha" if suffix == ".mha" else ".nii.gz"
        sitk.WriteImage(label, str(root / f"{kind}_labels{label_suffix}"))
    image, label = phantom_pair(phantom_root, 2)
    moved = sitk.Image(label)
    moved.SetSpacing(tuple(s * 1.5 for s in label.GetSpacing()))
    sitk.WriteImage(image, str(root / "geometry_image.nii.gz"))
    sitk.WriteImage(moved, str(root / "geometry_labels.nii.gz"))
    unknown = sitk.GetArrayFromImage(label)
    unknown[0, 0, :3] = 9
    sitk.WriteImage(image, str(root / "unknown_image.nii.gz"))
    sitk.WriteImage(with_array(label, unknown), str(root / "unknown_labels.nii.gz"))
    return root


LABEL_MAP = "1:1,2:2,3:3,4:4,5:5"  # the phantom's labels are ours
FOLDER = {"data.layout": "folder", "data.label_map": LABEL_MAP, "data.image_glob": "*_image.*"}
