"""Prepared cases: read, canonicalized, windowed and mapped to our labels, kept for reuse.

Each process keeps the cases it prepared in memory and, with ``data.preprocessed_cache``, on
disk as ``.npz`` files keyed by the source files' path, size and modification time and the
preprocessing settings, so later epochs, later runs and grain worker processes skip reading
and windowing the raw files.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import re
import zipfile
from collections.abc import Sequence
from pathlib import Path

import grain
import ml_collections
import numpy as np

from lumbar_jax import files
from lumbar_jax.data import io, transforms
from lumbar_jax.data.datasets import Case, Dataset, default_cache_dir
from lumbar_jax.data.phantom import tissues


@dataclasses.dataclass
class PreparedCase:
    """A case read, canonicalized, windowed and mapped to our labels (the cached form)."""

    case_id: str
    image_dhw: np.ndarray
    label_dhw: np.ndarray
    spacing_dhw: tuple[float, float, float]
    labeled_c: np.ndarray
    # data.synthesis == "tissues": the case's tissue map on the same grid, if it has one.
    tissue_dhw: np.ndarray | None = None
    # data.crop == "coarse": the stored coarse prediction on the same grid (not disk-cached).
    coarse_dhw: np.ndarray | None = None


def read_label(case: Case, dataset: Dataset, image: io.Volume) -> np.ndarray:
    """A case's label map on its image's canonical grid, mapped to our values (uint8).

    Raises:
      ValueError: naming the file, for geometry mismatches or label values the dataset does
        not declare.
    """
    label = io.read_canonical(case.label_path)
    if image.array_dhw.shape != label.array_dhw.shape or not np.allclose(
        image.spacing_dhw, label.spacing_dhw, rtol=1e-3
    ):
        raise ValueError(
            f"{case.label_path}: label grid {label.array_dhw.shape} @ {label.spacing_dhw} mm "
            f"differs from image {image.array_dhw.shape} @ {image.spacing_dhw} mm."
        )
    raw = np.asarray(label.array_dhw)
    if not np.issubdtype(raw.dtype, np.integer):
        if not np.array_equal(raw, np.round(raw)):
            raise ValueError(f"{case.label_path}: label values are not integers.")
        raw = raw.astype(np.int64)
    values = np.unique(raw)
    label_map = dataset.label_map_of(case)
    unknown = sorted(set(values.tolist()) - set(label_map))
    if unknown:
        raise ValueError(
            f"{case.label_path}: label values {unknown} are not declared; "
            f"known values: {sorted(label_map)}."
        )
    lut = np.zeros(int(values.max()) + 1, np.uint8)
    for src, dst in label_map.items():
        if 0 <= src < lut.size:
            lut[src] = dst
    return lut[raw]


def read_tissue(case: Case, image: io.Volume) -> np.ndarray:
    """A case's tissue map on its image's canonical grid (uint8, ``tissues.NAMES``).

    Raises:
      ValueError: naming the file, for a grid that differs from the image's or ids that are
        no tissue.
    """
    tissue = io.read_canonical(case.tissue_path)
    if tissue.array_dhw.shape != image.array_dhw.shape:
        raise ValueError(
            f"{case.tissue_path}: tissue map grid {tissue.array_dhw.shape} differs from image "
            f"{image.array_dhw.shape}."
        )
    values = np.asarray(tissue.array_dhw)
    if values.min() < 0 or values.max() >= tissues.NUM_TISSUES:
        raise ValueError(
            f"{case.tissue_path}: tissue ids {values.min()}..{values.max()} outside "
            f"0..{tissues.NUM_TISSUES - 1}."
        )
    return values.astype(np.uint8)


def prepare_case(
    case: Case,
    dataset: Dataset,
    window_percentiles: Sequence[float] = (0.5, 99.5),
    with_tissue: bool = False,
) -> PreparedCase:
    """Reads one case and brings it to the canonical, windowed, label-mapped form.

    Args:
      case: the case's files.
      dataset: its dataset (label map, labelled classes).
      window_percentiles: the automatic window.
      with_tissue: also read the case's tissue map, when it has one.

    Raises:
      ValueError: naming the file, for geometry mismatches or label values the dataset does
        not declare.
    """
    image = io.read_canonical(case.image_path)
    tissue = read_tissue(case, image) if with_tissue and case.tissue_path else None
    return PreparedCase(
        case.case_id,
        transforms.auto_window(image.array_dhw, window_percentiles, case.image_path),
        read_label(case, dataset, image),
        image.spacing_dhw,
        np.asarray(dataset.labeled_of(case), bool),
        tissue,
    )


# Part of every cache key: bump it when prepare_case's output changes for the same inputs.
CACHE_FORMAT = 2


def _file_identity(path: Path | None) -> list:
    if path is None:
        return [None]
    stat = Path(path).stat()
    return [str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns]


def cache_path(
    cache_dir: Path,
    case: Case,
    dataset: Dataset,
    window_percentiles: Sequence[float],
    with_tissue: bool = False,
) -> Path:
    """Where a prepared case is cached: a name from its id and a hash of all it depends on.

    The hash covers both files' resolved path, size and modification time, the window
    percentiles and the dataset's label map, so editing a file or a setting misses the cache
    instead of returning stale data.
    """
    key = json.dumps(
        [
            CACHE_FORMAT,
            _file_identity(case.image_path),
            _file_identity(case.label_path),
            _file_identity(case.tissue_path if with_tissue else None),
            [float(p) for p in window_percentiles],
            sorted(dataset.label_map_of(case).items()),
            list(dataset.labeled_of(case)),
        ]
    )
    digest = hashlib.sha256(key.encode()).hexdigest()[:24]
    stem = re.sub(r"[^A-Za-z0-9_.-]", "_", case.case_id)[:80]
    return Path(cache_dir) / f"{stem}-{digest}.npz"


def save_prepared(path: Path, prepared: PreparedCase) -> None:
    """Writes a prepared case atomically: a reader sees the whole file or none.

    Uncompressed: the windowed image is float noise that barely compresses, and loading must
    stay far cheaper than the read it replaces.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    with files.atomic_path(path) as tmp, tmp.open("wb") as f:
        np.savez(
            f,
            case_id=np.array(prepared.case_id),
            image_dhw=prepared.image_dhw,
            label_dhw=prepared.label_dhw,
            spacing_dhw=np.asarray(prepared.spacing_dhw, np.float64),
            labeled_c=prepared.labeled_c,
            **({} if prepared.tissue_dhw is None else {"tissue_dhw": prepared.tissue_dhw}),
        )


