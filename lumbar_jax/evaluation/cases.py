"""Where evaluated cases come from: network-space samples, or whole series on their own grid."""

from __future__ import annotations

from collections.abc import Iterator

import ml_collections
import numpy as np

from lumbar_jax.data import datasets, io, pipeline, prepared
from lumbar_jax.evaluation.evaluator import EvalCase


def network_cases(
    config: ml_collections.ConfigDict, dataset: datasets.Dataset, split: str
) -> list[EvalCase]:
    """Every case of a split as the stage sees it (cropped and resized, not augmented).

    Prepared once, so repeated validations during training read nothing again. Their grid is
    the network's input, so surface distances in mm are not defined on it.
    """
    return [
        EvalCase(
            case_id,
            sample["image_dhwc"],
            sample["label_dhw"],
            (float("nan"),) * 3,
            sample["labeled_c"],
        )
        for case_id, sample in pipeline.eval_samples(config, dataset, split)
    ]


def series_cases(dataset: datasets.Dataset, split: str) -> Iterator[EvalCase]:
    """Every case of a split as read from its files, in canonical layout, one at a time.

    Raises:
      ValueError: naming the file, for a case without a label or whose label does not fit.
    """
    for case in dataset.split(split):
        if case.label_path is None:
            raise ValueError(f"{case.image_path}: case {case.case_id} has no label to compare.")
        volume = io.read_canonical(case.image_path)
        reference = prepared.read_label(case, dataset, volume)  # mapped, geometry checked
        yield EvalCase(
            case.case_id,
            volume.array_dhw,
            reference,
            volume.spacing_dhw,
            np.asarray(dataset.labeled_of(case), bool),
            str(case.image_path),
        )
