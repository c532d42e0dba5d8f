"""Scoring a cascade on a dataset split: Dice, HD95, ASSD and satisfaction, and the reports.

Every case is predicted from its image file as ``predict`` would (whole series -> coarse ->
crop -> fine -> back on the series' grid) and compared with its reference on the series' own
grid, for the coarse stage alone and for the cascade.
"""

from __future__ import annotations

import csv
import dataclasses
import io as std_io
import json
import math
import warnings
from pathlib import Path

import numpy as np

from lumbar_jax import STRUCTURES, __version__, cascade, metrics, satisfaction, surface
from lumbar_jax.data import datasets, io, prepared

STAGES = ("coarse", "cascade")


@dataclasses.dataclass
class Evaluation:
    """Per-case scores of both stages; arrays are (cases, structures), NaN where undefined."""

    case_ids: list[str]
    dice: dict[str, np.ndarray]
    hd95: dict[str, np.ndarray]
    assd: dict[str, np.ndarray]
    instances: dict[str, list[tuple[str, satisfaction.Instance]]]
    seconds: list[float]


def evaluate(
    coarse: cascade.StageModel,
    fine: cascade.StageModel,
    dataset: datasets.Dataset,
    split: str,
    *,
    flip_lr: bool = False,
    progress: bool = False,
) -> Evaluation:
    """Predicts every case of a split with the cascade and scores both stages."""
    cases = dataset.split(split)
    rows = {k: {s: [] for s in STAGES} for k in ("dice", "hd95", "assd")}
    found = {s: [] for s in STAGES}
    seconds = []
    num_classes = len(STRUCTURES) + 1
    iterator = cases
    if progress:
        from tqdm import tqdm  # only for the command line

        iterator = tqdm(cases, unit="case")
    for case in iterator:
        if case.label_path is None:
            raise ValueError(f"{case.image_path}: case {case.case_id} has no label to compare.")
        volume = io.read_canonical(case.image_path)
        reference = prepared.read_label(case, dataset, volume)  # mapped, geometry checked
        result = cascade.predict(
            coarse,
            fine,
            volume.array_dhw,
            volume.spacing_dhw,
            flip_lr=flip_lr,
            source=str(case.image_path),
        )
        seconds.append(result.seconds["total"])
        ref, labeled = reference, np.asarray(dataset.labeled_classes, bool)
        for stage, pred in (("coarse", result.coarse_labels_dhw), ("cascade", result.labels_dhw)):
            rows["dice"][stage].append(metrics.dice_per_class(pred, ref, num_classes, labeled))
            hd95, assd = surface.per_class(pred, ref, volume.spacing_dhw, num_classes, labeled)
            rows["hd95"][stage].append(hd95)
            rows["assd"][stage].append(assd)
            found[stage] += [
                (case.case_id, inst)
                for inst in satisfaction.instances(pred, ref, volume.spacing_dhw, labeled)
            ]
    stack = {
        k: {s: np.array(v[s]).reshape(-1, len(STRUCTURES)) for s in STAGES} for k, v in rows.items()
    }
    return Evaluation(
        [c.case_id for c in cases], stack["dice"], stack["hd95"], stack["assd"], found, seconds
    )


