"""Cascade latency per series: the JAX backend against onnxruntime, same models, same series.

  python -m benchmarks.inference --coarse=RUN --fine=RUN [--series=5]
      [--output=benchmarks/results/inference_cpu.json]

Exports both stages to ONNX (verified, into a temporary folder), then predicts the first
``--series`` + 1 test series of the fine run's dataset with each backend, after one warm-up
series (which includes JAX compilation). Reports per-series wall time of the whole
``predict_series`` (read, cascade, write label map, JSON and PNG) and of the cascade alone,
with the device, versions and date.

In the suite (``run_or_skip``), the runs given, or else the demo's in ``runs/demo``; without
trained runs, or if the export fails its parity check, a note says why the part was skipped.
"""

from __future__ import annotations

import importlib.metadata
import json
import platform
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax
from absl import app, flags

from benchmarks import common
from benchmarks.render import table
from lumbar_jax import __version__
from lumbar_jax.data import datasets
from lumbar_jax.export import onnx as export
from lumbar_jax.inference import jax_stage, onnx_stage, writer

TITLE = "Inference"
DEMO_RUNS = Path("runs/demo")

FLAGS = flags.FLAGS


def define_flags() -> None:
    """Defines the command line's flags.

    Only when run as a program: the suite and the tests import several benchmark modules
    into one process, where flags of the same name would collide.
    """
    flags.DEFINE_string("coarse", "runs/demo/coarse", "Coarse run or checkpoint.")
    flags.DEFINE_string("fine", "runs/demo/fine", "Fine run or checkpoint.")
    flags.DEFINE_integer("series", 5, "Timed series per backend (after one warm-up).")
    flags.DEFINE_string("output", "", "JSON file for the results (and a .md beside).")


def time_backend(models: Sequence[Any], cases: Sequence[Any], output: Path) -> dict:
    """Median seconds per series (whole predict_series, and the cascade alone)."""
    totals, cascades = [], []
    for i, case in enumerate(cases):
        start = time.perf_counter()
        summary = writer.predict_series(*models, case.image_path, output, case.case_id)
        if i == 0:
            continue  # warm-up: compilation, caches
        totals.append(time.perf_counter() - start)
        cascades.append(summary["cascade"]["seconds"]["total"])
    return {
        "series_s_median": statistics.median(totals),
        "cascade_s_median": statistics.median(cascades),
        "series_s_all": [round(t, 3) for t in totals],
    }


def run(coarse_path: str, fine_path: str, num_series: int) -> dict:
    """Exports both stages, then times each backend on the same series.

    Args:
      coarse_path: the coarse run or checkpoint.
      fine_path: the fine run or checkpoint; its dataset's test series are predicted.
      num_series: timed series per backend, after one warm-up series.

    Returns:
      The device, versions, runs, each stage's export parity (max abs difference and argmax
      agreement per check) and, per backend, ``time_backend``'s medians.
    """
    coarse, fine = jax_stage.load_stages(coarse_path, fine_path)
    dataset = datasets.from_config(fine.config.data)
    # Test series first; any others if the split is short (only timing matters here).
    test_ids = dataset.splits.get(fine.config.data.test_split, [])
    ordered = test_ids + sorted(set(dataset.cases) - set(test_ids))
    cases = [dataset.cases[i] for i in ordered[: num_series + 1]]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        parity = {}
        for trained in (coarse, fine):
            name = trained.config.stage
            checks = export.export_stage(trained, tmp / f"{name}.onnx")
            parity[name] = {c.name: [c.max_abs_diff, c.argmax_agreement] for c in checks}
        onnx_models, _ = onnx_stage.load_stages(tmp / "coarse.onnx", tmp / "fine.onnx")
        jax_models = (coarse.cascade_model(), fine.cascade_model())
        results = {
            "jax": time_backend(jax_models, cases, tmp / "jax"),
            "onnxruntime": time_backend(onnx_models, cases, tmp / "onnx"),
        }
    d = cases[0]
    return {
        "benchmark": "inference",
        "date": common.utc_now(),
        "device": f"{jax.devices()[0].device_kind} ({jax.default_backend()})",
        "cpu": platform.processor() or platform.machine(),
        "versions": {
            "lumbar_jax": __version__,
            "jax": jax.__version__,
            # The onnx extra; read without importing it.
            "onnxruntime": importlib.metadata.version("onnxruntime"),
        },
        "coarse": f"{coarse_path} (input {list(coarse.config.data.input_shape)})",
        "fine": f"{fine_path} (input {list(fine.config.data.input_shape)})",
        "series_timed": len(cases) - 1,
        "example_series": str(d.image_path.name),
        "export_parity": parity,
        "results": results,
    }


def run_or_skip(coarse: str, fine: str, num_series: int, demo: Path = DEMO_RUNS) -> dict:
    """``run`` on the given runs, else on the demo's; ``{"skipped": why}`` if it cannot run.

    Args:
      coarse: the coarse run, or "" for the demo's.
      fine: the fine run, or "" for the demo's.
      num_series: timed series per backend.
      demo: where the demo writes its runs (``coarse/`` and ``fine/``).
    """
    if not coarse or not fine:
        if not ((demo / "coarse").is_dir() and (demo / "fine").is_dir()):
            return {
                "skipped": "no trained runs: pass --coarse=RUN --fine=RUN (or train the demo, "
                "which writes runs/demo/coarse and runs/demo/fine)"
            }
        coarse, fine = str(demo / "coarse"), str(demo / "fine")
    try:
        return run(coarse, fine, num_series)
    except Exception as e:  # e.g. an export parity failure: keep the other parts' results
        return {"skipped": f"failed: {type(e).__name__}: {e}"}


def markdown(result: dict) -> str:
    """The median latency per series of each backend, whole and cascade alone."""
    cells = [
        [name, f"{r['series_s_median']:.2f} s", f"{r['cascade_s_median']:.2f} s"]
        for name, r in (
            ("JAX", result["results"]["jax"]),
            ("onnxruntime", result["results"]["onnxruntime"]),
        )
    ]
    header = ["backend", "whole series (read, cascade, write)", "cascade alone"]
    lines = [
        f"Cascade latency per series on {result['device']}, {result['series_timed']} "
        f"series after one warm-up ({result['date']}):",
        "",
        *table(header, cells),
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> None:
    del argv
    result = run(FLAGS.coarse, FLAGS.fine, FLAGS.series)
    print(json.dumps(result, indent=1))
    print(markdown(result))
    if FLAGS.output:
        path = Path(FLAGS.output)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(result, indent=1) + "\n")
        path.with_suffix(".md").write_text(markdown(result))


if __name__ == "__main__":
    define_flags()
    app.run(main)
