"""Synthetic sagittal T2-weighted lumbar spine series with the five labelled structures.

Each case's anatomy (``phantom.py``) is drawn in patient millimetres, one sagittal plane at a
time; this module adds the acquisition: thick slices with partial-volume averaging, a bias
field, Rician noise, a per-scanner intensity scale and tilted direction cosines.

Usage:
  python -m lumbar_jax.data.synth --output DIR --cases 80 --seed 0 [--preview PREVIEW_DIR]

writes the nnU-Net raw layout (``imagesTr/<case>_0000.nii.gz``, ``labelsTr/<case>.nii.gz``,
``dataset.json`` with label names and a train/validation/test split). ``--preview`` writes, per
case, ``<case>_mid.png`` (the mid-sagittal slice) and ``<case>_para.png`` (a para-sagittal
slice through the foramina), each without and with the label overlay, in physical aspect
ratio (``--preview-dpi`` sets their size); with ``--preview`` alone the cases are drawn and
previewed but not written.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage

from lumbar_jax import LABEL_COLOURS, LABEL_NAMES
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
    # The in-plane point spread of a finite k-space matrix: edges spread over about a pixel
    # instead of the drawing's hard steps.
    image = ndimage.gaussian_filter(image, sigma=(0.0, 0.4, 0.4))
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


def _cases(num_cases: int, seed: int, matrix: int):
    """(case id, image, label, acquisition) of each case of a phantom dataset, in order."""
    seeds = np.random.SeedSequence(seed).generate_state(num_cases)
    for i in range(num_cases):
        yield (f"phantom_{i:03d}", *render_case(int(seeds[i]), matrix))


def write_dataset(
    output: str | Path,
    num_cases: int = 80,
    seed: int = 0,
    matrix: int = 320,
    preview_dir: str | Path | None = None,
    preview_dpi: int = 100,
) -> Path:
    """Writes a phantom dataset in nnU-Net raw layout; returns its folder.

    The dataset is written to a temporary folder and renamed into place, so an interrupted
    run never leaves a folder that looks complete.

    Args:
      output: the dataset folder to create.
      num_cases: number of series.
      seed: dataset seed; each case's seed derives from it.
      matrix: in-plane matrix of every series.
      preview_dir: when given, PNG previews of each case go there (``write_previews``).
      preview_dpi: their resolution (100: about 350 pixels per panel).
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
    for case_id, image, label, acq in _cases(num_cases, seed, matrix):
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
        if preview_dir is not None:
            write_previews(image, label, spacing, preview_dir, case_id, preview_dpi)
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


def preview_slices(label_dhw: np.ndarray) -> dict[str, int]:
    """The slices a person looks at first: mid-sagittal and para-sagittal through a foramen.

    Mid-sagittal is the slice with the most spinal canal; para-sagittal the one with the most
    foramen (the structures tell, whatever the slice count and the centring).
    """
    counts = np.stack([(label_dhw == k).sum(axis=(1, 2)) for k in range(len(LABEL_NAMES))])
    canal, foramen = LABEL_NAMES.index("spinal_canal"), LABEL_NAMES.index("intervertebral_foramen")
    return {"mid": int(counts[canal].argmax()), "para": int(counts[foramen].argmax())}


def write_previews(
    image_dhw: np.ndarray,
    label_dhw: np.ndarray,
    spacing_dhw: tuple[float, float, float],
    out_dir: str | Path,
    case_id: str,
    dpi: int = 100,
) -> list[Path]:
    """PNG previews of one case: ``<case>_mid.png`` and ``<case>_para.png``.

    Each shows the slice as acquired (left) and with the label overlay (right), superior up and
    anterior to the left as on a scanner console, in physical proportions (pixels drawn at
    their size in mm). The grey scale is the pipeline's automatic window.

    Returns:
      The files written.
    """
    # Matplotlib's object interface with the Agg canvas: no pyplot, no display, no global
    # state, safe in worker processes.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.colors import ListedColormap
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    from lumbar_jax.data.transforms import auto_window

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    image = auto_window(image_dhw)
    _, h, w = image.shape
    extent = (0.0, w * spacing_dhw[2], h * spacing_dhw[1], 0.0)
    colours = ListedColormap(LABEL_COLOURS)
    written = []
    for name, d in preview_slices(label_dhw).items():
        height_in = h * spacing_dhw[1] / (w * spacing_dhw[2]) * 3.4
        fig = Figure(figsize=(7.0, height_in + 0.5), dpi=dpi)
        FigureCanvasAgg(fig)
        axes = fig.subplots(1, 2)
        for ax, overlay in zip(axes, (False, True), strict=True):
            ax.imshow(image[d], cmap="gray", vmin=0, vmax=1, extent=extent, interpolation="none")
            if overlay:
                ax.imshow(
                    label_dhw[d],
                    cmap=colours,
                    vmin=0,
                    vmax=len(LABEL_COLOURS) - 1,
                    alpha=0.45,
                    extent=extent,
                    interpolation="none",
                )
            ax.set_axis_off()
        what = "mid-sagittal" if name == "mid" else "para-sagittal (foramina)"
        fig.suptitle(f"{case_id}, slice {d + 1}/{image.shape[0]}, {what}", fontsize=9)
        fig.legend(
            handles=[
                Patch(color=c, label=n.replace("_", " "))
                for c, n in zip(LABEL_COLOURS[1:], LABEL_NAMES[1:], strict=True)
            ],
            loc="lower center",
            ncol=5,
            fontsize=6,
            frameon=False,
        )
        fig.subplots_adjust(left=0.01, right=0.99, top=0.93, bottom=0.07, wspace=0.03)
        path = out_dir / f"{case_id}_{name}.png"
        fig.savefig(path, dpi=dpi)
        written.append(path)
    return written


def write_previews_only(
    preview_dir: str | Path, num_cases: int, seed: int = 0, matrix: int = 320, dpi: int = 100
) -> list[Path]:
    """Draws the cases of a phantom dataset and writes only their previews."""
    written = []
    for case_id, image, label, acq in _cases(num_cases, seed, matrix):
        spacing = (acq.slice_spacing, acq.pixel, acq.pixel)
        written += write_previews(image, label, spacing, preview_dir, case_id, dpi)
    return written


def main(argv: list[str] | None = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", help="dataset folder to create")
    parser.add_argument("--preview", help="folder for PNG previews of each case")
    parser.add_argument("--preview-dpi", type=int, default=100, help="preview resolution")
    parser.add_argument("--cases", type=int, default=80)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--matrix", type=int, default=320, help="in-plane matrix")
    args = parser.parse_args(argv)
    if not args.output and not args.preview:
        parser.error("give --output, --preview or both.")
    if args.output:
        path = write_dataset(
            args.output, args.cases, args.seed, args.matrix, args.preview, args.preview_dpi
        )
        print(f"Wrote {args.cases} phantom cases to {path}")
    else:
        write_previews_only(args.preview, args.cases, args.seed, args.matrix, args.preview_dpi)
    if args.preview:
        print(f"Wrote previews of {args.cases} cases to {args.preview}")


if __name__ == "__main__":
    main()
