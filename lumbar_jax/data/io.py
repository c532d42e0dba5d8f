"""Reading and writing volumes, and the project's canonical orientation.

Canonical layout of every array: ``array_dhw`` with d = slices (patient right to left),
h = superior to inferior, w = anterior to posterior. In SimpleITK terms (DICOM LPS letters
naming where increasing index points) that is x->P, y->I, z->L, i.e. orientation "PIL",
since numpy sees a SimpleITK image as (z, y, x).
"""

from __future__ import annotations

import gzip
import math
import re
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from lumbar_jax import files

CANONICAL_ORIENTATION = "PIL"


class ImageReadError(ValueError):
    """A file that is not a readable 3D image; the message names the file."""


@dataclass
class Volume:
    """A volume in canonical layout and the image it came from.

    Attributes:
      array_dhw: voxel values in canonical layout.
      spacing_dhw: voxel size in mm along (slices, superior-inferior, anterior-posterior).
      reference: the image as read, for writing results back on its exact grid.
    """

    array_dhw: np.ndarray
    spacing_dhw: tuple[float, float, float]
    reference: sitk.Image


def read_image(path: str | Path) -> sitk.Image:
    """Reads a 3D image file or a DICOM series folder.

    Raises:
      ImageReadError: when the path is missing, unreadable or not a single-channel 3D image.
    """
    path = Path(path)
    if not path.exists():
        raise ImageReadError(f"{path}: no such file or folder.")
    try:
        if path.is_dir():
            reader = sitk.ImageSeriesReader()
            series = reader.GetGDCMSeriesIDs(str(path))
            if not series:
                raise ImageReadError(f"{path}: folder holds no DICOM series.")
            if len(series) > 1:
                raise ImageReadError(
                    f"{path}: folder holds {len(series)} DICOM series; point at one series."
                )
            reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(path), series[0]))
            image = reader.Execute()
        else:
            name = path.name.lower()
            if name.endswith(".gz"):
                head, size = _check_gzip_complete(path)
            else:
                with path.open("rb") as f:
                    head = f.read(_NIFTI_HEAD_BYTES)
                size = path.stat().st_size
            if name.endswith((".nii", ".nii.gz")):
                _check_nifti_header(path, head, size)
            if path.suffix.lower() in (".mha", ".mhd"):
                _check_metaimage_header(path)
            image = sitk.ReadImage(str(path))
    except RuntimeError as e:
        first = str(e).strip().splitlines()[-1] if str(e).strip() else "unreadable"
        raise ImageReadError(f"{path}: not a readable image ({first}).") from e
    if image.GetDimension() != 3:
        raise ImageReadError(f"{path}: expected a 3D image, got {image.GetDimension()}D.")
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise ImageReadError(
            f"{path}: expected one channel, got {image.GetNumberOfComponentsPerPixel()}."
        )
    return image


def _check_gzip_complete(path: Path) -> tuple[bytes, int]:
    """(first bytes, uncompressed size) of a gzip file that decompresses to its end.

    ITK reads a truncated .gz without complaint and fills the missing voxels with zeros.
    """
    head, size = b"", 0
    try:
        with gzip.open(path, "rb") as f:
            while chunk := f.read(1 << 22):
                if not size:
                    head = chunk[:_NIFTI_HEAD_BYTES]
                size += len(chunk)
    except (EOFError, OSError, zlib.error) as e:
        raise ImageReadError(f"{path}: truncated or corrupt gzip data ({e}).") from e
    return head, size


# NIfTI-1 headers are 348 bytes (+ 4 of extension flag), NIfTI-2 headers 540 (+ 4).
_NIFTI_HEAD_BYTES = 544


def _check_nifti_header(path: Path, head: bytes, size: int) -> None:
    """Refuses NIfTI headers whose image cannot be in the file.

    ITK trusts the header: dimensions garbled into the tens of thousands make it allocate
    and read for minutes (found by tests/test_fuzz.py), and a file cut short is read with
    zeros in place of the missing voxels. A header ITK would not recognise at all is left
    to ITK to refuse.
    """
    for order in "<>":
        if len(head) >= 348 and np.frombuffer(head[:4], f"{order}i4")[0] == 348:
            dims = np.frombuffer(head[40:56], f"{order}i2").astype(np.int64)
            bitpix = int(np.frombuffer(head[72:74], f"{order}i2")[0])
            offset = float(np.frombuffer(head[108:112], f"{order}f4")[0])
            break
        if len(head) >= 540 and np.frombuffer(head[:4], f"{order}i4")[0] == 540:
            dims = np.frombuffer(head[16:80], f"{order}i8")
            bitpix = int(np.frombuffer(head[14:16], f"{order}i2")[0])
            offset = float(np.frombuffer(head[168:176], f"{order}i8")[0])
            break
    else:
        return
    ndim = int(dims[0])
    if not 1 <= ndim <= 7 or (dims[1 : ndim + 1] < 1).any() or bitpix <= 0:
        shown = dims[1 : max(1, min(ndim, 7)) + 1].tolist()
        raise ImageReadError(
            f"{path}: corrupt NIfTI header ({ndim} dimensions {shown}, {bitpix} bits per voxel)."
        )
    if not np.isfinite(offset) or offset < 0:
        raise ImageReadError(f"{path}: corrupt NIfTI header (data offset {offset}).")
    shape = dims[1 : ndim + 1].tolist()
    needed = int(max(offset, 348)) + math.prod(shape) * bitpix // 8
    if needed > size:
        raise ImageReadError(
            f"{path}: truncated: its header describes {shape} voxels of {bitpix} bits "
            f"({needed} bytes with the header), but it holds {size} bytes."
        )


