"""An evaluation written out: Markdown tables beside the paper's, per-case CSV, JSON."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from lumbar_jax import __version__, files
from lumbar_jax.evaluation import satisfaction
from lumbar_jax.evaluation.evaluator import Evaluation
from lumbar_jax.labels import PAPER_DICE, PAPER_SATISFACTORY, STRUCTURES


def _fmt(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{value:.{digits}f}"


def _distance(mean: float | None, infinite: int) -> str:
    text = _fmt(mean, 1)
    return f"{text} ({infinite} empty)" if infinite else text


def _rate(r: dict[str, Any]) -> str:
    if not r.get("instances"):
        return "n/a"
    return (
        f"{100 * r['satisfactory'] / r['instances']:.1f} % ({r['satisfactory']}/{r['instances']})"
    )


def dice_table(ev: Evaluation, stage: str, title: str) -> str:
    """Markdown: a stage's Dice per structure (mean, range, cases) beside the paper's."""
    s = ev.summary().get(stage, {})
    lines = [
        title,
        "",
        "| structure | Dice mean | Dice min-max | cases | paper mean | paper min-max |",
        "|---|---|---|---|---|---|",
    ]
    for name in STRUCTURES:
        r = s.get(name, {"cases": 0})
        p_mean, p_lo, p_hi = PAPER_DICE[name]
        ours = "n/a" if r["cases"] == 0 else _fmt(r["dice_mean"])
        ours_range = (
            "n/a" if r["cases"] == 0 else f"{_fmt(r['dice_min'], 2)}-{_fmt(r['dice_max'], 2)}"
        )
        lines.append(
            f"| {name} | {ours} | {ours_range} | {r['cases']} | {p_mean:.3f} | "
            f"{p_lo:.2f}-{p_hi:.2f} |"
        )
    return "\n".join(lines)


def named(values: np.ndarray) -> dict[str, float | None]:
    """Per-structure values by name, NaN as None (JSON-ready)."""
    return {
        n: (None if np.isnan(v) else round(float(v), 4))
        for n, v in zip(STRUCTURES, values, strict=True)
    }


def _paper_table(s: dict) -> list[str]:
    lines = [
        "| structure | Dice mean | Dice min-max | paper Dice | paper min-max | HD95 mm | "
        "ASSD mm | satisfactory | paper satisfactory |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name in STRUCTURES:
        r = s["cascade"][name]
        p_mean, p_lo, p_hi = PAPER_DICE[name]
        p_ok, p_all = PAPER_SATISFACTORY[name]
        dice_range = (
            "n/a" if r["cases"] == 0 else f"{_fmt(r['dice_min'], 2)}-{_fmt(r['dice_max'], 2)}"
        )
        lines.append(
            f"| {name} | {_fmt(r['dice_mean'])} | {dice_range} | {p_mean:.3f} | "
            f"{p_lo:.2f}-{p_hi:.2f} | "
            f"{_distance(r.get('hd95_mm_mean'), r.get('cases_one_side_empty', 0))} | "
            f"{_fmt(r.get('assd_mm_mean'), 2)} | {_rate(r)} | "
            f"{100 * p_ok / p_all:.1f} % ({p_ok}/{p_all}) |"
        )
    return lines


def _coarse_table(s: dict) -> list[str]:
    lines = [
        "| structure | coarse Dice | cascade Dice | coarse HD95 mm | cascade HD95 mm | "
        "coarse satisfactory | cascade satisfactory |",
        "|---|---|---|---|---|---|---|",
    ]
    for name in STRUCTURES:
        c, f = s["coarse"][name], s["cascade"][name]
        lines.append(
            f"| {name} | {_fmt(c['dice_mean'])} | {_fmt(f['dice_mean'])} | "
            f"{_fmt(c.get('hd95_mm_mean'), 1)} | {_fmt(f.get('hd95_mm_mean'), 1)} | "
            f"{c.get('satisfactory', 0)}/{c.get('instances', 0)} | "
            f"{f.get('satisfactory', 0)}/{f.get('instances', 0)} |"
        )
    return lines


def _missed_table(ev: Evaluation, max_missed: int) -> list[str]:
    missed = [(cid, i) for cid, i in ev.instances.get("cascade", []) if not i.satisfactory]
    lines = [f"## Instances not satisfactory (cascade): {len(missed)}", ""]
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
    return lines


def _failure_table(ev: Evaluation) -> list[str]:
    """Per structure: why the cascade's unsatisfactory instances fail, and by how much."""
    missed = [i for _, i in ev.instances.get("cascade", []) if not i.satisfactory]
    if not missed:
        return []
    lines = [
        "## Why instances fail (cascade)",
        "",
        f"| structure | not satisfactory | recall < {satisfaction.RECALL:.2f} | "
        f"precision < {satisfaction.PRECISION:.2f} | median recall | median precision |",
        "|---|---|---|---|---|---|",
    ]
    for name in STRUCTURES:
        failed = [i for i in missed if i.structure == name]
        if failed:
            recall = np.array([i.recall for i in failed])
            precision = np.array([i.precision for i in failed])
            lines.append(
                f"| {name} | {len(failed)} | {np.sum(recall < satisfaction.RECALL)} | "
                f"{np.sum(precision < satisfaction.PRECISION)} | {np.median(recall):.2f} | "
                f"{np.median(precision):.2f} |"
            )
    return [*lines, ""]


