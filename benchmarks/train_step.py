"""The train step: time, throughput, FLOP/s, utilization, compile time, memory; and PyTorch.

  python -m benchmarks.train_step --config=fine --batch=1 --steps=3

As a program, prints the device, compile time and the median wall time per step (after one
warm-up step) of one config, on synthetic input of the config's shape. In the suite
(``run``), times every case CONFIG/BATCH/DTYPE, adds XLA's cost and memory analyses and the
utilization against the device's peak and, with the optional extra, times the same U-Net in
PyTorch (``benchmarks/torch_unet.py``) on the same shapes, in alternating rounds with it.
"""

from __future__ import annotations

import copy
import json
import statistics
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import ml_collections
import numpy as np
from absl import app, flags

from benchmarks import common, hardware
from benchmarks.render import fmt, table
from lumbar_jax import config as config_lib
from lumbar_jax.model.conv import resolve_conv_impl, resolve_layer_impl

TITLE = "Train step"
_OVERRIDES: dict[str, str] = {}

FLAGS = flags.FLAGS


def define_flags() -> None:
    """Defines the command line's flags.

    Only when run as a program: the suite and the tests import several benchmark modules
    into one process, where flags of the same name would collide.
    """
    flags.DEFINE_string("config", "fine", "Config NAME[:ARG] or path.")
    flags.DEFINE_integer("batch", 1, "Batch size.")
    flags.DEFINE_integer("steps", 3, "Timed steps.")


class JaxStep:
    """The compiled, donating lumbar_jax train step of one case; each call runs one step.

    Args:
      config: the case's config (its model, dtype and input shape).
      batch: samples per step.
      name: the config's name, for the results.
    """

    def __init__(self, config: ml_collections.ConfigDict, batch: int, name: str = "") -> None:
        self.config, self.batch, self.name = config, batch, name
        self.dtype = str(config.model.dtype)
        self.compiled, self.compile_s, self.runner = common.compile_train_step(config, batch)

    def __call__(self) -> None:
        """Runs one step and waits for it."""
        self.runner()

    def _cost(self) -> dict[str, float]:
        """XLA's cost analysis of the step; of the same step with XLA's convolution when the
        step calls oneDNN, whose FFI calls XLA does not count (the same arithmetic)."""
        if resolve_conv_impl(self.config.model.conv_impl, self.config.model.dtype) != "onednn":
            return common.cost_analysis(self.compiled)
        counted = copy.deepcopy(self.config)
        counted.model.conv_impl = "xla"
        return common.cost_analysis(common.compile_train_step_shapes(counted, self.batch))

    def row(self, times: list[float], peaks: Mapping[str, float]) -> dict:
        """Throughput, FLOP/s, utilization, compile time and memory from the step times."""
        config, batch, dtype = self.config, self.batch, self.dtype
        cost, memory = self._cost(), common.memory_analysis(self.compiled)
        step_s = float(np.median(times))
        peak, peak_source = hardware.device_peak(dtype, peaks)
        stats = jax.devices()[0].memory_stats() or {}
        voxels = batch * int(np.prod(config.data.input_shape))
        conv, layer = config.model.conv_impl, config.model.layer_impl
        return {
            "framework": "lumbar_jax",
            "config": self.name,
            "batch": batch,
            "dtype": dtype,
            "input_shape": list(config.data.input_shape),
            "base_filters": config.model.base_filters,
            "conv_impl": f"{conv} -> {resolve_conv_impl(conv, dtype)}",
            "layer_impl": f"{layer} -> {resolve_layer_impl(layer)}",
            "compile_s": self.compile_s,
            "step_s_median": step_s,
            "step_s_all": times,
            "samples_per_s": batch / step_s,
            "voxels_per_s": voxels / step_s,
            "flops_per_step": cost["flops"],
            "bytes_per_step": cost["bytes"],
            "flops_per_s": cost["flops"] / step_s,
            "peak_flops_per_s": peak,
            "peak_source": peak_source,
            "utilization": cost["flops"] / step_s / peak if peak else None,
            **memory,
            "device_peak_bytes_in_use_gib": stats.get("peak_bytes_in_use", 0) / common.GIB or None,
        }


def time_train_step(config: ml_collections.ConfigDict, batch_size: int, steps: int) -> dict:
    """Compile time and per-step times of the train step on random data (the program's)."""
    step = JaxStep(config, batch_size)
    _, times = common.time_calls(step, steps)  # the first call is a warm-up
    return {
        "device": str(jax.devices()[0].device_kind),
        "platform": jax.default_backend(),
        "batch": batch_size,
        "input_shape": list(config.data.input_shape),
        "conv_impl": config.model.conv_impl,
        "layer_impl": config.model.layer_impl,
        "dtype": config.model.dtype,
        "compile_s": round(step.compile_s, 2),
        "step_s_median": round(statistics.median(times), 3),
        "step_s_all": [round(t, 3) for t in times],
    }


def with_reference(row: dict, reference: dict, config: ml_collections.ConfigDict) -> dict:
    """A JAX row with the PyTorch step's summary, the time ratio and the same-model checks.

    Args:
      row: ``JaxStep.row``.
      reference: ``torch_unet.summary`` of the same case, with ``output_shape_bdhwc``.
      config: the case's config.
    """
    params = common.param_count(config)
    expected = [row["batch"], *config.data.input_shape, config.data.num_classes]
    return {
        **row,
        "torch": reference,
        "jax_over_torch_time": row["step_s_median"] / reference["step_s_median"],
        "params_jax": params,
        "params_match": params == reference["params"],
        "output_shape_match": reference["output_shape_bdhwc"] == expected,
    }


