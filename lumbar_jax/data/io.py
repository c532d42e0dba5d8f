"""Reading and writing volumes, and the project's canonical orientation.

Canonical layout of every array: ``array_dhw`` with d = slices (patient right to left),
h = superior to inferior, w = anterior to posterior. In SimpleITK terms (DICOM LPS letters
naming where increasing index points) that is x->P, y->I, z->L, i.e. orientation "PIL",
since numpy sees a SimpleITK image as (z, y, x).
"""

from __future__ import annotations

import gzip
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

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
            if path.name.endswith(".gz"):
                _check_gzip_complete(path)
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


def _check_gzip_complete(path: Path) -> None:
    # ITK reads a truncated .gz without complaint and fills the missing voxels with zeros.
    try:
        with gzip.open(path, "rb") as f:
            while f.read(1 << 22):
                pass
    except (EOFError, OSError, zlib.error) as e:
        raise ImageReadError(f"{path}: truncated or corrupt gzip data ({e}).") from e


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
    """Writes an image atomically (a temporary file renamed into place)."""
    path = Path(path)
    tmp = path.with_name(f".tmp-{path.name}")
    try:
        sitk.WriteImage(image, str(tmp), useCompression=True)
        tmp.replace(path)
    except RuntimeError as e:
        tmp.unlink(missing_ok=True)
        raise OSError(f"{path}: cannot write image ({str(e).strip().splitlines()[-1]}).") from e
