"""The grain input pipeline: cases -> prepared volumes -> random crops/augmentations -> batches.

Every element is a dict:
  image_dhwc: float32 (d, h, w, 1), windowed to [0, 1];
  label_dhw: uint8 (d, h, w), our label values 0..5;
  labeled_c: bool (num_classes,), which classes the case labels (others are ignored by the
    loss and by Dice).

Cases come prepared (read, canonicalized, windowed, label-mapped, cached) from
``prepared.py``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import grain
import ml_collections
import numpy as np

from lumbar_jax.data import transforms
from lumbar_jax.data.datasets import Case, Dataset
from lumbar_jax.data.prepared import CaseSource, PreparedCase, prepared_cache_dir


def coarse_dir(data: ml_collections.ConfigDict) -> str | None:
    """The stored coarse predictions to crop from, when ``data.crop`` is "coarse"."""
    if data.crop != "coarse":
        return None
    if not data.coarse_predictions:
        raise ValueError("data.crop='coarse' needs data.coarse_predictions (a folder).")
    return data.coarse_predictions


SYNTHESIS = ("image", "tissues")


def synthesis(data: ml_collections.ConfigDict) -> str:
    """``data.synthesis``: train on the images ("image") or on images drawn from tissues."""
    kind = data.get("synthesis", "image")
    if kind not in SYNTHESIS:
        raise ValueError(f"config.data.synthesis is {kind!r}; choose one of {SYNTHESIS}.")
    return kind


def case_source(
    data: ml_collections.ConfigDict,
    dataset: Dataset,
    cases: Sequence[Case],
    with_tissue: bool = False,
) -> CaseSource:
    """The cases of a split as the config prepares them (window, disk cache, coarse crops)."""
    return CaseSource(
        cases,
        dataset,
        data.window_percentiles,
        prepared_cache_dir(data),
        coarse_dir(data),
        with_tissue,
    )


class MakeSample(grain.transforms.RandomMap):
    """Crop box, augmentation and resampling of one prepared case to the network's shape.

    With ``aug`` None (evaluation) the sample is the crop resized, nothing random.
    """

    def __init__(self, data: ml_collections.ConfigDict, aug: ml_collections.ConfigDict | None):
        self.out_shape = tuple(data.input_shape)
        self.crop = data.crop
        self.margin = tuple(data.crop_margin_mm)
        self.tiles = transforms.crop_tiles(data)
        self.aug = aug
        # Training samples carry their tissue map for the device to draw an image from.
        self.tissues = aug is not None and synthesis(data) == "tissues"

    def box(
        self, case: PreparedCase, rng: np.random.Generator | None = None, tile: int = 0
    ) -> transforms.Box:
        """The crop: the whole series, or the structures' box plus a (jittered) margin.

        With ``data.crop_tiles`` above one, a tile of that box: at a random height in
        training, else tile number ``tile`` of ``transforms.tile_boxes``.
        """
        if self.crop == "image":
            return transforms.image_box(case.image_dhw.shape, case.spacing_dhw)
        if self.crop not in ("label", "coarse"):
            raise ValueError(
                f"Unknown data.crop {self.crop!r}; choose 'image', 'label' or 'coarse'."
            )
        margin = np.broadcast_to(np.asarray(self.margin, float), (2, 3))
        if rng is not None and self.aug is not None:
            # Each side on its own, so the structures do not always sit mid-crop as they
            # would around a coarse prediction's imperfect box.
            jitter = np.asarray(self.aug.crop_margin_jitter_mm, float)
            margin = np.maximum(margin + rng.uniform(-1, 1, (2, 3)) * jitter, 0.0)
        if self.crop == "coarse":
            if case.coarse_dhw is None:
                raise ValueError(f"{case.case_id}: no coarse prediction loaded for its crop.")
            reference = case.coarse_dhw
        else:
            reference = case.label_dhw
        box = transforms.label_box(reference, case.spacing_dhw, margin)
        count, overlap = self.tiles
        if rng is not None and self.aug is not None:
            return transforms.random_tile(box, count, overlap, self.out_shape, rng)
        return transforms.tile_boxes(box, count, overlap, self.out_shape)[tile]

    def random_map(
        self, case: PreparedCase, rng: np.random.Generator, tile: int = 0
    ) -> dict[str, np.ndarray]:
        box = self.box(case, rng, tile)
        geometry = draw_geometry(self.aug, rng) if self.aug is not None else {}
        affine = transforms.sampling_affine(box, self.out_shape, case.spacing_dhw, **geometry)
        image = transforms.resample(case.image_dhw, affine, self.out_shape, is_label=False)
        label = transforms.resample(case.label_dhw, affine, self.out_shape, is_label=True)
        has_tissue = self.tissues and case.tissue_dhw is not None
        tissue = (
            transforms.resample(case.tissue_dhw, affine, self.out_shape, is_label=True)
            if has_tissue
            else np.zeros(self.out_shape, np.uint8)
        )
        if self.aug is not None:
            # Also for samples with tissues: synthesis.prob of them keep this image.
            image = augment_intensity(image, self.aug, rng)
            if rng.random() < self.aug.flip_prob:
                # Left-right: the slice axis, image, label and tissues together.
                image, label, tissue = image[::-1], label[::-1], tissue[::-1]
        sample = {
            "image_dhwc": np.ascontiguousarray(image[..., None], np.float32),
            "label_dhw": np.ascontiguousarray(label, np.uint8),
            "labeled_c": case.labeled_c,
        }
        if self.tissues:
            # The sampled grid's voxel size: the box over the shape, times the zoom.
            box_mm = np.asarray(box[1], float) - np.asarray(box[0], float)
            spacing = box_mm / np.asarray(self.out_shape) * geometry.get("scale", 1.0)
            sample |= {
                "tissue_dhw": np.ascontiguousarray(tissue, np.uint8),
                "spacing_3": spacing.astype(np.float32),
                "has_tissue": np.bool_(has_tissue),
            }
        return sample


def _log_uniform(rng: np.random.Generator, low_high: Sequence[float]) -> float:
    low, high = low_high
    return math.exp(rng.uniform(math.log(low), math.log(high)))


def draw_geometry(aug: ml_collections.ConfigDict, rng: np.random.Generator) -> dict:
    """Random spatial augmentation: keyword arguments of ``transforms.sampling_affine``.

    Draws happen in a fixed order whatever the probabilities, so a sample's draw depends only
    on its generator.
    """
    geometry = {}
    if rng.random() < aug.rotate_prob:
        geometry["rotate_rad"] = math.radians(rng.uniform(-1, 1) * aug.rotate_max_deg)
    if rng.random() < aug.rotate_oop_prob:
        si, ap = rng.uniform(-1, 1, 2) * math.radians(aug.rotate_oop_max_deg)
        geometry["rotate_si_rad"], geometry["rotate_ap_rad"] = float(si), float(ap)
    if rng.random() < aug.translate_prob:
        geometry["translate_mm"] = rng.uniform(-1, 1, 3) * np.asarray(aug.translate_max_mm)
    if rng.random() < aug.scale_prob:
        # The sampled region shrinks as the anatomy is enlarged.
        geometry["scale"] = 1.0 / _log_uniform(rng, aug.scale_range)
    return geometry


def augment_intensity(
    image_dhw: np.ndarray, aug: ml_collections.ConfigDict, rng: np.random.Generator
) -> np.ndarray:
    """Bias field, contrast and gamma, each with its probability; stays in [0, 1].

    Runs on the host, in the pipeline's worker processes, on the resampled sample: it costs a
    few milliseconds there (``benchmarks/pipeline.py``), far below a train step, so it does not
    need the device.
    """
    image = image_dhw
    if rng.random() < aug.bias_prob:
        coefficients = rng.uniform(-1, 1, 6)
        strength = rng.uniform(0, aug.bias_max)
        image = np.clip(image * transforms.bias_field(image.shape, coefficients, strength), 0, 1)
    if rng.random() < aug.contrast_prob:
        image = transforms.adjust_contrast(image, rng.uniform(*aug.contrast_range))
    if rng.random() < aug.gamma_prob:
        image = transforms.adjust_gamma(image, _log_uniform(rng, aug.gamma_range))
    return image.astype(np.float32, copy=False)


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
    source = case_source(
        config.data, dataset, cases, with_tissue=synthesis(config.data) == "tissues"
    )
    ds = grain.MapDataset.source(source).seed(config.seed).shuffle().repeat()
    # Augment before sharing out, so a sample's random draw depends on its place in the
    # global stream only.
    ds = ds.random_map(MakeSample(config.data, config.aug))
    ds = _HostShare(ds, global_batch, process_index, process_count)
    ds = ds.batch(global_batch // process_count, drop_remainder=True)[start_step:]
    # grain's default read-ahead (500 elements) would hold up to 500 batches in memory while a
    # slow train step consumes them (8 GB at the fine stage's batch of 5); a few suffice.
    it_ds = ds.to_iter_dataset(
        grain.ReadOptions(
            num_threads=config.data.read_threads,
            prefetch_buffer_size=config.data.prefetch_batches,
        )
    )
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
    """(case id, un-augmented sample) for every case of a split, in order.

    With ``data.crop_tiles`` above one, every tile of every case, as ``<case id>:tile<k>``.
    """
    cases = dataset.split(split)
    source = case_source(config.data, dataset, cases)
    make = MakeSample(config.data, None)
    count, _ = transforms.crop_tiles(config.data)
    for i, case in enumerate(cases):
        prepared_case = source[i]
        for tile in range(count):
            name = case.case_id if count == 1 else f"{case.case_id}:tile{tile}"
            yield name, make.random_map(prepared_case, np.random.default_rng(0), tile)
