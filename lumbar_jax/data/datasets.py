"""Dataset layouts: where the image and label files of each case are, and the split.

Layouts:
- ``nnunet``: nnU-Net raw, ``dataset.json``, ``imagesTr/<case>_0000<ending>`` and
  ``labelsTr/<case><ending>``; labels named with our names in ``dataset.json``.
- ``spider``: the SPIDER lumbar MRI layout, ``images/<case>.mha`` and ``masks/<case>.mha``;
  vertebrae 1-25 -> vertebral body, spinal canal 100 -> canal, discs 201-225 -> disc. SPIDER's
  vertebra masks include the posterior elements, which our vertebral-body label does not.
- ``folder``: image/label pairs found by a glob (``**/*_image.nii.gz``) and a name
  replacement (``_image`` -> ``_labels``).

A label mapping (``"1-5:2,100:4"``: dataset values -> our values, everything else unlisted is
an error) applies to any layout; the classes it maps onto are the ones the dataset labels, and
loss and Dice ignore the others. The split is ``dataset.json["split"]`` when present, else a
seeded random split in the paper's proportions (57/12/11 of 80).
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from lumbar_jax.data import splits as splits_lib
from lumbar_jax.data.phantom import dataset as phantom
from lumbar_jax.data.phantom import tissues
from lumbar_jax.labels import LABEL_NAMES


@dataclass(frozen=True)
class Case:
    """One case's files. ``tissue_path``: a tissue map (the phantom's), when there is one."""

    case_id: str
    image_path: Path
    label_path: Path | None
    tissue_path: Path | None = None


@dataclass
class Dataset:
    """Cases of one dataset and how they split.

    Attributes:
      root: the dataset folder.
      cases: case id -> Case.
      splits: split name -> case ids.
      label_map: dataset label value -> our label value (0..5).
      labeled_classes: which of our classes the dataset labels (background included).
    """

    root: Path
    cases: dict[str, Case]
    splits: dict[str, list[str]]
    label_map: dict[int, int] = field(
        default_factory=lambda: {i: i for i in range(len(LABEL_NAMES))}
    )
    labeled_classes: tuple[bool, ...] = (True,) * len(LABEL_NAMES)
    # A mix of datasets: each case keeps its own dataset's label map (by case id).
    case_label_maps: dict[str, dict[int, int]] = field(default_factory=dict)

    def label_map_of(self, case: Case) -> dict[int, int]:
        """The label map of ``case``'s own dataset."""
        return self.case_label_maps.get(case.case_id, self.label_map)

    def labeled_of(self, case: Case) -> tuple[bool, ...]:
        """Which of our classes ``case``'s reference labels."""
        if case.case_id in self.case_label_maps:
            return labeled_classes(self.case_label_maps[case.case_id])
        return self.labeled_classes

    def split(self, name: str) -> list[Case]:
        if name not in self.splits:
            raise ValueError(f"{self.root}: no split {name!r}; splits are {sorted(self.splits)}.")
        return [self.cases[i] for i in self.splits[name]]

    def with_all_split(self, name: str) -> str:
        """Checks a split name, adding the split "all" (every case) when asked; returns it.

        Raises:
          ValueError: for a split the dataset does not have.
        """
        if name == "all":
            self.splits["all"] = sorted(self.cases)
        self.split(name)
        return name


