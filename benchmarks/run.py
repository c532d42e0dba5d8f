"""The benchmark suite: train step, scaling, roofline, input pipeline, inference, PyTorch.

  python -m benchmarks.run --suite quick --output DIR [--coarse=RUN --fine=RUN]

Runs on whatever devices JAX sees and writes ``DIR/results.json`` (every number with the
device, versions, configs, date and the machine's load average at start and end),
``DIR/results.md`` (the tables) and PNG plots (``throughput.png``, ``scaling.png``).

``quick`` (a few minutes on a 2-core CPU) times the CPU presets (``fine:cpu``, ``coarse:cpu``)
at their batch; ``full`` times the paper's coarse and fine configs at batch 1 and 5 in
float32 and bfloat16, and adds the per-layer table. Each part can be skipped with
``--skip=scaling,pipeline,...``.

This module only runs the suite: each part is a module of its own with ``run(...)`` (its
JSON-ready results) and ``markdown(result)`` (its section of ``results.md``), in ``PARTS``;
the helpers they share are in ``benchmarks/common.py``, the Markdown document and the plots
in ``benchmarks/render.py``.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np
from absl import app, flags

from benchmarks import (
    common,
    hardware,
    inference,
    layers,
    pipeline,
    render,
    roofline,
    scaling,
    train_step,
)

FLAGS = flags.FLAGS
# Each part's module, in the order the suite runs them and results.md shows them.
PARTS = {
    "train_step": train_step,
    "scaling": scaling,
    "roofline": roofline,
    "pipeline": pipeline,
    "inference": inference,
    "layers": layers,
}

# Per suite: the train-step cases (config, batch, dtype), the scaling run and the rest.
SUITES = {
    "quick": {
        "train_step": [
            ("fine:cpu", 2, "float32"),
            ("fine:cpu", 2, "bfloat16"),
            ("coarse:cpu", 2, "float32"),
        ],
        "steps": 3,
        "torch_steps": 3,
        "rounds": 3,
        "scaling": {"config": "fine:tiny", "devices": 2, "per_device": 1, "global_batch": 2},
        "roofline": {"config": "fine", "batch": 5, "dtypes": ["float32", "bfloat16"]},
        "pipeline": {"config": "fine:cpu", "cases": 4, "samples": 8, "workers": [0, 1]},
        "layers": {"config": "fine:cpu", "batch": 2, "impls": ["onednn", "stack2d"]},
        "inference_series": 2,
    },
    "full": {
        "train_step": [
            (stage, batch, dtype)
            for stage in ("coarse", "fine")
            for batch in (1, 5)
            for dtype in ("float32", "bfloat16")
        ]
        + [("fine:cpu", 2, "float32"), ("fine:cpu", 2, "bfloat16")],
        "steps": 3,
        "torch_steps": 3,
        "rounds": 1,
        "scaling": {"config": "fine:cpu", "devices": 4, "per_device": 1, "global_batch": 4},
        "roofline": {"config": "fine", "batch": 5, "dtypes": ["float32", "bfloat16"]},
        "pipeline": {"config": "fine", "cases": 12, "samples": 48, "workers": [0, 1, 2]},
        "layers": {"config": "fine:cpu", "batch": 2, "impls": ["onednn", "stack2d", "xla"]},
        "inference_series": 5,
    },
}


def define_flags() -> None:
    """Defines the command line's flags (only when run as a program; see train_step.py)."""
    flags.DEFINE_enum("suite", "quick", list(SUITES), "Which suite.")
    flags.DEFINE_string("output", "benchmarks/results/quick", "Folder for the results.")
    flags.DEFINE_list("skip", [], f"Parts to leave out, of {', '.join(PARTS)}.")
    flags.DEFINE_string("coarse", "", "Trained coarse run for the inference benchmark.")
    flags.DEFINE_string("fine", "", "Trained fine run for the inference benchmark.")
    flags.DEFINE_bool("torch", True, "Time the PyTorch reference (if torch is installed).")
    flags.DEFINE_list(
        "cases",
        [],
        "Train-step cases CONFIG/BATCH/DTYPE instead of the suite's, e.g. fine/1/float32.",
    )
    flags.DEFINE_integer("steps", 0, "Timed train steps per case and round (0: the suite's).")
    flags.DEFINE_integer("rounds", 0, "Alternating JAX/PyTorch timing rounds (0: the suite's).")


