"""Dataset layouts: where the image and label files of each case are, and the split.

The first layout is nnU-Net raw: ``dataset.json``, ``imagesTr/<case>_0000<ending>`` and
``labelsTr/<case><ending>``. The split is read from ``dataset.json["split"]`` when present,
else drawn at random in the paper's proportions (57/12/11 of 80).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from lumbar_jax import LABEL_NAMES
from lumbar_jax.data import synth

SPLITS = ("train", "validation", "test")


@dataclass(frozen=True)
class Case:
    case_id: str
    image_path: Path
    label_path: Path | None


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

    def split(self, name: str) -> list[Case]:
        if name not in self.splits:
            raise ValueError(f"{self.root}: no split {name!r}; splits are {sorted(self.splits)}.")
        return [self.cases[i] for i in self.splits[name]]


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
        cases[case_id] = Case(case_id, image_path, label_path)
    splits = meta.get("split") or synth.split_case_ids(sorted(cases), split_seed)
    for name, ids in splits.items():
        unknown = sorted(set(ids) - set(cases))
        if unknown:
            raise ValueError(f"{meta_path}: split {name!r} lists unknown cases {unknown[:5]}.")
    for name in SPLITS:
        splits.setdefault(name, [])
    return Dataset(root, cases, splits, label_map, labeled)


def default_cache_dir() -> Path:
    return Path(os.environ.get("LUMBAR_JAX_CACHE", Path.home() / ".cache" / "lumbar_jax"))


def phantom_root(cache_dir: str | Path, num_cases: int, seed: int, matrix: int) -> Path:
    """Folder of the built-in phantom dataset for these parameters."""
    return Path(cache_dir) / f"phantom-v1-n{num_cases}-s{seed}-m{matrix}"


def ensure_phantom(cache_dir: str | Path, num_cases: int, seed: int, matrix: int) -> Path:
    """Returns the phantom dataset folder, generating it on first use."""
    root = phantom_root(cache_dir, num_cases, seed, matrix)
    if not (root / "dataset.json").is_file():
        print(f"Generating {num_cases} phantom cases into {root} ...", flush=True)
        synth.write_dataset(root, num_cases, seed, matrix)
    return root


def from_config(data) -> Dataset:
    """The dataset a config names: ``data.root``, or the built-in phantom when it is empty."""
    if data.root:
        return load_nnunet_raw(data.root)
    cache = data.cache_dir or default_cache_dir()
    return load_nnunet_raw(
        ensure_phantom(cache, data.phantom_cases, data.phantom_seed, data.phantom_matrix)
    )
