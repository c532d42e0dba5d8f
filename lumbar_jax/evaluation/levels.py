"""Level names and measurements scored against the truth a phantom case drew.

Where a dataset has truth files beside its labels (``labelsTr/<case>_truth.json``, written by
the phantom), every label map of a case (the reference and each predicted stage) is named and
measured as ``predict`` does, and compared with the truth:

- naming: each named body or disc is matched to the drawn level it overlaps most (voxels
  inside the drawn segment's box, in its own frame; a piece mostly outside every box, such
  as a herniation split off its disc, to the nearest drawn level within 20 mm); it is right when the names agree (a
  fused segment's name, "S1-S2", when it includes the drawn level).
  Accuracy is the share of named bodies and discs that are right.
- measurements: each measured level is compared with the truth of the drawn level it was
  matched to (whatever its name, so naming and measuring errors stay apart), for levels the
  field of view holds whole; each foramen with the drawn foramen of its side nearest to its
  centre (within 10 mm); the conus by the distance between the tips and whether the levels
  agree.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np

from lumbar_jax.data import datasets
from lumbar_jax.data.phantom import truth as phantom_truth
from lumbar_jax.inference import components, geometry, levels, measure
from lumbar_jax.labels import LABEL_NAMES

# Measurements and how they read in reports, in order.
MEASURES = {
    "disc_height_anterior": "disc height, anterior (mm)",
    "disc_height_middle": "disc height, middle (mm)",
    "disc_height_posterior": "disc height, posterior (mm)",
    "body_height": "vertebral body height (mm)",
    "canal_ap_at_disc": "canal AP diameter at a disc (mm)",
    "canal_narrowest": "narrowest canal AP diameter (mm)",
    "foramen_height": "foramen height (mm)",
    "foramen_area": "foramen area (mm^2)",
    "conus_position": "conus tip position (mm)",
}
# A named component counts as a drawn level when at least this share of it lies inside,
# else as the nearest one of its kind within this distance.
MIN_OVERLAP = 0.3
NEAREST_MM = 20.0
FORAMEN_MATCH_MM = 10.0


def truth_file(case: datasets.Case) -> Path | None:
    """The truth file beside a case's label, or None."""
    if case.label_path is None:
        return None
    path = case.label_path.with_name(f"{case.case_id}{phantom_truth.SUFFIX}")
    return path if path.is_file() else None


def load_truths(dataset: datasets.Dataset, split: str) -> dict[str, dict]:
    """{case id: truth} for the cases of a split that have truth files (may be empty)."""
    found = {}
    for case in dataset.split(split):
        path = truth_file(case)
        if path is not None:
            found[case.case_id] = json.loads(path.read_text())
    return found


@dataclasses.dataclass
class CaseScore:
    """One label map of one case against its truth.

    Attributes:
      case_id, stage: which case and which label map ("reference", "cascade", ...).
      named: how many bodies and discs were named.
      wrong: (given name, drawn name) of each misnamed one ("" when it matches no level).
      errors: measurement -> errors (measured minus truth; conus: distance in mm).
      confidence: the naming's level_confidence.
      conus_level_right: None when either side has no conus.
    """

    case_id: str
    stage: str
    named: int
    wrong: list[tuple[str, str]]
    errors: dict[str, list[float]]
    confidence: str
    conus_level_right: bool | None


def match_level(comp: components.Component, truth_levels: list[dict]) -> dict | None:
    """The drawn level of ``comp``'s kind that holds most of its voxels (see module doc)."""
    best, best_count = None, 0
    for entry in truth_levels:
        if entry["kind"] != comp.kind:
            continue
        n = np.asarray(entry["axis_hw"], float)
        offset = comp.points_hw - np.asarray(entry["centre_hw_mm"], float)
        u, v = offset @ n, offset @ geometry.across(n)
        inside = (np.abs(u) <= entry["half_extent_mm"]) & (np.abs(v) <= entry["half_depth_mm"])
        count = int(inside.sum())
        if count > best_count:
            best, best_count = entry, count
    if best_count >= MIN_OVERLAP * len(comp.points_hw):
        return best
    # Disc material outside the drawn box (a herniation split off from its disc): the
    # nearest drawn level of its kind.
    same = [e for e in truth_levels if e["kind"] == comp.kind]
    if not same:
        return None
    near = min(same, key=lambda e: np.linalg.norm(comp.centre_hw - e["centre_hw_mm"]))
    return near if np.linalg.norm(comp.centre_hw - near["centre_hw_mm"]) <= NEAREST_MM else None


def _measure_errors(measured: measure.Measurements, truth: dict) -> dict[str, list[float]]:
    errors: dict[str, list[float]] = {k: [] for k in MEASURES}

    def add(key: str, got: float | None, want: float | None) -> None:
        if got is not None and want is not None:
            errors[key].append(float(got) - float(want))

    for m in measured.discs:
        entry = match_level(m.component, truth["levels"])
        if entry and entry["whole_in_view"]:
            add("disc_height_anterior", m.anterior_mm, entry["height_anterior_mm"])
            add("disc_height_middle", m.middle_mm, entry["height_middle_mm"])
            add("disc_height_posterior", m.posterior_mm, entry["height_posterior_mm"])
            add("canal_ap_at_disc", m.canal_ap_mm, entry["canal_ap_mm"])
    for m in measured.bodies:
        entry = match_level(m.component, truth["levels"])
        if entry and entry["whole_in_view"]:
            add("body_height", m.height_mm, entry["height_mm"])
    if measured.narrowest is not None and truth["canal_narrowest"]:
        add("canal_narrowest", measured.narrowest.ap_mm, truth["canal_narrowest"]["ap_mm"])
    for f in measured.foramina:
        drawn = [t for t in truth["foramina"] if t["side"] == f.side]
        if not drawn:
            continue
        near = min(drawn, key=lambda t: np.linalg.norm(f.centre_mm[1:] - t["centre_hw_mm"]))
        if np.linalg.norm(f.centre_mm[1:] - near["centre_hw_mm"]) <= FORAMEN_MATCH_MM:
            add("foramen_height", f.height_mm, near["height_mm"])
            add("foramen_area", f.area_mm2, near["area_mm2"])
    if measured.conus is not None and truth["conus"]:
        tip = np.asarray(truth["conus"]["position_hw_mm"], float)
        errors["conus_position"].append(float(np.linalg.norm(measured.conus.position_hw - tip)))
    return errors