def _finite_mean(values: np.ndarray) -> tuple[float, int]:
    """(mean over finite values, number of infinite ones) per column."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        finite = np.where(np.isfinite(values), values, np.nan)
        return np.nanmean(finite, axis=0), np.isinf(values).sum(axis=0)


def _fmt(value: float, digits: int = 3) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{value:.{digits}f}"


def _distance(mean: float, infinite: int) -> str:
    text = _fmt(mean, 1)
    return f"{text} ({infinite} empty)" if infinite else text


def summary(ev: Evaluation) -> dict:
    """JSON-ready summary: per stage and structure, Dice mean/min/max, HD95, ASSD, rates."""
    out = {}
    for stage in STAGES:
        dice = metrics.summarize(ev.dice[stage])
        hd95, hd95_inf = _finite_mean(ev.hd95[stage])
        assd, assd_inf = _finite_mean(ev.assd[stage])
        rate = satisfaction.rates([inst for _, inst in ev.instances[stage]])
        out[stage] = {
            name: {
                "dice_mean": _none(dice["mean"][i]),
                "dice_min": _none(dice["min"][i]),
                "dice_max": _none(dice["max"][i]),
                "cases": int(dice["count"][i]),
                "hd95_mm_mean": _none(hd95[i]),
                "assd_mm_mean": _none(assd[i]),
                "cases_one_side_empty": int(max(hd95_inf[i], assd_inf[i])),
                "satisfactory": rate[name][0],
                "instances": rate[name][1],
            }
            for i, name in enumerate(STRUCTURES)
        }
    return out


def _none(value) -> float | None:
    value = float(value)
    return None if math.isnan(value) else round(value, 4)


def markdown(ev: Evaluation, title: str, max_missed: int = 100) -> str:
    """The report: cascade beside the paper, coarse versus cascade, missed instances."""
    s = summary(ev)
    lines = [f"# {title}", "", "## Cascade beside the paper (Guo et al. 2022, 11 test series)", ""]
    lines += [
        "| structure | Dice mean | Dice min-max | paper Dice | paper min-max | HD95 mm | "
        "ASSD mm | satisfactory | paper satisfactory |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name in STRUCTURES:
        r = s["cascade"][name]
        p_mean, p_lo, p_hi = metrics.PAPER_DICE[name]
        p_ok, p_all = satisfaction.PAPER_RATE[name]
        ok = (
            f"{100 * r['satisfactory'] / r['instances']:.1f} % ({r['satisfactory']}/{r['instances']})"
            if r["instances"]
            else "n/a"
        )
        dice_range = (
            "n/a" if r["cases"] == 0 else f"{_fmt(r['dice_min'], 2)}-{_fmt(r['dice_max'], 2)}"
        )
        lines.append(
            f"| {name} | {_fmt(r['dice_mean'])} | {dice_range} | {p_mean:.3f} | "
            f"{p_lo:.2f}-{p_hi:.2f} | {_distance(r['hd95_mm_mean'], r['cases_one_side_empty'])} | "
            f"{_fmt(r['assd_mm_mean'], 2)} | {ok} | {100 * p_ok / p_all:.1f} % ({p_ok}/{p_all}) |"
        )
    lines += ["", "## Coarse stage alone versus the cascade", ""]
    lines += [
        "| structure | coarse Dice | cascade Dice | coarse HD95 mm | cascade HD95 mm | "
        "coarse satisfactory | cascade satisfactory |",
        "|---|---|---|---|---|---|---|",
    ]
    for name in STRUCTURES:
        c, f = s["coarse"][name], s["cascade"][name]
        lines.append(
            f"| {name} | {_fmt(c['dice_mean'])} | {_fmt(f['dice_mean'])} | "
            f"{_fmt(c['hd95_mm_mean'], 1)} | {_fmt(f['hd95_mm_mean'], 1)} | "
            f"{c['satisfactory']}/{c['instances']} | {f['satisfactory']}/{f['instances']} |"
        )
    missed = [(cid, i) for cid, i in ev.instances["cascade"] if not i.satisfactory]
    lines += ["", f"## Instances not satisfactory (cascade): {len(missed)}", ""]
    if missed:
        lines += ["| case | structure | where | centre mm (d, h, w) | recall | precision |"]
        lines += ["|---|---|---|---|---|---|"]
        for cid, i in missed[:max_missed]:
            lines.append(
                f"| {cid} | {i.structure} | {i.where} | {i.centroid_mm} | {i.recall:.2f} | "
                f"{i.precision:.2f} |"
            )
        if len(missed) > max_missed:
            lines.append(f"| ... {len(missed) - max_missed} more in evaluation.json | | | | | |")
    lines += [
        "",
        f"Satisfactory: at least {satisfaction.RECALL:.0%} of a reference instance predicted "
        f"as its structure and at least {satisfaction.PRECISION:.0%} of the prediction "
        "touching it inside it. HD95/ASSD: mean over cases where both masks exist; "
        "'(k empty)' counts cases where one side is empty.",
        "",
        f"Cascade time per series: median {np.median(ev.seconds):.2f} s "
        f"(min {min(ev.seconds):.2f}, max {max(ev.seconds):.2f}, first includes compilation).",
    ]
    return "\n".join(lines) + "\n"


def per_case_csv(ev: Evaluation) -> str:
    buffer = std_io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["case", "stage", "structure", "dice", "hd95_mm", "assd_mm"])
    for stage in STAGES:
        for n, case_id in enumerate(ev.case_ids):
            for i, name in enumerate(STRUCTURES):
                values = (ev.dice[stage][n, i], ev.hd95[stage][n, i], ev.assd[stage][n, i])
                writer.writerow(
                    [case_id, stage, name, *("" if math.isnan(v) else f"{v:.4f}" for v in values)]
                )
    return buffer.getvalue()


def write_reports(ev: Evaluation, output: Path, title: str, meta: dict) -> None:
    """evaluation.md, per_case.csv and evaluation.json into ``output`` (each atomically)."""
    document = {
        **meta,
        "lumbar_jax_version": __version__,
        "summary": summary(ev),
        "seconds_per_series": [round(t, 3) for t in ev.seconds],
        "instances": {
            stage: [
                {"case": cid, **dataclasses.asdict(i), "satisfactory": i.satisfactory}
                for cid, i in ev.instances[stage]
            ]
            for stage in STAGES
        },
    }
    texts = {
        "evaluation.md": markdown(ev, title),
        "per_case.csv": per_case_csv(ev),
        "evaluation.json": json.dumps(document, indent=1),
    }
    for name, text in texts.items():
        tmp = output / f".tmp-{name}"
        tmp.write_text(text)
        tmp.replace(output / name)