def load_prepared(path: Path) -> PreparedCase | None:
    """A cached prepared case, or None when the file is missing, truncated or inconsistent."""
    try:
        with np.load(path, allow_pickle=False) as z:
            prepared = PreparedCase(
                str(z["case_id"]),
                z["image_dhw"],
                z["label_dhw"],
                tuple(float(v) for v in z["spacing_dhw"]),
                z["labeled_c"],
                z["tissue_dhw"] if "tissue_dhw" in z.files else None,
            )
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return None
    if (
        prepared.image_dhw.ndim != 3
        or prepared.image_dhw.shape != prepared.label_dhw.shape
        or len(prepared.spacing_dhw) != 3
    ):
        return None
    return prepared


def prepared_cache_dir(data: ml_collections.ConfigDict) -> Path | None:
    """The disk cache of prepared cases, or None when ``data.preprocessed_cache`` is off."""
    if not data.preprocessed_cache:
        return None
    return Path(data.cache_dir or default_cache_dir()) / "prepared"


class CaseSource(grain.sources.RandomAccessDataSource):
    """Random access to prepared cases.

    Each process prepares a case once and keeps it in memory; with a ``cache_dir`` it first
    looks on disk, and writes what it had to prepare, so that other processes and later runs
    only load an ``.npz``. A cache file that does not load is prepared again and rewritten.
    """

    def __init__(
        self,
        cases: Sequence[Case],
        dataset: Dataset,
        window_percentiles: Sequence[float],
        cache_dir: str | Path | None = None,
        coarse_dir: str | Path | None = None,
        with_tissue: bool = False,
    ):
        self._cases = list(cases)
        self._with_tissue = with_tissue
        self._dataset = dataset
        self._window = tuple(window_percentiles)
        self._cache_dir = Path(cache_dir) if cache_dir else None
        self._coarse_dir = Path(coarse_dir) if coarse_dir else None
        self._cache: dict[int, PreparedCase] = {}

    def __len__(self) -> int:
        return len(self._cases)

    def __getitem__(self, index: int) -> PreparedCase:
        if index not in self._cache:
            prepared = self._prepare(self._cases[index])
            if self._coarse_dir is not None:
                prepared.coarse_dhw = read_coarse_prediction(self._coarse_dir, prepared)
            self._cache[index] = prepared
        return self._cache[index]

    def _prepare(self, case: Case) -> PreparedCase:
        if self._cache_dir is None:
            return prepare_case(case, self._dataset, self._window, self._with_tissue)
        path = cache_path(self._cache_dir, case, self._dataset, self._window, self._with_tissue)
        prepared = load_prepared(path)
        if prepared is None:
            prepared = prepare_case(case, self._dataset, self._window, self._with_tissue)
            try:
                save_prepared(path, prepared)
            except OSError as e:
                # A full or read-only disk costs speed, not the run.
                logging.getLogger(__name__).warning("Not caching %s: %s", case.case_id, e)
        return prepared

    def __repr__(self) -> str:
        return f"CaseSource({len(self._cases)} cases from {self._dataset.root})"


def read_coarse_prediction(folder: Path, prepared: PreparedCase) -> np.ndarray:
    """A case's stored coarse prediction (``predict --coarse_only --data``), canonical.

    Raises:
      ValueError: naming the file, when it is missing or not on the case's grid.
    """
    path = Path(folder) / f"{prepared.case_id}.nii.gz"
    if not path.is_file():
        raise ValueError(
            f"{path}: no coarse prediction for case {prepared.case_id} (data.crop='coarse'; "
            "write them with python -m lumbar_jax.predict --coarse_only --data=...)."
        )
    volume = io.read_canonical(path)
    if volume.array_dhw.shape != prepared.label_dhw.shape:
        raise ValueError(
            f"{path}: grid {volume.array_dhw.shape} differs from its case's "
            f"{prepared.label_dhw.shape}."
        )
    return np.asarray(volume.array_dhw, np.uint8)