def score_labels(
    labels_dhw: np.ndarray,
    spacing_dhw,
    truth: dict,
    case_id: str,
    stage: str,
    labeled=None,
) -> CaseScore:
    """Names and measures one label map and compares both with the case's truth."""
    named = levels.name_levels(labels_dhw, spacing_dhw, labeled)
    wrong = []
    for comp in named.named():
        entry = match_level(comp, truth["levels"])
        drawn = entry["name"] if entry else ""
        # A fused segment ("L3-L4", "S1-S2") is right when it holds the drawn level.
        if drawn not in levels.level_range(comp.name):
            wrong.append((comp.name, drawn))
    measured = measure.measure(named, labels_dhw)
    conus_right = None
    if measured.conus is not None and truth["conus"]:
        conus_right = measured.conus.level == truth["conus"]["level"]
    return CaseScore(
        case_id,
        stage,
        len(named.named()),
        wrong,
        _measure_errors(measured, truth),
        named.confidence,
        conus_right,
    )


class LevelScorer:
    """Collects ``CaseScore``s case by case: an ``Evaluator``'s ``on_case`` hook.

    Args:
      truths: {case id: truth}; cases without one are skipped.
      labeled: which of our classes the dataset labels (the reference is named from those).
    """

    def __init__(self, truths: dict[str, dict], labeled=None):
        self.truths = truths
        self.labeled = tuple(labeled) if labeled is not None else (True,) * len(LABEL_NAMES)
        self.scores: list[CaseScore] = []

    def __call__(self, case, predictions: dict[str, np.ndarray]) -> None:
        truth = self.truths.get(case.case_id)
        if truth is None:
            return
        maps = {"reference": case.reference_dhw, **predictions}
        for stage, labels_dhw in maps.items():
            labeled = self.labeled if stage == "reference" else None
            self.scores.append(
                score_labels(labels_dhw, case.spacing_dhw, truth, case.case_id, stage, labeled)
            )

    def summary(self) -> dict:
        """Per stage: naming accuracy, confidence counts, and per measurement n/mean/median."""
        out = {}
        for stage in dict.fromkeys(s.stage for s in self.scores):
            scores = [s for s in self.scores if s.stage == stage]
            named = sum(s.named for s in scores)
            wrong = sum(len(s.wrong) for s in scores)
            conus = [s.conus_level_right for s in scores if s.conus_level_right is not None]
            entry = {
                "cases": len(scores),
                "named": named,
                "named_right": named - wrong,
                "naming_accuracy": None if named == 0 else round((named - wrong) / named, 4),
                "low_confidence_cases": sum(s.confidence == "low" for s in scores),
                "conus_level_right": f"{sum(conus)}/{len(conus)}",
                "misnamed": [
                    {"case": s.case_id, "named": given, "drawn": drawn}
                    for s in scores
                    for given, drawn in s.wrong
                ],
                "errors": {},
            }
            for key in MEASURES:
                values = np.abs([e for s in scores for e in s.errors[key]])
                entry["errors"][key] = {
                    "n": int(values.size),
                    "mean_abs": round(float(values.mean()), 3) if values.size else None,
                    "median_abs": round(float(np.median(values)), 3) if values.size else None,
                }
            out[stage] = entry
        return out

    def markdown(self) -> str:
        """The naming and measurement tables (Markdown), one column per stage."""
        summary = self.summary()
        if not summary:
            return ""
        stages = list(summary)

        def cells(fn) -> str:
            return " | ".join(fn(summary[s]) for s in stages)

        def pct(s: dict) -> str:
            acc = s["naming_accuracy"]
            return "n/a" if acc is None else f"{100 * acc:.1f} % ({s['named_right']}/{s['named']})"

        lines = [
            "## Level names and measurements against the phantom's truth",
            "",
            f"| | {' | '.join(stages)} |",
            f"|---|{'---|' * len(stages)}",
            f"| level naming accuracy | {cells(pct)} |",
            f"| cases with level_confidence low | {cells(lambda s: str(s['low_confidence_cases']))} |",
            f"| conus level right | {cells(lambda s: s['conus_level_right'])} |",
        ]
        for key, title in MEASURES.items():

            def err(s: dict, key=key) -> str:
                e = s["errors"][key]
                if not e["n"]:
                    return "n/a"
                return f"{e['median_abs']:.2f} / {e['mean_abs']:.2f} (n={e['n']})"

            lines.append(f"| {title}: median / mean abs error | {cells(err)} |")
        misnamed = [(stage, m) for stage in stages for m in summary[stage]["misnamed"]]
        lines += ["", f"Misnamed bodies and discs: {len(misnamed)}"]
        lines += [
            f"- {stage}: {m['case']} named {m['named']}, drawn {m['drawn'] or 'nothing'}"
            for stage, m in misnamed[:30]
        ]
        return "\n".join(lines) + "\n"