# Text headers are short; a "header" longer than this is not one.
_META_HEADER_MAX_BYTES = 1 << 16
_META_FIELD = re.compile(rb"^\s*(\w+)\s*[=:](.*)$", re.DOTALL)


def _check_metaimage_header(path: Path) -> None:
    """Refuses MetaImage headers that crash ITK instead of failing.

    ITK's MetaIO segfaults on an NDims that is not a small integer and corrupts its heap on a
    garbled ElementDataFile (both found by tests/test_fuzz.py), so those fields and DimSize
    are checked here first. Anything this does not recognise is left to ITK, which reports
    it as an error.
    """
    with path.open("rb") as f:
        head = f.read(_META_HEADER_MAX_BYTES)
    fields = {}
    for line in head.split(b"\n"):
        # MetaIO takes "=" or ":" between key and value.
        match = _META_FIELD.match(line)
        if match is None:
            continue
        key = match.group(1).decode("ascii")
        fields[key] = match.group(2).strip().decode("ascii", "replace")
        if key == "ElementDataFile":
            break
    data_file = fields.get("ElementDataFile")
    if data_file is not None:
        # MetaIO corrupts its heap on a garbled data-file name (also found by the fuzz test).
        if not data_file.isprintable() or "\ufffd" in data_file:
            raise ImageReadError(f"{path}: corrupt MetaImage header (ElementDataFile).")
        words = data_file.split()
        # LOCAL: data follows the header; LIST and "pattern start stop step": several files.
        external = len(words) == 1 and words[0] not in ("LOCAL", "LIST")
        if external and not (path.parent / words[0]).is_file():
            raise ImageReadError(f"{path}: its data file {path.parent / words[0]} is missing.")
    if "NDims" not in fields:
        return
    ndims_text = fields["NDims"]
    if not (ndims_text.isdigit() and 1 <= int(ndims_text) <= 8):
        raise ImageReadError(f"{path}: corrupt MetaImage header (NDims = {ndims_text[:40]!r}).")
    if "DimSize" in fields:
        sizes = fields["DimSize"].split()
        if len(sizes) != int(ndims_text) or not all(v.isdigit() and int(v) > 0 for v in sizes):
            raise ImageReadError(
                f"{path}: corrupt MetaImage header (DimSize = {fields['DimSize'][:60]!r} "
                f"for NDims = {ndims_text})."
            )


def to_canonical(image: sitk.Image) -> tuple[np.ndarray, tuple[float, float, float]]:
    """Returns (array_dhw, spacing_dhw) of ``image`` in canonical orientation."""
    oriented = sitk.DICOMOrient(image, CANONICAL_ORIENTATION)
    spacing_xyz = oriented.GetSpacing()
    return sitk.GetArrayFromImage(oriented), tuple(float(s) for s in spacing_xyz[::-1])


def read_canonical(path: str | Path) -> Volume:
    """Reads an image and brings it to canonical layout, keeping the original for write-back."""
    image = read_image(path)
    array_dhw, spacing_dhw = to_canonical(image)
    return Volume(array_dhw, spacing_dhw, image)


def from_canonical(array_dhw: np.ndarray, reference: sitk.Image) -> sitk.Image:
    """Puts a canonical-layout array back on the exact grid of ``reference``."""
    canonical_ref = sitk.DICOMOrient(reference, CANONICAL_ORIENTATION)
    expected = canonical_ref.GetSize()[::-1]
    if tuple(array_dhw.shape) != tuple(expected):
        raise ValueError(f"Array shape {array_dhw.shape} does not match the reference {expected}.")
    image = sitk.GetImageFromArray(array_dhw)
    image.CopyInformation(canonical_ref)
    orientation = sitk.DICOMOrientImageFilter.GetOrientationFromDirectionCosines(
        reference.GetDirection()
    )
    restored = sitk.DICOMOrient(image, orientation)
    restored.CopyInformation(reference)
    return restored


def canonical_image(
    array_dhw: np.ndarray,
    spacing_dhw: tuple[float, float, float],
    origin_lps: tuple[float, float, float] = (0.0, 0.0, 0.0),
    rotation_lps: np.ndarray | None = None,
) -> sitk.Image:
    """Wraps a canonical array as an image whose axes point P, I, L (optionally rotated)."""
    image = sitk.GetImageFromArray(array_dhw)
    image.SetSpacing(tuple(float(s) for s in spacing_dhw[::-1]))
    # Columns: where x (anterior->posterior), y (superior->inferior), z (right->left) point.
    axes_lps = np.array([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])
    if rotation_lps is not None:
        axes_lps = rotation_lps @ axes_lps
    image.SetDirection(tuple(axes_lps.ravel()))
    image.SetOrigin(tuple(float(o) for o in origin_lps))
    return image


def write_image(image: sitk.Image, path: str | Path) -> None:
    """Writes an image atomically (a temporary file renamed into place).

    Raises:
      OSError: naming the file, when it cannot be written.
    """
    path = Path(path)
    try:
        with files.atomic_path(path) as tmp:
            sitk.WriteImage(image, str(tmp), useCompression=True)
    except (RuntimeError, OSError) as e:
        reason = getattr(e, "strerror", None) or str(e).strip().splitlines()[-1]
        raise OSError(f"{path}: cannot write image ({reason}).") from e
