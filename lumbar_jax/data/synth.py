"""Synthetic sagittal T2-weighted lumbar spine series with the five labelled structures.

Each case's anatomy (``phantom.py``) is drawn in patient millimetres, one sagittal plane at a
time; this module adds the acquisition: thick slices with partial-volume averaging, a bias
field, Rician noise, a per-scanner intensity scale and tilted direction cosines.

Usage:
  python -m lumbar_jax.data.synth --output DIR --cases 80 --seed 0

writes the nnU-Net raw layout (``imagesTr/<case>_0000.nii.gz``, ``labelsTr/<case>.nii.gz``,
``dataset.json`` with label names and a train/validation/test split).
"""

from __future__ import annotations

import json
import math
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lumbar_jax import LABEL_NAMES
from lumbar_jax.data import io
from lumbar_jax.data.phantom import Phantom

SPLIT_FRACTIONS = (57 / 80, 12 / 80)  # paper: 57 train / 12 validation / 11 test


@dataclass
class Acquisition:
    num_slices: int
    slice_spacing: float
    slice_thickness: float
    matrix: int
    pixel: float
    scale: float
    noise: float
    tilt_deg: float


def _random_acquisition(rng: np.random.Generator, matrix: int) -> Acquisition:
    thickness = rng.uniform(3.5, 5.0)
    fov = rng.uniform(260.0, 320.0)
    return Acquisition(
        num_slices=int(rng.integers(12, 21)),
        slice_spacing=thickness * rng.uniform(1.05, 1.1),
        slice_thickness=thickness,
        matrix=matrix,
        pixel=fov / matrix,
        scale=rng.uniform(300.0, 3000.0),
        noise=rng.uniform(0.015, 0.04),
        tilt_deg=rng.uniform(-6.0, 6.0),
    )


def render_case(seed: int, matrix: int = 320) -> tuple[np.ndarray, np.ndarray, Acquisition]:
    """Draws one case.

    Args:
      seed: the case's seed; the same seed gives the same case.
      matrix: in-plane matrix (the field of view is drawn, so the pixel size varies).

    Returns:
      (image_dhw int16, label_dhw uint8, acquisition), in canonical layout.
    """
    rng = np.random.default_rng(seed)
    acq = _random_acquisition(rng, matrix)
    fov = acq.pixel * matrix
    phantom = Phantom(rng, fov)
    coords = (np.arange(matrix) + 0.5) * acq.pixel
    y, z = np.meshgrid(coords, coords, indexing="ij")
    centre_x = (np.arange(acq.num_slices) - (acq.num_slices - 1) / 2) * acq.slice_spacing
    centre_x = centre_x + rng.uniform(-3.0, 3.0)
    image = np.zeros((acq.num_slices, matrix, matrix), np.float32)
    label = np.zeros((acq.num_slices, matrix, matrix), np.uint8)
    for d, xc in enumerate(centre_x):
        # Partial volume: the slice integrates tissue across its thickness.
        offsets = (-0.33, 0.0, 0.33)
        for k, off in enumerate(offsets):
            inten, lab = phantom.plane(xc + off * acq.slice_thickness, y, z)
            image[d] += inten / len(offsets)
            if k == 1:
                label[d] = lab
    # Smooth multiplicative bias field, as from receive coils.
    yy = (y / fov - 0.5)[None]
    zz = (z / fov - 0.5)[None]
    c = rng.uniform(-0.35, 0.35, size=5)
    bias = np.exp(c[0] * yy + c[1] * zz + c[2] * yy * zz + c[3] * yy**2 + c[4] * zz**2)
    image = image * bias
    # Rician noise: magnitude of a complex signal with Gaussian noise in both channels.
    real = image + acq.noise * rng.standard_normal(image.shape, dtype=np.float32)
    imag = acq.noise * rng.standard_normal(image.shape, dtype=np.float32)
    image = np.sqrt(real**2 + imag**2) * acq.scale
    return np.clip(np.round(image), 0, 32767).astype(np.int16), label, acq


def _tilt(deg: float) -> np.ndarray:
    """Rotation about the left-right axis (LPS x), in LPS coordinates."""
    t = math.radians(deg)
    return np.array(
        [[1.0, 0.0, 0.0], [0.0, math.cos(t), -math.sin(t)], [0.0, math.sin(t), math.cos(t)]]
    )


def split_case_ids(case_ids: list[str], seed: int) -> dict[str, list[str]]:
    """Random train/validation/test split in the paper's proportions."""
    order = np.random.default_rng(seed).permutation(len(case_ids))
    n = len(case_ids)
    n_train = max(1, round(n * SPLIT_FRACTIONS[0]))
    n_val = max(1, round(n * SPLIT_FRACTIONS[1])) if n >= 3 else 0
    ids = [case_ids[i] for i in order]
    return {
        "train": sorted(ids[:n_train]),
        "validation": sorted(ids[n_train : n_train + n_val]),
        "test": sorted(ids[n_train + n_val :]),
    }


def write_dataset(
    output: str | Path, num_cases: int = 80, seed: int = 0, matrix: int = 320
) -> Path:
    """Writes a phantom dataset in nnU-Net raw layout; returns its folder.

    The dataset is written to a temporary folder and renamed into place, so an interrupted
    run never leaves a folder that looks complete.
    """
    output = Path(output)
    if (output / "dataset.json").is_file():
        raise FileExistsError(f"{output} already holds a dataset; choose an empty folder.")
    # Per-process temporary folder: two processes may generate the same default dataset.
    tmp = output.with_name(f".tmp-{output.name}-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "imagesTr").mkdir(parents=True)
    (tmp / "labelsTr").mkdir(parents=True)
    case_ids = []
    seeds = np.random.SeedSequence(seed).generate_state(num_cases)
    for i in range(num_cases):
        case_id = f"phantom_{i:03d}"
        image, label, acq = render_case(int(seeds[i]), matrix)
        spacing = (acq.slice_spacing, acq.pixel, acq.pixel)
        rotation = _tilt(acq.tilt_deg)
        origin = (-60.0, -100.0, 120.0)
        io.write_image(
            io.canonical_image(image, spacing, origin, rotation),
            tmp / "imagesTr" / f"{case_id}_0000.nii.gz",
        )
        io.write_image(
            io.canonical_image(label, spacing, origin, rotation),
            tmp / "labelsTr" / f"{case_id}.nii.gz",
        )
        case_ids.append(case_id)
    dataset = {
        "name": "lumbar_jax_phantom",
        "description": f"Synthetic sagittal T2 lumbar series, seed {seed}, matrix {matrix}.",
        "channel_names": {"0": "T2"},
        "labels": {name: i for i, name in enumerate(LABEL_NAMES)},
        "numTraining": num_cases,
        "file_ending": ".nii.gz",
        "split": split_case_ids(case_ids, seed),
    }
    (tmp / "dataset.json").write_text(json.dumps(dataset, indent=2) + "\n")
    output.parent.mkdir(parents=True, exist_ok=True)
    try:
        tmp.rename(output)
    except OSError:
        if not (output / "dataset.json").is_file():
            raise
        shutil.rmtree(tmp)  # another process finished the same dataset first
    return output


def main(argv: list[str] | None = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", required=True, help="folder to create")
    parser.add_argument("--cases", type=int, default=80)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--matrix", type=int, default=320, help="in-plane matrix")
    args = parser.parse_args(argv)
    path = write_dataset(args.output, args.cases, args.seed, args.matrix)
    print(f"Wrote {args.cases} phantom cases to {path}")


if __name__ == "__main__":
    main()
