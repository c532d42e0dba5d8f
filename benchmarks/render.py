"""Rendering apart from measuring: Markdown tables, the suite's ``results.md`` and its plots.

Every part formats its own results with ``table`` and ``fmt`` (its ``markdown(result)``);
``document`` puts the suite's header and the parts' sections together, and ``plots`` draws
``throughput.png`` and ``scaling.png`` from the suite's results. Nothing here runs a model.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np


def fmt(x: float | None, spec: str = ".3g") -> str:
    """``x`` formatted by ``spec``, or "n/a" for a missing value."""
    return "n/a" if x is None else format(x, spec)


def table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    """The lines of a Markdown table: the header, its rule, one line per row."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return lines


def header(result: dict) -> list[str]:
    """The suite's opening lines: device, versions, date, load, and the measured peaks."""
    meta = result["meta"]
    lines = [
        f"Benchmark suite `{meta['suite']}` on {meta['backend']} ({meta['device']}, "
        f"{meta['cpu_count']} CPU cores), jax {meta['versions']['jax']}"
        + (f", torch {meta['versions']['torch']}" if "torch" in meta["versions"] else "")
        + f", {meta['date']}; 1-minute load average {meta['load_avg_1m']['start']:.2f} at start, "
        f"{meta['load_avg_1m']['end']:.2f} at end.",
        "",
    ]
    peaks = result.get("cpu_matmul_peak")
    if peaks:
        lines += [
            "Measured matmul peak of this device (2048x2048, best of 5): "
            + ", ".join(f"{d} {p / 1e9:.0f} GFLOP/s" for d, p in peaks.items())
            + ".",
            "",
        ]
    return lines


def section(title: str, part_result: dict, markdown: Callable[[dict], str]) -> str:
    """``### title`` and the part's Markdown, or the reason the part was skipped."""
    if "skipped" in part_result:
        return f"### {title}\n\nSkipped: {part_result['skipped']}.\n"
    return f"### {title}\n\n{markdown(part_result)}"


def document(result: dict, sections: Sequence[str]) -> str:
    """The suite's ``results.md`` (without its final newline): header, then the sections."""
    return "\n".join([*header(result), *sections])


def plots(result: dict, out: Path) -> list[str]:
    """throughput.png (samples/s per case, JAX and PyTorch) and scaling.png; the files written."""
    written = []
    steps = result.get("train_step", {}).get("rows")
    if steps:
        throughput_plot(steps, result["meta"]["device"], out / "throughput.png")
        written.append("throughput.png")
    scaling = result.get("scaling")
    if scaling and scaling["rows"]:
        scaling_plot(scaling["rows"], bool(scaling.get("note")), out / "scaling.png")
        written.append("scaling.png")
    return written


def _pyplot() -> Any:
    """matplotlib.pyplot on the file-only Agg backend (imported on first use: it is slow)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def throughput_plot(rows: list[dict], device: str, path: Path) -> None:
    """Bars of samples/s per train-step case, lumbar_jax and (where timed) PyTorch."""
    plt = _pyplot()
    labels = [f"{r['config']}\nb{r['batch']} {r['dtype']}" for r in rows]
    x = np.arange(len(rows))
    fig, ax = plt.subplots(figsize=(max(5, 1.6 * len(rows)), 3.8))
    ax.bar(x - 0.2, [r["samples_per_s"] for r in rows], 0.4, label="lumbar_jax")
    if any("torch" in r for r in rows):
        ref = [r["torch"]["samples_per_s"] if "torch" in r else 0 for r in rows]
        ax.bar(x + 0.2, ref, 0.4, label="PyTorch eager")
    ax.set_xticks(x, labels, fontsize=8)
    ax.set_ylabel("samples/s")
    ax.set_title(f"Train step throughput, {device}")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def scaling_plot(rows: list[dict], simulated: bool, path: Path) -> None:
    """Efficiency against device count, one line per scaling kind and mode."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 3.8))
    for kind in ("weak", "strong"):
        for mode in ("mesh", "pmap"):
            line = [r for r in rows if r["scaling"] == kind and r["mode"] == mode]
            if line:
                ax.plot(
                    [r["devices"] for r in line],
                    [r["efficiency"] for r in line],
                    marker="o",
                    label=f"{kind}, {mode}",
                )
    ax.set_xlabel("devices")
    ax.set_ylabel("efficiency")
    title = "Scaling efficiency"
    if simulated:
        title += "\n(simulated CPU devices: not a speed measure)"
    ax.set_title(title, fontsize=10)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
