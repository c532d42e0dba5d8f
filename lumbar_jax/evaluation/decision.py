"""Choosing the cascade's per-structure background scales on a validation split.

The fine stage's probabilities of every series are computed once (``cache``); each candidate
decision (``cascade.decide`` with one background scale per structure) is then only an argmax
and a count. ``sweep`` moves one structure's scale at a time over a grid, the others held, for
a few rounds: per structure it takes the scale with the most satisfactory instances
(``satisfaction.py``) among those whose Dice, averaged over the cached runs, stays within a
tolerance of the best on the grid, and of those the one with the higher Dice. The satisfactory
rule asks for 90 % recall of each instance; the Dice-optimal decision misses edges at coarse
voxels, so the two disagree and the tolerance says how much Dice a recall gain may cost.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Sequence

import numpy as np

from lumbar_jax.evaluation import satisfaction
from lumbar_jax.evaluation.evaluator import EvalCase
from lumbar_jax.inference import cascade
from lumbar_jax.labels import STRUCTURES


@dataclasses.dataclass(frozen=True)
class CachedCase:
    """One series' fine-stage probabilities and its reference, on the series' grid."""

    case_id: str
    probs_cdhw: np.ndarray  # float16: a decision needs no more
    reference_dhw: np.ndarray
    spacing_dhw: tuple[float, float, float]
    labeled_c: np.ndarray


@dataclasses.dataclass(frozen=True)
class Score:
    """Per structure (label order): mean Dice over the series, satisfactory and all
    instances."""

    dice_s: np.ndarray
    satisfactory_s: np.ndarray
    instances_s: np.ndarray


def cache(
    coarse: cascade.StageModel, fine: cascade.StageModel, cases: Iterable[EvalCase]
) -> list[CachedCase]:
    """Runs the cascade up to the decision on every case (with the fine stage's flip)."""
    out = []
    for case in cases:
        coarse_labels = cascade.coarse_labels(
            coarse, case.image, case.spacing_dhw, flip_lr=fine.flip_tta, source=case.source
        )
        probs, _ = cascade.fine_probabilities(
            fine, coarse_labels, case.image, case.spacing_dhw, flip_lr=fine.flip_tta
        )
        out.append(
            CachedCase(
                case.case_id,
                probs.astype(np.float16),
                case.reference_dhw,
                tuple(float(s) for s in case.spacing_dhw),
                np.asarray(case.labeled_c, bool),
            )
        )
    return out


def score(cases: Sequence[CachedCase], scales: Sequence[float]) -> Score:
    """Dice and satisfactory instances of the decision with these background scales."""
    num = len(STRUCTURES)
    dice_sum, dice_count = np.zeros(num), np.zeros(num)
    satisfactory, instances = np.zeros(num, int), np.zeros(num, int)
    for case in cases:
        labels = cascade.decide(case.probs_cdhw.astype(np.float32), scales)
        for k in range(num):
            if not case.labeled_c[k + 1]:
                continue
            pred, ref = labels == k + 1, case.reference_dhw == k + 1
            total = pred.sum() + ref.sum()
            dice_sum[k] += 2.0 * (pred & ref).sum() / total if total else 1.0
            dice_count[k] += 1
        for inst in satisfaction.instances(
            labels, case.reference_dhw, case.spacing_dhw, case.labeled_c
        ):
            k = STRUCTURES.index(inst.structure)
            satisfactory[k] += inst.satisfactory
            instances[k] += 1
    dice = np.divide(dice_sum, dice_count, out=np.full(num, np.nan), where=dice_count > 0)
    return Score(dice, satisfactory, instances)


@dataclasses.dataclass(frozen=True)
class Trial:
    """One scale tried for one structure in one round, scored on every cached run."""

    round: int
    structure: str
    scale: float
    scores: tuple[Score, ...]

    def dice(self, k: int) -> float:
        return float(np.mean([s.dice_s[k] for s in self.scores]))

    def satisfactory(self, k: int) -> tuple[int, int]:
        return (
            int(sum(s.satisfactory_s[k] for s in self.scores)),
            int(sum(s.instances_s[k] for s in self.scores)),
        )


def choose(trials: Sequence[Trial], k: int, tolerance: float) -> Trial:
    """The trial with the most satisfactory instances of structure ``k`` among those whose
    mean Dice is within ``tolerance`` of the best; ties go to the higher Dice."""
    best_dice = max(t.dice(k) for t in trials)
    allowed = [t for t in trials if t.dice(k) >= best_dice - tolerance]
    return max(allowed, key=lambda t: (t.satisfactory(k)[0], t.dice(k)))


def sweep(
    runs: Sequence[Sequence[CachedCase]],
    grid: Sequence[float],
    tolerance: float,
    *,
    start: float | Sequence[float] = 0.8,
    fixed: dict[int, float] | None = None,
    rounds: int = 2,
    log: Callable[[Trial], None] = lambda trial: None,
) -> tuple[tuple[float, ...], list[Trial]]:
    """(the chosen background scales, every trial) over cached runs (e.g. two seeds).

    Args:
      runs: each run's cached validation series.
      grid: the scales tried for each structure.
      tolerance: how far under its best Dice a structure may go for more satisfactory
        instances.
      start: the scales the sweep starts from (one for all or one per structure).
      fixed: structure index (0: body) -> a scale that is held, not swept. Structures that
        no series labels are held at their start too.
      rounds: passes over the structures.
      log: called with each trial as it is scored.
    """
    scales = list(cascade.check_background_scale(start, "start"))
    fixed = dict(fixed or {})
    for k, value in fixed.items():
        scales[k] = value
    if not grid:
        raise ValueError("grid: no scales to try.")
    for value in grid:
        cascade.check_background_scale(value, "grid")
    # A structure no series labels has nothing to choose by: it keeps its start.
    labelled = [any(c.labeled_c[k + 1] for run in runs for c in run) for k in range(len(scales))]
    trials = []
    for r in range(rounds):
        for k, name in enumerate(STRUCTURES):
            if k in fixed or not labelled[k]:
                continue
            tried = []
            for value in grid:
                candidate = [*scales[:k], value, *scales[k + 1 :]]
                trial = Trial(r, name, value, tuple(score(run, candidate) for run in runs))
                log(trial)
                tried.append(trial)
            scales[k] = choose(tried, k, tolerance).scale
            trials += tried
    return tuple(scales), trials