def run_part(name: str, suite: dict, results: dict, context: dict) -> dict:
    """Runs one part of the suite with its settings.

    Args:
      name: a key of ``PARTS``.
      suite: the suite's settings (``SUITES``' form).
      results: the parts' results so far (the pipeline compares with the train step's).
      context: ``peaks`` (the device's measured FLOP/s per dtype), ``with_torch``, and the
        trained ``coarse`` and ``fine`` runs for inference.
    """
    overrides = suite.get("overrides", {})
    with_torch = context["with_torch"]
    if name == "train_step":
        return train_step.run(
            suite["train_step"],
            suite["steps"],
            suite.get("rounds", 1),
            context["peaks"],
            with_torch,
            overrides,
            torch_steps=suite["torch_steps"],
        )
    if name == "inference":
        return inference.run_or_skip(context["coarse"], context["fine"], suite["inference_series"])
    if name == "pipeline":
        step_rows = results.get("train_step", {}).get("rows", [])
        return pipeline.run(suite["pipeline"], step_rows, overrides)
    if name == "layers":
        return layers.run(suite["layers"], with_torch, overrides)
    return PARTS[name].run(suite[name], overrides)  # scaling, roofline


def _wanted(name: str, suite: dict, skip: Sequence[str]) -> bool:
    """Whether a part runs: not skipped, and the suite has settings for it."""
    if name in skip:
        return False
    return name in ("train_step", "inference") or bool(suite.get(name))


def _jsonable(x: Any) -> Any:
    """``x`` with NumPy scalars (at any depth) as Python numbers."""
    if isinstance(x, dict):
        return {k: _jsonable(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.generic):
        return x.item()
    return x


def run_suite(
    suite_name: str,
    out: Path,
    skip: Sequence[str] = (),
    coarse: str = "",
    fine: str = "",
    with_torch: bool = True,
    suite: dict | None = None,
) -> dict:
    """Runs the suite's parts and writes results.json, results.md and the plots to ``out``.

    Args:
      suite_name: a key of ``SUITES``, also the name in the results.
      out: the folder for the results.
      skip: parts to leave out.
      coarse: trained coarse run for inference ("" for the demo's).
      fine: trained fine run for inference ("" for the demo's).
      with_torch: time the PyTorch reference where torch is installed.
      suite: settings instead of the named suite's (e.g. tiny shapes in tests).

    Returns:
      The results as written to results.json.
    """
    suite = suite or SUITES[suite_name]
    load_start, suite_start = os.getloadavg()[0], time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    result: dict = {"meta": {**common.metadata(), "suite": suite_name}, "suite": suite}
    peaks = {}
    if jax.default_backend() == "cpu":
        for dtype in ("float32", "bfloat16"):
            peaks[dtype] = hardware.measure_cpu_matmul_peak(dtype)["flops_per_s"]
        result["cpu_matmul_peak"] = peaks
    result["gpu_peaks"] = hardware.GPU_PEAKS
    seconds = result["part_seconds"] = {}
    context = {
        "peaks": peaks,
        "with_torch": with_torch and common.torch_available(),
        "coarse": coarse,
        "fine": fine,
    }
    for name in PARTS:
        if _wanted(name, suite, skip):
            start = time.perf_counter()
            result[name] = run_part(name, suite, result, context)
            seconds[name] = round(time.perf_counter() - start, 1)
    result["meta"]["wall_s"] = round(time.perf_counter() - suite_start, 1)
    result["meta"]["load_avg_1m"] = {"start": load_start, "end": os.getloadavg()[0]}
    result["plots"] = render.plots(result, out)
    result = _jsonable(result)
    (out / "results.json").write_text(json.dumps(result, indent=1, default=str) + "\n")
    (out / "results.md").write_text(markdown(result) + "\n")
    return result


def markdown(result: dict) -> str:
    """The suite's results.md: its header, then each part's section that ran."""
    sections = [
        render.section(module.TITLE, result[name], module.markdown)
        for name, module in PARTS.items()
        if name in result
    ]
    return render.document(result, sections)


def parse_cases(cases: list[str]) -> list[tuple[str, int, str]]:
    """``["fine/1/float32", ...]`` -> ``[("fine", 1, "float32"), ...]``; names what is wrong."""
    parsed = []
    for case in cases:
        parts = case.split("/")
        if len(parts) != 3 or not parts[1].isdigit() or parts[2] not in ("float32", "bfloat16"):
            raise ValueError(
                f"--cases entry {case!r} is not CONFIG/BATCH/DTYPE, e.g. fine/1/float32 "
                "(dtype float32 or bfloat16)."
            )
        parsed.append((parts[0], int(parts[1]), parts[2]))
    return parsed


def main(argv: list[str]) -> None:
    del argv
    suite = dict(SUITES[FLAGS.suite])
    if FLAGS.cases:
        suite["train_step"] = parse_cases(FLAGS.cases)
    if FLAGS.steps:
        suite["steps"] = suite["torch_steps"] = FLAGS.steps
    if FLAGS.rounds:
        suite["rounds"] = FLAGS.rounds
    result = run_suite(
        FLAGS.suite,
        Path(FLAGS.output),
        FLAGS.skip,
        FLAGS.coarse,
        FLAGS.fine,
        FLAGS.torch,
        suite=suite,
    )
    print(markdown(result))


if __name__ == "__main__":
    define_flags()
    app.run(main)