def markdown(ev: Evaluation, title: str, max_missed: int = 100) -> str:
    """A cascade's report: beside the paper, coarse versus cascade, missed instances."""
    s = ev.summary()
    lines = [f"# {title}", "", "## Cascade beside the paper (Guo et al. 2022, 11 test series)", ""]
    lines += _paper_table(s)
    lines += ["", "## Coarse stage alone versus the cascade", ""]
    lines += _coarse_table(s)
    lines += ["", *_failure_table(ev), *_missed_table(ev, max_missed)]
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
    """case, stage, structure, dice, hd95_mm, assd_mm: one row per case, stage and structure."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["case", "stage", "structure", "dice", "hd95_mm", "assd_mm"])
    nan = np.full((len(ev.case_ids), len(STRUCTURES)), np.nan)
    for stage in ev.stages:
        hd95, assd = ev.hd95.get(stage, nan), ev.assd.get(stage, nan)
        for n, case_id in enumerate(ev.case_ids):
            for i, name in enumerate(STRUCTURES):
                values = (ev.dice[stage][n, i], hd95[n, i], assd[n, i])
                writer.writerow(
                    [case_id, stage, name, *("" if math.isnan(v) else f"{v:.4f}" for v in values)]
                )
    return buffer.getvalue()


def write_reports(
    ev: Evaluation,
    output: Path,
    title: str,
    meta: dict,
    extra: dict[str, tuple[str, Any]] | None = None,
) -> None:
    """evaluation.md, per_case.csv and evaluation.json into ``output`` (each atomically).

    Args:
      ev: the evaluation.
      output: the folder.
      title: the Markdown title.
      meta: written first into evaluation.json.
      extra: {key: (Markdown section, JSON-ready value)} of other scores, appended to
        evaluation.md and written under ``key`` into evaluation.json.
    """
    extra = extra or {}
    document = {
        **meta,
        "lumbar_jax_version": __version__,
        "summary": ev.summary(),
        "seconds_per_series": [round(t, 3) for t in ev.seconds],
        "instances": {
            stage: [
                {"case": cid, **dataclasses.asdict(i), "satisfactory": i.satisfactory}
                for cid, i in ev.instances.get(stage, [])
            ]
            for stage in ev.stages
        },
    }
    document |= {key: value for key, (_, value) in extra.items()}
    text = "\n".join([markdown(ev, title), *(section for section, _ in extra.values())])
    files.write_text(output / "evaluation.md", text)
    files.write_text(output / "per_case.csv", per_case_csv(ev))
    files.write_text(output / "evaluation.json", json.dumps(document, indent=1))


def dice_report(ev: Evaluation, stage: str, title: str, meta: dict[str, Any]) -> dict[str, str]:
    """A stage's Dice table: {"test_dice.md": the Markdown table, "test_dice.json": ...}."""
    table = dice_table(ev, stage, title)
    summary = ev.dice_summary(stage)
    report = {**meta, **{k: named(summary[k]) for k in ("mean", "min", "max")}}
    return {"test_dice.md": table + "\n", "test_dice.json": json.dumps(report, indent=2) + "\n"}