def _torch_steps(jax_steps: Sequence[JaxStep]) -> list:
    """The PyTorch train step of each case (``benchmarks.torch_unet``, the optional extra)."""
    from benchmarks import torch_unet

    return [torch_unet.TrainStep(step.config, step.batch, step.dtype) for step in jax_steps]


def _torch_summary(step: JaxStep, reference: Any, times: list[float]) -> dict:
    """The PyTorch step's summary for ``with_reference``: times, model and output shape."""
    from benchmarks import torch_unet

    summary = torch_unet.summary(reference.info, times)
    summary["config"] = step.name
    summary["output_shape_bdhwc"] = list(torch_unet.output_shape(step.config, step.batch))
    return summary


def run(
    cases: Sequence[tuple[str, int, str]],
    steps: int,
    rounds: int = 1,
    peaks: Mapping[str, float] | None = None,
    with_torch: bool = False,
    overrides: Mapping[str, str] | None = None,
    torch_steps: int | None = None,
) -> dict:
    """Times the train step of every case, and PyTorch's where ``with_torch``.

    The machine's speed drifts by 10-35 % over minutes here, so the two frameworks are timed
    in alternating rounds (JAX then PyTorch for each case, ``rounds`` times, each turn after
    an untimed call) and each median is taken over all its rounds.

    Args:
      cases: (config name, batch, dtype) per case.
      steps: timed JAX steps per case and round.
      rounds: alternating rounds.
      peaks: the device's measured peak FLOP/s per dtype (CPU); GPUs use the datasheet's.
      with_torch: also time the PyTorch reference (torch must be installed).
      overrides: config overrides for every case (tests shrink the model with them).
      torch_steps: timed PyTorch steps per case and round; default ``steps``.

    Returns:
      ``{"steps", "rounds", "rows"}``, one row per case (``JaxStep.row``, plus
      ``with_reference``'s fields with PyTorch).
    """
    jax_steps = [
        JaxStep(common.load_config(name, overrides, **{"model.dtype": dtype}), batch, name)
        for name, batch, dtype in cases
    ]
    refs = _torch_steps(jax_steps) if with_torch else []
    timers, calls = [], []
    for i, step in enumerate(jax_steps):  # JAX then PyTorch, case by case
        timers.append(step)
        calls.append(steps)
        if refs:
            timers.append(refs[i])
            calls.append(torch_steps or steps)
    times = common.time_in_rounds(timers, calls, rounds)
    jax_times, torch_times = (times[0::2], times[1::2]) if refs else (times, [])
    rows = []
    for i, step in enumerate(jax_steps):
        row = step.row(jax_times[i], peaks or {})
        print(json.dumps({k: v for k, v in row.items() if k != "step_s_all"}), flush=True)
        if refs:
            row = with_reference(row, _torch_summary(step, refs[i], torch_times[i]), step.config)
            ratio = row["jax_over_torch_time"]
            print(json.dumps({"torch": row["torch"]["step_s_median"], "ratio": ratio}))
        rows.append(row)
    return {"steps": steps, "rounds": rounds, "rows": rows}


def _cells(r: dict) -> list[str]:
    """One case's cells of the train-step table."""
    ref = r.get("torch")
    return [
        r["config"],
        "x".join(map(str, r["input_shape"])),
        str(r["batch"]),
        r["dtype"],
        r["conv_impl"].split(" -> ")[-1],
        f"{r['step_s_median']:.3f}",
        f"{r['samples_per_s']:.2f}",
        f"{r['voxels_per_s'] / 1e6:.2f}",
        f"{r['flops_per_s'] / 1e9:.1f}",
        fmt(r["utilization"], ".1%"),
        f"{r['compile_s']:.1f}",
        fmt(r.get("peak_estimate_gib"), ".2f"),
        fmt(ref and ref["step_s_median"], ".3f"),
        fmt(r.get("jax_over_torch_time"), ".2f"),
    ]


def markdown(result: dict) -> str:
    """The train-step table and, with PyTorch, what the ratio means and the model checks."""
    header = ["config", "input", "batch", "dtype", "conv", "step (s)", "samples/s"]
    header += ["Mvoxels/s", "GFLOP/s", "utilization", "compile (s)", "peak memory est. (GiB)"]
    header += ["PyTorch step (s)", "JAX/PyTorch time"]
    lines = table(header, [_cells(r) for r in result["rows"]])
    checks = [r for r in result["rows"] if "params_match" in r]
    if checks:
        r = checks[0]
        lines += [
            "",
            f"JAX/PyTorch time below 1 means lumbar_jax is faster. PyTorch {r['torch']['torch']} "
            f"eager, {r['torch']['threads']} threads, bfloat16 by autocast. Same model: "
            f"parameter counts {'agree' if all(c['params_match'] for c in checks) else 'DIFFER'}"
            f" ({r['params_jax']:,} for {r['config']}), output shapes "
            f"{'agree' if all(c['output_shape_match'] for c in checks) else 'DIFFER'}. "
            "Utilization is the XLA cost-analysis FLOPs per second over the peak (counted on the"
            " same step with XLA's convolution where the step calls oneDNN, which XLA does not"
            " count).",
        ]
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> None:
    del argv
    config = config_lib.load_config(FLAGS.config, _OVERRIDES)
    print(json.dumps({"config": FLAGS.config, **time_train_step(config, FLAGS.batch, FLAGS.steps)}))


if __name__ == "__main__":
    define_flags()
    app.run(main, flags_parser=config_lib.absl_flags_parser(_OVERRIDES))
