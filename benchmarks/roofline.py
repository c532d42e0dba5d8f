"""Roofline: the step time a train step would take on A100 and H100 GPUs (a prediction).

  python -m benchmarks.roofline --config=fine --batch=5 [--dtypes=float32,bfloat16]

Compiles (does not run) the train step with the XLA convolution and Flax's layers, what a GPU
runs, takes FLOPs and bytes accessed from XLA's cost analysis, and predicts the step time on
one GPU as max(FLOPs / peak, bytes / HBM bandwidth), and on 8 GPUs of a node with a ring
all-reduce of the gradients over NVLink added. The peaks are ``benchmarks/hardware.py``'s.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

import jax
from absl import app, flags

from benchmarks import common
from benchmarks.hardware import GPU_PEAKS, gpu_peak_flops
from benchmarks.render import table

TITLE = "Roofline: the paper's fine step on GPUs (a prediction, not a measurement)"
GPUS = ("A100 SXM 80GB", "H100 SXM")

FLAGS = flags.FLAGS


def define_flags() -> None:
    """Defines the command line's flags (only when run as a program; see train_step.py)."""
    flags.DEFINE_string("config", "fine", "Config NAME[:ARG] or path.")
    flags.DEFINE_integer("batch", 5, "Batch per GPU (the paper's is 5).")
    flags.DEFINE_list("dtypes", ["float32", "bfloat16"], "Compute dtypes.")


def ring_allreduce_s(num_bytes: float, devices: int, link_bytes_s: float) -> float:
    """Bandwidth term of a ring all-reduce: each device sends 2 (n - 1) / n of the bytes."""
    return 2 * (devices - 1) / devices * num_bytes / link_bytes_s


def predict(
    flops: float, bytes_accessed: float, grad_bytes: float, dtype: str, gpus: int = 8
) -> list[dict]:
    """Predicted step time and utilization on A100 and H100 for one compiled step.

    Args:
      flops: the step's FLOPs (XLA cost analysis).
      bytes_accessed: the step's memory traffic (XLA cost analysis).
      grad_bytes: bytes of the gradients all-reduced each step (float32 parameters).
      dtype: compute dtype; selects TF32 or BF16 peaks.
      gpus: GPUs of one node for the data-parallel prediction (weak scaling: the same
        per-GPU batch, so the only added time is the gradient all-reduce).

    Returns:
      One dict per GPU. The time is max(compute, memory): a lower bound, reached only if every
      kernel ran at peak. The all-reduce is assumed not to overlap the backward pass (an upper
      bound on its cost).
    """
    rows = []
    for name in GPUS:
        peaks = GPU_PEAKS[name]
        peak = gpu_peak_flops(name, dtype)
        compute_s = flops / peak
        memory_s = bytes_accessed / peaks["hbm_bytes_s"]
        step_s = max(compute_s, memory_s)
        allreduce_s = ring_allreduce_s(grad_bytes, gpus, peaks["nvlink_bytes_s_per_direction"])
        rows.append(
            {
                "gpu": name,
                "dtype": dtype,
                "peak_flops_per_s": peak,
                "hbm_bytes_per_s": peaks["hbm_bytes_s"],
                "nvlink_bytes_per_s_per_direction": peaks["nvlink_bytes_s_per_direction"],
                "compute_s": compute_s,
                "memory_s": memory_s,
                "bound": "compute" if compute_s >= memory_s else "memory",
                "step_s": step_s,
                "utilization": flops / step_s / peak,
                "gpus": gpus,
                "allreduce_s": allreduce_s,
                "step_s_multi_gpu": step_s + allreduce_s,
                "allreduce_overhead": allreduce_s / (step_s + allreduce_s),
                "source": peaks["source"],
            }
        )
    return rows


def run(spec: dict, overrides: Mapping[str, str] | None = None) -> dict:
    """Roofline predictions for a step, compiled with the XLA convolution, not run.

    Args:
      spec: ``config`` (a name), ``batch`` (per GPU) and ``dtypes``.
      overrides: config overrides (tests shrink the model with them).

    Returns:
      ``{"config", "batch_per_gpu", "rows"}``: ``predict``'s rows per dtype, each with the
      step's FLOPs, bytes, parameter count and the backend the analysis compiled on.
    """
    rows = []
    batch = spec["batch"]
    for dtype in spec["dtypes"]:
        # The XLA convolution and Flax's layers are what a GPU runs ("auto" there); the CPU
        # rewrites would change the bytes.
        more = {"model.dtype": dtype, "model.conv_impl": "xla", "model.layer_impl": "flax"}
        config = common.load_config(spec["config"], overrides, **more)
        cost = common.cost_analysis(common.compile_train_step_shapes(config, batch))
        params = common.param_count(config)
        for row in predict(cost["flops"], cost["bytes"], 4 * params, dtype):
            row.update(
                config=spec["config"],
                batch_per_gpu=batch,
                flops_per_step=cost["flops"],
                bytes_per_step=cost["bytes"],
                params=params,
                cost_analysis_backend=jax.default_backend(),
            )
            rows.append(row)
    return {"config": spec["config"], "batch_per_gpu": batch, "rows": rows}


def markdown(result: dict) -> str:
    """What the prediction assumes, one row per GPU and dtype, and where the peaks are from."""
    rows, r0 = result["rows"], result["rows"][0]
    header = ["GPU", "dtype", "peak (TFLOP/s)", "HBM (GB/s)", "NVLink per direction (GB/s)"]
    header += ["bound", "step, 1 GPU (ms)", "utilization", "8-GPU all-reduce (ms)"]
    header += ["step, 8 GPUs (ms)", "all-reduce share"]
    cells = [
        [
            r["gpu"],
            r["dtype"],
            f"{r['peak_flops_per_s'] / 1e12:.1f}",
            f"{r['hbm_bytes_per_s'] / 1e9:.0f}",
            f"{r['nvlink_bytes_per_s_per_direction'] / 1e9:.0f}",
            r["bound"],
            f"{1000 * r['step_s']:.1f}",
            f"{r['utilization']:.0%}",
            f"{1000 * r['allreduce_s']:.2f}",
            f"{1000 * r['step_s_multi_gpu']:.1f}",
            f"{r['allreduce_overhead']:.1%}",
        ]
        for r in rows
    ]
    sources = {r["gpu"]: r["source"] for r in rows}
    lines = [
        f"From XLA's cost analysis of the fine train step ({r0['config']}, batch "
        f"{r0['batch_per_gpu']} per GPU, XLA convolution and Flax layers, compiled on "
        f"{r0['cost_analysis_backend']}): {r0['flops_per_step'] / 1e12:.2f} TFLOP and "
        f"{r0['bytes_per_step'] / 1e9:.1f} GB accessed per step, {r0['params']:,} parameters "
        f"({4 * r0['params'] / 1e6:.1f} MB of float32 gradients). Step time = max(FLOPs / "
        "peak, bytes / HBM bandwidth), a lower bound; 8 GPUs: weak scaling plus a ring "
        "all-reduce of the gradients over NVLink (2 (n-1)/n x bytes / per-direction "
        "bandwidth), not overlapped. CPU byte counts follow XLA:CPU's fusion, so the memory "
        "term is indicative.",
        "",
        *table(header, cells),
        "",
        "Peaks (dense): " + "; ".join(f"{gpu}: {src}" for gpu, src in sources.items()),
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> None:
    del argv
    result = run({"config": FLAGS.config, "batch": FLAGS.batch, "dtypes": FLAGS.dtypes})
    print(json.dumps(result, indent=1))
    print(markdown(result))


if __name__ == "__main__":
    define_flags()
    app.run(main)
