"""One evaluator for every split and space: validation and test during training, ``score``,
``evaluate`` and the demo.

An ``Evaluator`` walks the cases of a split (``cases.py``: network-space samples or whole
series), asks a predictor (``predictors.py``: the network alone, or the cascade) for one or
more label maps per case ("stages"), and scores each against the reference: Dice always,
HD95/ASSD and the paper's satisfaction per instance when asked.
"""

from __future__ import annotations

import dataclasses
import math
import time
import warnings
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from lumbar_jax.evaluation import metrics, satisfaction, surface
from lumbar_jax.labels import LABEL_NAMES, STRUCTURES


@dataclasses.dataclass
class EvalCase:
    """One case as a predictor takes it, with its reference on the predictions' grid.

    Attributes:
      case_id: the dataset's case id.
      image: what the predictor reads: a network-space sample (d, h, w, 1) or a canonical
        series (d, h, w).
      reference_dhw: the reference label map (our values) on the predictions' grid.
      spacing_dhw: voxel size in mm of that grid (surface distances need it).
      labeled_c: which classes the reference labels.
      source: the image file, for messages.
    """

    case_id: str
    image: np.ndarray
    reference_dhw: np.ndarray
    spacing_dhw: tuple[float, float, float]
    labeled_c: np.ndarray
    source: str = ""


# A predictor: case -> {stage name: label map on the reference's grid}.
Predictor = Callable[[EvalCase], dict[str, np.ndarray]]


@dataclasses.dataclass
class Evaluation:
    """Per-case scores per stage; arrays are (cases, structures), NaN where undefined.

    ``hd95``/``assd`` are empty and ``instances`` hold no entries unless the evaluator
    computed them.
    """

    case_ids: list[str]
    stages: tuple[str, ...]
    dice: dict[str, np.ndarray]
    hd95: dict[str, np.ndarray]
    assd: dict[str, np.ndarray]
    instances: dict[str, list[tuple[str, satisfaction.Instance]]]
    seconds: list[float]

    def dice_summary(self, stage: str) -> dict[str, np.ndarray]:
        """``metrics.summarize`` of a stage's Dice: mean, min, max, count per structure."""
        empty = np.full((0, len(STRUCTURES)), np.nan)
        return metrics.summarize(self.dice.get(stage, empty))

    def mean_dice(self, stage: str) -> float:
        """Mean over structures of the mean Dice over cases (NaN when nothing is scored)."""
        means = self.dice_summary(stage)["mean"]
        return float(np.nanmean(means)) if np.isfinite(means).any() else float("nan")

    def summary(self) -> dict[str, dict[str, dict[str, Any]]]:
        """JSON-ready: per stage and structure, Dice mean/min/max, HD95, ASSD, satisfaction."""
        return {stage: _stage_summary(self, stage) for stage in self.stages}


def _none(value) -> float | None:
    value = float(value)
    return None if math.isnan(value) else round(value, 4)


def _finite_mean(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(mean over finite values, number of infinite ones) per column."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        finite = np.where(np.isfinite(values), values, np.nan)
        return np.nanmean(finite, axis=0), np.isinf(values).sum(axis=0)


def _stage_summary(ev: Evaluation, stage: str) -> dict[str, dict[str, Any]]:
    dice = ev.dice_summary(stage)
    out = {
        name: {
            "dice_mean": _none(dice["mean"][i]),
            "dice_min": _none(dice["min"][i]),
            "dice_max": _none(dice["max"][i]),
            "cases": int(dice["count"][i]),
        }
        for i, name in enumerate(STRUCTURES)
    }
    if stage in ev.hd95:
        hd95, hd95_inf = _finite_mean(ev.hd95[stage])
        assd, assd_inf = _finite_mean(ev.assd[stage])
        for i, name in enumerate(STRUCTURES):
            out[name] |= {
                "hd95_mm_mean": _none(hd95[i]),
                "assd_mm_mean": _none(assd[i]),
                "cases_one_side_empty": int(max(hd95_inf[i], assd_inf[i])),
            }
    if ev.instances.get(stage):
        rates = satisfaction.rates([inst for _, inst in ev.instances[stage]])
        for name in STRUCTURES:
            out[name] |= {"satisfactory": rates[name][0], "instances": rates[name][1]}
    return out


class Evaluator:
    """Scores a predictor on a split's cases.

    Args:
      cases: the cases, or a callable returning them afresh for each evaluation (for
        whole series, which are read one at a time instead of kept in memory).
      surface: also compute HD95 and ASSD (mm) per structure.
      instances: also score every reference instance (the paper's satisfaction).
      on_case: called with each case and its predictions once they are scored, for scores
        of other kinds (e.g. ``levels.LevelScorer``), which it keeps itself.
    """

    def __init__(
        self,
        cases: Iterable[EvalCase] | Callable[[], Iterable[EvalCase]],
        *,
        surface: bool = False,
        instances: bool = False,
        on_case: Callable[[EvalCase, dict[str, np.ndarray]], None] | None = None,
    ):
        self._cases = cases if callable(cases) else list(cases)
        self.surface, self.instances, self.on_case = surface, instances, on_case

    def cases(self) -> Iterable[EvalCase]:
        return self._cases() if callable(self._cases) else self._cases

    def __call__(self, predict: Predictor, progress: bool = False) -> Evaluation:
        """Predicts every case and scores every stage the predictor returns."""
        num_classes = len(LABEL_NAMES)
        case_ids, seconds = [], []
        dice, hd95, assd = {}, {}, {}
        found: dict[str, list] = {}
        iterator = self.cases()
        if progress:
            from tqdm import tqdm  # only for the command line

            iterator = tqdm(iterator, unit="case")
        for case in iterator:
            start = time.perf_counter()
            predictions = predict(case)
            seconds.append(time.perf_counter() - start)
            case_ids.append(case.case_id)
            ref, labeled = case.reference_dhw, np.asarray(case.labeled_c, bool)
            for stage, pred in predictions.items():
                dice.setdefault(stage, []).append(
                    metrics.dice_per_class(pred, ref, num_classes, labeled)
                )
                if self.surface:
                    h, a = surface.per_class(pred, ref, case.spacing_dhw, num_classes, labeled)
                    hd95.setdefault(stage, []).append(h)
                    assd.setdefault(stage, []).append(a)
                if self.instances:
                    found.setdefault(stage, []).extend(
                        (case.case_id, inst)
                        for inst in satisfaction.instances(pred, ref, case.spacing_dhw, labeled)
                    )
            if self.on_case is not None:
                self.on_case(case, predictions)
        stages = tuple(dice)

        def stack(rows: dict[str, list]) -> dict[str, np.ndarray]:
            return {
                s: np.array(v, np.float64).reshape(-1, len(STRUCTURES)) for s, v in rows.items()
            }

        return Evaluation(
            case_ids,
            stages,
            stack(dice),
            stack(hd95),
            stack(assd),
            {s: found.get(s, []) for s in stages},
            seconds,
        )
