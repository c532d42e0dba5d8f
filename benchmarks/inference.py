"""Cascade latency per series: the JAX backend against onnxruntime, same models, same series.

  python -m benchmarks.inference --coarse=RUN --fine=RUN [--series=5]
      [--output=benchmarks/results/inference_cpu.json]

Exports both stages to ONNX (verified, into a temporary folder), then predicts the first
``--series`` + 1 test series of the fine run's dataset with each backend, after one warm-up
series (which includes JAX compilation). Reports per-series wall time of the whole
``predict_series`` (read, cascade, write label map, JSON and PNG) and of the cascade alone,
with the device, versions and date.
"""

from __future__ import annotations

import datetime
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path

import jax
import onnxruntime
from absl import app, flags

from lumbar_jax import __version__, export, inference, onnx_backend, stage
from lumbar_jax.data import datasets

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


def time_backend(models, cases, output: Path) -> dict[str, float]:
    """Median seconds per series (whole predict_series, and the cascade alone)."""
    totals, cascades = [], []
    for i, case in enumerate(cases):
        start = time.perf_counter()
        summary = inference.predict_series(*models, case.image_path, output, case.case_id)
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
    coarse, fine = stage.load_cascade(coarse_path, fine_path)
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
        onnx_models, _ = onnx_backend.load_cascade(tmp / "coarse.onnx", tmp / "fine.onnx")
        jax_models = (coarse.cascade_model(), fine.cascade_model())
        results = {
            "jax": time_backend(jax_models, cases, tmp / "jax"),
            "onnxruntime": time_backend(onnx_models, cases, tmp / "onnx"),
        }
    d = cases[0]
    return {
        "benchmark": "inference",
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "device": f"{jax.devices()[0].device_kind} ({jax.default_backend()})",
        "cpu": platform.processor() or platform.machine(),
        "versions": {
            "lumbar_jax": __version__,
            "jax": jax.__version__,
            "onnxruntime": onnxruntime.__version__,
        },
        "coarse": f"{coarse_path} (input {list(coarse.config.data.input_shape)})",
        "fine": f"{fine_path} (input {list(fine.config.data.input_shape)})",
        "series_timed": len(cases) - 1,
        "example_series": str(d.image_path.name),
        "export_parity": parity,
        "results": results,
    }


def markdown(result: dict) -> str:
    jax_r, ort_r = result["results"]["jax"], result["results"]["onnxruntime"]
    return "\n".join(
        [
            f"Cascade latency per series on {result['device']}, {result['series_timed']} "
            f"series after one warm-up ({result['date']}):",
            "",
            "| backend | whole series (read, cascade, write) | cascade alone |",
            "|---|---|---|",
            f"| JAX | {jax_r['series_s_median']:.2f} s | {jax_r['cascade_s_median']:.2f} s |",
            f"| onnxruntime | {ort_r['series_s_median']:.2f} s | "
            f"{ort_r['cascade_s_median']:.2f} s |",
            "",
        ]
    )


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