def load_nnunet_raw(root: str | Path, split_seed: int = 0) -> Dataset:
    """Reads an nnU-Net raw dataset folder.

    Raises:
      ValueError: naming the file when dataset.json is missing or inconsistent, or a listed
        image or label file is missing.
    """
    root = Path(root)
    meta_path = root / "dataset.json"
    if not meta_path.is_file():
        raise ValueError(f"{meta_path}: missing; an nnU-Net raw dataset needs dataset.json.")
    try:
        meta = json.loads(meta_path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{meta_path}: not valid JSON ({e}).") from e
    ending = meta.get("file_ending", ".nii.gz")
    labels = meta.get("labels", {})
    label_map = {}
    for name, value in labels.items():
        if name not in LABEL_NAMES:
            raise ValueError(
                f"{meta_path}: label {name!r} is not one of ours {LABEL_NAMES}; "
                "rename it in dataset.json or map it with a label mapping."
            )
        label_map[int(value)] = LABEL_NAMES.index(name)
    labeled = tuple(name in labels for name in LABEL_NAMES)
    if "tissues" in meta and tuple(meta["tissues"]) != tissues.NAMES:
        raise ValueError(
            f"{meta_path}: its tissue maps name other tissues than this version's "
            f"({len(meta['tissues'])} listed, {tissues.NUM_TISSUES} expected); regenerate them."
        )
    suffix = f"_0000{ending}"
    images = sorted((root / "imagesTr").glob(f"*{suffix}"))
    if not images:
        raise ValueError(f"{root / 'imagesTr'}: no images named <case>{suffix}.")
    cases = {}
    for image_path in images:
        case_id = image_path.name[: -len(suffix)]
        label_path = root / "labelsTr" / f"{case_id}{ending}"
        if not label_path.is_file():
            raise ValueError(f"{label_path}: missing label for image {image_path.name}.")
        tissue_path = root / "tissuesTr" / f"{case_id}{ending}"
        cases[case_id] = Case(
            case_id, image_path, label_path, tissue_path if tissue_path.is_file() else None
        )
    splits = meta.get("split") or splits_lib.split_case_ids(sorted(cases), split_seed)
    for name, ids in splits.items():
        unknown = sorted(set(ids) - set(cases))
        if unknown:
            raise ValueError(f"{meta_path}: split {name!r} lists unknown cases {unknown[:5]}.")
    for name in splits_lib.SPLITS:
        splits.setdefault(name, [])
    return Dataset(root, cases, splits, label_map, labeled)


# SPIDER (Zenodo 10159290): vertebrae 1-25, spinal canal 100, discs 201-225.
SPIDER_LABEL_MAP = "1-25:1,100:4,201-225:2"
LAYOUTS = ("auto", "nnunet", "spider", "folder")


def parse_label_map(spec: str) -> dict[int, int]:
    """``"1-5:2,100:4"`` -> {0: 0, 1: 2, ..., 5: 2, 100: 4}; background 0 maps to 0."""
    mapping = {0: 0}
    for item in filter(None, (part.strip() for part in spec.split(","))):
        try:
            source, target = item.split(":")
            lo, _, hi = source.partition("-")
            values = range(int(lo), int(hi or lo) + 1)
            target_value = int(target)
        except ValueError as e:
            raise ValueError(f"Label map item {item!r} is not VALUE[-VALUE]:TARGET.") from e
        if not 0 <= target_value < len(LABEL_NAMES):
            raise ValueError(
                f"Label map item {item!r}: target {target_value} is not one of our labels "
                f"0..{len(LABEL_NAMES) - 1} ({', '.join(LABEL_NAMES)})."
            )
        mapping.update({v: target_value for v in values})
    return mapping


def labeled_classes(label_map: dict[int, int]) -> tuple[bool, ...]:
    """Our classes that a label map produces (background always)."""
    targets = set(label_map.values()) | {0}
    return tuple(i in targets for i in range(len(LABEL_NAMES)))


def _paired(root: Path, pairs: list[tuple[str, Path, Path]], label_map, split_seed) -> Dataset:
    cases = {}
    for case_id, image_path, label_path in pairs:
        if not label_path.is_file():
            raise ValueError(f"{label_path}: missing label for image {image_path}.")
        cases[case_id] = Case(case_id, image_path, label_path)
    if not cases:
        raise ValueError(f"{root}: no image/label pairs found.")
    splits = splits_lib.split_case_ids(sorted(cases), split_seed)
    return Dataset(root, cases, splits, label_map, labeled_classes(label_map))


def load_spider(
    root: str | Path, label_map: str = SPIDER_LABEL_MAP, split_seed: int = 0
) -> Dataset:
    """Reads the SPIDER layout (``images/*.mha``, ``masks/*.mha``)."""
    root = Path(root)
    images = sorted((root / "images").glob("*.mha"))
    pairs = [(p.stem, p, root / "masks" / p.name) for p in images]
    return _paired(root, pairs, parse_label_map(label_map), split_seed)


def load_folder(
    root: str | Path,
    label_map: str,
    image_glob: str = "**/*_image.nii.gz",
    label_replace: tuple[str, str] = ("_image", "_labels"),
    split_seed: int = 0,
) -> Dataset:
    """Image/label pairs found by ``image_glob``; a label's name replaces ``label_replace[0]``
    in the image's name by ``label_replace[1]``."""
    root = Path(root)
    old, new = label_replace
    pairs = []
    for image_path in sorted(root.glob(image_glob)):
        if old not in image_path.name:
            continue
        label_path = image_path.with_name(image_path.name.replace(old, new))
        case_id = str(image_path.relative_to(root)).replace(old, "").split(".")[0]
        pairs.append((case_id, image_path, label_path))
    return _paired(root, pairs, parse_label_map(label_map), split_seed)


def load_dataset(
    root: str | Path,
    layout: str = "auto",
    label_map: str = "",
    image_glob: str = "**/*_image.nii.gz",
    label_replace: tuple[str, str] = ("_image", "_labels"),
    split_seed: int = 0,
) -> Dataset:
    """Reads a dataset in any layout; ``auto`` tells them apart by their files.

    Args:
      root: the dataset folder.
      layout: one of LAYOUTS.
      label_map: dataset values -> our values (see ``parse_label_map``); empty for the
        layout's own (dataset.json names, SPIDER's values). The folder layout needs one.
      image_glob, label_replace: how the folder layout finds pairs.
      split_seed: seed of the random split when the dataset defines none.
    """
    root = Path(root)
    if layout not in LAYOUTS:
        raise ValueError(f"Unknown dataset layout {layout!r}; choose one of {LAYOUTS}.")
    if not root.is_dir():
        raise ValueError(f"{root}: no such dataset folder.")
    if layout == "auto":
        if (root / "dataset.json").is_file():
            layout = "nnunet"
        elif (root / "images").is_dir() and (root / "masks").is_dir():
            layout = "spider"
        else:
            layout = "folder"
    if layout == "nnunet":
        dataset = load_nnunet_raw(root, split_seed)
        if label_map:
            dataset.label_map = parse_label_map(label_map)
            dataset.labeled_classes = labeled_classes(dataset.label_map)
        return dataset
    if layout == "spider":
        return load_spider(root, label_map or SPIDER_LABEL_MAP, split_seed)
    if not label_map:
        raise ValueError(
            f"{root}: no dataset.json or images/ + masks/ here, so it is read as a folder of "
            "image/label pairs, which needs a label map (config data.label_map, or --label_map "
            "of the check command), e.g. '1-5:2' for dataset values 1..5 as discs."
        )
    return load_folder(root, label_map, image_glob, label_replace, split_seed)


def default_cache_dir() -> Path:
    return Path(os.environ.get("LUMBAR_JAX_CACHE", Path.home() / ".cache" / "lumbar_jax"))


def builtin_phantom(data) -> Dataset:
    """The built-in phantom dataset of a config's ``data`` section, generated on first use."""
    cache = data.cache_dir or default_cache_dir()
    return load_nnunet_raw(
        phantom.ensure_phantom(cache, data.phantom_cases, data.phantom_seed, data.phantom_matrix)
    )


def from_config(data) -> Dataset:
    """The dataset a config names: ``data.root`` (a folder, or a ``.json`` mix of several),
    or the built-in phantom when it is empty."""
    if not data.root:
        return builtin_phantom(data)
    return load_dataset_or_mix(
        data.root,
        data.layout,
        data.label_map,
        data.image_glob,
        tuple(data.label_replace),
        data=data,
    )


def load_dataset_or_mix(root: str | Path, *args, data=None) -> Dataset:
    """``load_mix`` for a ``.json`` file, else ``load_dataset(root, *args)``.

    ``data``: a config's data section, for a mix that includes the built-in phantom.

    Raises:
      ValueError: naming the file, for a mix given a layout or label map of its own (a mix
        sets them per dataset, so they would be ignored).
    """
    if str(root).endswith(".json"):
        # args may stop before the last of them (the rest are load_dataset's defaults).
        pairs = zip(_MIX_SET_FIELDS, args, _MIX_SET_DEFAULTS, strict=False)
        given = [
            (name, value)
            for name, value, default in pairs
            if (value if isinstance(value, str) else tuple(value)) != default
        ]
        if given:
            names = ", ".join(f"{n}={a!r}" for n, a in given)
            raise ValueError(
                f"{root}: a dataset mix sets layout and label map per dataset in its file; "
                f"remove {names} (see datasets.load_mix)."
            )
        return load_mix(root, data)
    return load_dataset(root, *args)


# load_dataset's arguments that a mix sets per dataset, and their defaults.
_MIX_SET_FIELDS = ("layout", "label_map", "image_glob", "label_replace")
_MIX_SET_DEFAULTS = ("auto", "", "**/*_image.nii.gz", ("_image", "_labels"))


def load_mix(path: str | Path, data) -> Dataset:
    """Several datasets as one: a JSON file lists them, each with its label map and split.

    ``{"datasets": [{"root": "real/lumbar_discs_t2", "label_map": "1-5:2",
    "split": {"train": ["case11"], "test": ["case20"]}, "repeat": 10}, {"root": "phantom"}]}``:
    roots are folders (relative to the file) or "phantom" (the config's built-in phantom);
    ``layout`` is "auto" unless given; without a ``split`` the dataset's own is used;
    ``repeat`` lists its training cases that many times per epoch, so that a few real series
    are seen as often as many phantom ones. Case ids become ``<name>/<case id>`` (``name``:
    the folder's name, or given). Each case keeps its own dataset's label map, so partially
    labelled sets mix: loss and Dice leave out what a case does not label.

    Raises:
      ValueError: naming the file, for a malformed mix or a dataset that cannot be read.
    """
    path = Path(path)
    try:
        spec = json.loads(path.read_text())
        entries = spec["datasets"]
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as e:
        raise ValueError(f"{path}: not a dataset mix ({e!r}); see datasets.load_mix.") from e
    cases, label_maps, splits = {}, {}, {name: [] for name in splits_lib.SPLITS}
    for entry in entries:
        if entry["root"] == "phantom":
            if data is None:
                raise ValueError(f"{path}: the built-in phantom is only part of a mix in training.")
            part, name = builtin_phantom(data), entry.get("name", "phantom")
        else:
            root = (path.parent / entry["root"]).resolve()
            part = load_dataset(root, entry.get("layout", "auto"), entry.get("label_map", ""))
            name = entry.get("name", root.name)
        own = {k: list(v) for k, v in entry.get("split", part.splits).items()}
        for case_id, case in part.cases.items():
            key = f"{name}/{case_id}"
            cases[key] = dataclasses.replace(case, case_id=key)
            label_maps[key] = part.label_map
        for split, ids in own.items():
            unknown = sorted(set(ids) - set(part.cases))
            if unknown:
                raise ValueError(f"{path}: {name} has no cases {unknown[:5]} (split {split!r}).")
            times = int(entry.get("repeat", 1)) if split == "train" else 1
            splits.setdefault(split, []).extend(f"{name}/{i}" for i in ids for _ in range(times))
    labeled = tuple(any(c) for c in zip(*map(labeled_classes, label_maps.values()), strict=True))
    return Dataset(path, cases, splits, {}, labeled, label_maps)
