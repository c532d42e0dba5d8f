"""The grain input pipeline: cases -> prepared volumes -> random crops/augmentations -> batches.

Every element is a dict:
  image_dhwc: float32 (d, h, w, 1), windowed to [0, 1];
  label_dhw: uint8 (d, h, w), our label values 0..5;
  labeled_c: bool (num_classes,), which classes the case labels (others are ignored by the
    loss and by Dice).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator, Sequence

import grain
import ml_collections
import numpy as np

from lumbar_jax.data import io, transforms
from lumbar_jax.data.datasets import Case, Dataset


@dataclasses.dataclass
class PreparedCase:
    """A case read, canonicalized, windowed and mapped to our labels (the cached form)."""

    case_id: str
    image_dhw: np.ndarray
    label_dhw: np.ndarray
    spacing_dhw: tuple[float, float, float]
    labeled_c: np.ndarray


def prepare_case(
    case: Case, dataset: Dataset, window_percentiles: Sequence[float] = (0.5, 99.5)
) -> PreparedCase:
    """Reads one case and brings it to the canonical, windowed, label-mapped form.

    Raises:
      ValueError: naming the file, for geometry mismatches or label values the dataset does
        not declare.
    """
    image = io.read_canonical(case.image_path)
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
    unknown = sorted(set(values.tolist()) - set(dataset.label_map))
    if unknown:
        raise ValueError(
            f"{case.label_path}: label values {unknown} are not declared; "
            f"known values: {sorted(dataset.label_map)}."
        )
    lut = np.zeros(int(values.max()) + 1, np.uint8)
    for src, dst in dataset.label_map.items():
        if 0 <= src < lut.size:
            lut[src] = dst
    return PreparedCase(
        case.case_id,
        transforms.auto_window(image.array_dhw, window_percentiles, case.image_path),
        lut[raw],
        image.spacing_dhw,
        np.asarray(dataset.labeled_classes, bool),
    )


class CaseSource(grain.sources.RandomAccessDataSource):
    """Random access to prepared cases; each process prepares a case once and keeps it."""

    def __init__(self, cases: Sequence[Case], dataset: Dataset, window_percentiles):
        self._cases = list(cases)
        self._dataset = dataset
        self._window = tuple(window_percentiles)
        self._cache: dict[int, PreparedCase] = {}

    def __len__(self) -> int:
        return len(self._cases)

    def __getitem__(self, index: int) -> PreparedCase:
        if index not in self._cache:
            self._cache[index] = prepare_case(self._cases[index], self._dataset, self._window)
        return self._cache[index]

    def __repr__(self) -> str:
        return f"CaseSource({len(self._cases)} cases from {self._dataset.root})"


class MakeSample(grain.transforms.RandomMap):
    """Crop box, augmentation and resampling of one prepared case to the network's shape."""

    def __init__(self, data: ml_collections.ConfigDict, aug: ml_collections.ConfigDict | None):
        self.out_shape = tuple(data.input_shape)
        self.crop = data.crop
        self.margin = tuple(data.crop_margin_mm)
        self.aug = aug

    def box(self, case: PreparedCase) -> transforms.Box:
        if self.crop == "image":
            return transforms.image_box(case.image_dhw.shape, case.spacing_dhw)
        if self.crop == "label":
            return transforms.label_box(
                case.label_dhw, case.spacing_dhw, self.margin, self.out_shape
            )
        raise ValueError(f"Unknown data.crop {self.crop!r}; choose 'image' or 'label'.")

    def random_map(self, case: PreparedCase, rng: np.random.Generator) -> dict[str, np.ndarray]:
        rotate, translate = 0.0, (0.0, 0.0, 0.0)
        if self.aug is not None:
            if rng.random() < self.aug.rotate_prob:
                rotate = math.radians(rng.uniform(-1, 1) * self.aug.rotate_max_deg)
            if rng.random() < self.aug.translate_prob:
                translate = rng.uniform(-1, 1, 3) * np.asarray(self.aug.translate_max_mm)
        affine = transforms.sampling_affine(
            self.box(case), self.out_shape, case.spacing_dhw, rotate, translate
        )
        image = transforms.resample(case.image_dhw, affine, self.out_shape, is_label=False)
        label = transforms.resample(case.label_dhw, affine, self.out_shape, is_label=True)
        return {
            "image_dhwc": image[..., None].astype(np.float32),
            "label_dhw": label.astype(np.uint8),
            "labeled_c": case.labeled_c,
        }


class _HostShare(grain.MapDataset):
    """One process's share of every global batch: its contiguous block of each batch.

    Element i of host p is element ``k * B + p * b + j`` of the global stream (batch k,
    position j), so the global batch is the same whatever the number of hosts.
    """

    def __init__(self, parent: grain.MapDataset, global_batch: int, index: int, count: int):
        super().__init__(parent)
        self._global, self._local, self._index = global_batch, global_batch // count, index

    def __len__(self) -> int:
        return len(self._parent) // self._global * self._local

    def __getitem__(self, index):
        if isinstance(index, slice):
            return self.slice(index)
        batch, position = divmod(index, self._local)
        return self._parent[batch * self._global + self._index * self._local + position]

    def __str__(self) -> str:
        return f"HostShare(process {self._index}, {self._local} of {self._global})"


def train_iter_dataset(
    config: ml_collections.ConfigDict,
    dataset: Dataset,
    *,
    process_index: int = 0,
    process_count: int = 1,
    start_step: int = 0,
) -> grain.IterDataset:
    """Shuffled (a new order each epoch), augmented, batched, endless training data.

    In a multi-process run each process reads and augments only its own share of every
    global batch of ``config.optim.batch_size``; the batches it yields hold that share.
    ``start_step`` skips that many global batches: the stream depends only on the step, not
    on the number of processes.
    """
    cases = dataset.split(config.data.train_split)
    global_batch = config.optim.batch_size
    if len(cases) < global_batch:
        raise ValueError(
            f"{dataset.root}: {len(cases)} training cases cannot fill a batch of "
            f"{global_batch}; lower --config.optim.batch_size."
        )
    if global_batch % process_count:
        raise ValueError(
            f"Global batch {global_batch} does not split across {process_count} processes."
        )
    source = CaseSource(cases, dataset, config.data.window_percentiles)
    ds = grain.MapDataset.source(source).seed(config.seed).shuffle().repeat()
    # Augment before sharing out, so a sample's random draw depends on its place in the
    # global stream only.
    ds = ds.random_map(MakeSample(config.data, config.aug))
    ds = _HostShare(ds, global_batch, process_index, process_count)
    ds = ds.batch(global_batch // process_count, drop_remainder=True)[start_step:]
    it_ds = ds.to_iter_dataset()
    if config.data.worker_count > 0:
        it_ds = it_ds.mp_prefetch(
            grain.MultiprocessingOptions(num_workers=config.data.worker_count)
        )
    return it_ds


def steps_per_epoch(config: ml_collections.ConfigDict, dataset: Dataset) -> int:
    """Optimizer steps per pass over the training split (partial batches dropped)."""
    return max(1, len(dataset.split(config.data.train_split)) // config.optim.batch_size)


def eval_samples(
    config: ml_collections.ConfigDict, dataset: Dataset, split: str
) -> Iterator[tuple[str, dict[str, np.ndarray]]]:
    """(case id, un-augmented sample) for every case of a split, in order."""
    cases = dataset.split(split)
    source = CaseSource(cases, dataset, config.data.window_percentiles)
    make = MakeSample(config.data, None)
    for i, case in enumerate(cases):
        yield case.case_id, make.random_map(source[i], np.random.default_rng(0))
