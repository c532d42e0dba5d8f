"""The built-in phantom dataset: generated once into the cache, in nnU-Net raw layout.

``write_dataset`` writes ``imagesTr/<case>_0000.nii.gz``, ``labelsTr/<case>.nii.gz``, the
truth the case drew beside its label (``labelsTr/<case>_truth.json``, ``truth.py``),
``tissuesTr/<case>.nii.gz`` (the tissue of every voxel, ``tissues.py``) and
``dataset.json`` (label names and a train/validation/test split in the paper's proportions).
"""

from __future__ import annotations

import concurrent.futures
import itertools
import json
import multiprocessing
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from lumbar_jax.data import io, splits
from lumbar_jax.data.phantom import preview, render, tissues, truth
from lumbar_jax.labels import LABEL_NAMES


def _render_with_truth(seed: int, matrix: int) -> tuple[render.RenderedCase, dict]:
    case = render.render_case(seed, matrix)
    return case, truth.case_truth(case)


def cases(
    num_cases: int, seed: int, matrix: int
) -> Iterator[tuple[str, render.RenderedCase, dict]]:
    """(case id, rendered case, its truth) of each case of a phantom dataset, in order.

    Cases are drawn in worker processes, one per CPU core (each case has its own seed, so
    the result does not depend on how many): drawing is most of the generation's time.
    """
    seeds = [int(s) for s in np.random.SeedSequence(seed).generate_state(num_cases)]
    workers = min(os.cpu_count() or 1, 8, num_cases)
    if workers <= 1:
        drawn = map(_render_with_truth, seeds, itertools.repeat(matrix))
        yield from ((f"phantom_{i:03d}", *item) for i, item in enumerate(drawn))
        return
    # "spawn": the caller may have started JAX's threads, which a fork would copy broken.
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(workers, mp_context=context) as pool:
        drawn = pool.map(_render_with_truth, seeds, itertools.repeat(matrix))
        yield from ((f"phantom_{i:03d}", *item) for i, item in enumerate(drawn))


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
    (tmp / "tissuesTr").mkdir(parents=True)
    case_ids = []
    for case_id, case, case_truth in cases(num_cases, seed, matrix):
        spacing = case.spacing_dhw
        rotation = render.tilt(case.acquisition.tilt_deg)
        origin = (-60.0, -100.0, 120.0)
        io.write_image(
            io.canonical_image(case.image_dhw, spacing, origin, rotation),
            tmp / "imagesTr" / f"{case_id}_0000.nii.gz",
        )
        io.write_image(
            io.canonical_image(case.label_dhw, spacing, origin, rotation),
            tmp / "labelsTr" / f"{case_id}.nii.gz",
        )
        truth.write_truth(case_truth, tmp / "labelsTr" / f"{case_id}{truth.SUFFIX}")
        io.write_image(
            io.canonical_image(case.tissue_dhw, spacing, origin, rotation),
            tmp / "tissuesTr" / f"{case_id}.nii.gz",
        )
        if preview_dir is not None:
            preview.write_previews(
                case.image_dhw, case.label_dhw, spacing, preview_dir, case_id, preview_dpi
            )
        case_ids.append(case_id)
    dataset = {
        "name": "lumbar_jax_phantom",
        "description": f"Synthetic sagittal T2 lumbar series, seed {seed}, matrix {matrix}.",
        "channel_names": {"0": "T2"},
        "labels": {name: i for i, name in enumerate(LABEL_NAMES)},
        # tissuesTr/<case>.nii.gz: the tissue of every voxel (data.synthesis="tissues").
        "tissues": list(tissues.NAMES),
        "numTraining": num_cases,
        "file_ending": ".nii.gz",
        "split": splits.split_case_ids(case_ids, seed),
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


def write_previews_only(
    preview_dir: str | Path, num_cases: int, seed: int = 0, matrix: int = 320, dpi: int = 100
) -> list[Path]:
    """Draws the cases of a phantom dataset and writes only their previews."""
    written = []
    for case_id, case, _ in cases(num_cases, seed, matrix):
        written += preview.write_previews(
            case.image_dhw, case.label_dhw, case.spacing_dhw, preview_dir, case_id, dpi
        )
    return written


# Part of the cache folder's name: bump it when the generator's output changes.
DATASET_VERSION = 4


def phantom_root(cache_dir: str | Path, num_cases: int, seed: int, matrix: int) -> Path:
    """Folder of the built-in phantom dataset for these parameters."""
    return Path(cache_dir) / f"phantom-v{DATASET_VERSION}-n{num_cases}-s{seed}-m{matrix}"


def ensure_phantom(cache_dir: str | Path, num_cases: int, seed: int, matrix: int) -> Path:
    """Returns the phantom dataset folder, generating it on first use."""
    root = phantom_root(cache_dir, num_cases, seed, matrix)
    if not (root / "dataset.json").is_file():
        print(f"Generating {num_cases} phantom cases into {root} ...", flush=True)
        write_dataset(root, num_cases, seed, matrix)
    return root
