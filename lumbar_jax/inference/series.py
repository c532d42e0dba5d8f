"""Finding the series to predict among files and folders, and naming their outputs."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import SimpleITK as sitk

IMAGE_SUFFIXES = (".nii.gz", ".nii", ".mha", ".mhd", ".nrrd", ".nhdr")


def image_suffix(path: Path) -> str:
    """The image file suffix of ``path`` ('.nii.gz', '.mha', ...), or '' if none."""
    name = path.name.lower()
    return next((s for s in IMAGE_SUFFIXES if name.endswith(s)), "")


def _is_dicom_series(folder: Path) -> bool:
    # GDCM warns on stderr for every folder without DICOM files; here that is no news.
    shown = sitk.ProcessObject.GetGlobalWarningDisplay()
    sitk.ProcessObject.SetGlobalWarningDisplay(False)
    try:
        return bool(sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder)))
    finally:
        sitk.ProcessObject.SetGlobalWarningDisplay(shown)


def find_series(inputs: Iterable[str | Path]) -> list[Path]:
    """Every series named by ``inputs``: image files, DICOM series folders, and folders of them.

    A folder that holds DICOM files is one series; any other folder is searched (recursively)
    for image files and DICOM series folders.

    Raises:
      FileNotFoundError: for an input that does not exist or holds no series.
    """
    found: list[Path] = []
    for item in inputs:
        path = Path(item)
        if not path.exists():
            raise FileNotFoundError(f"{path}: no such file or folder.")
        if path.is_file():
            found.append(path)
            continue
        if _is_dicom_series(path):
            found.append(path)
            continue
        before = len(found)
        for root, dirs, files in os.walk(path):
            dirs.sort()
            root_path = Path(root)
            images = sorted(root_path / f for f in files if image_suffix(Path(f)))
            found.extend(images)
            others = [f for f in files if not image_suffix(Path(f))]
            if others and root_path != path and _is_dicom_series(root_path):
                found.append(root_path)
                dirs.clear()
        if len(found) == before:
            raise FileNotFoundError(
                f"{path}: no image files ({', '.join(IMAGE_SUFFIXES)}) or DICOM series inside."
            )
    return found


def output_names(series: list[Path]) -> list[str]:
    """A distinct output name per series: the file name without suffix, or the folder name."""
    names, seen = [], {}
    for path in series:
        suffix = image_suffix(path)
        base = path.name[: len(path.name) - len(suffix)] if suffix else path.name
        count = seen.get(base, 0)
        seen[base] = count + 1
        names.append(base if count == 0 else f"{base}_{count + 1}")
    return names
