"""Writes a volume as a DICOM series (one file per slice), with patient identifiers set."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk

PATIENT_NAME = "Testperson^Secretia"
PATIENT_ID = "PID-8675309"


def write_series(image: sitk.Image, folder: Path) -> Path:
    """Writes ``image`` (3D, any direction) as an MR series of int16 slices into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    image = sitk.Cast(sitk.RescaleIntensity(image, 0, 2000), sitk.sitkInt16)
    direction = np.asarray(image.GetDirection()).reshape(3, 3)
    uid = "1.2.826.0.1.3680043.2.1125." + time.strftime("%Y%m%d%H%M%S")
    tags = {
        "0010|0010": PATIENT_NAME,
        "0010|0020": PATIENT_ID,
        "0010|0030": "19700101",
        "0008|0060": "MR",
        "0020|000d": uid + ".1",
        "0020|000e": uid + ".2",
        "0008|103e": "T2 SAG",
        # Row and column directions: the first two columns of the direction matrix.
        "0020|0037": "\\".join(f"{v:.6f}" for v in (*direction[:, 0], *direction[:, 1])),
        "0018|0050": f"{image.GetSpacing()[2]:.4f}",
    }
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    for k in range(image.GetDepth()):
        piece = image[:, :, k]
        for tag, value in tags.items():
            piece.SetMetaData(tag, value)
        position = image.TransformIndexToPhysicalPoint((0, 0, k))
        piece.SetMetaData("0020|0032", "\\".join(f"{v:.5f}" for v in position))
        piece.SetMetaData("0020|0013", str(k + 1))
        piece.SetMetaData("0008|0018", f"{uid}.3.{k + 1}")
        writer.SetFileName(str(folder / f"slice{k:03d}.dcm"))
        writer.Execute(piece)
    return folder
