"""Train / validation / test splits of datasets that define none."""

from __future__ import annotations

import numpy as np

SPLITS = ("train", "validation", "test")
SPLIT_FRACTIONS = (57 / 80, 12 / 80)  # paper: 57 train / 12 validation / 11 test


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
