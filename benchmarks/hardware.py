"""Device peaks: a table of datasheet numbers for common GPUs, and a CPU matmul peak measured.

The roofline prediction built on these numbers is ``benchmarks/roofline.py``.

The GPU numbers are dense (no structured sparsity) tensor-core peaks from NVIDIA's datasheets.
JAX's default matmul/convolution precision on Ampere and newer GPUs lets float32 use TF32
tensor cores, so float32 work is compared with the TF32 peak there (the plain FP32 CUDA-core
peak is listed too, for GPUs without TF32).
"""

from __future__ import annotations

from collections.abc import Mapping

import jax
import jax.numpy as jnp

from benchmarks.common import time_calls

TFLOPS = 1e12
GBPS = 1e9

# name: peaks in FLOP/s, memory bandwidth and NVLink bandwidth per direction in bytes/s.
GPU_PEAKS: dict[str, dict] = {
    "A100 SXM 80GB": {
        "fp32": 19.5 * TFLOPS,
        "tf32": 156 * TFLOPS,
        "bf16": 312 * TFLOPS,
        "hbm_bytes_s": 2039 * GBPS,
        # NVLink 3: 600 GB/s total per GPU, i.e. 300 GB/s each way.
        "nvlink_bytes_s_per_direction": 300 * GBPS,
        "source": "NVIDIA A100 Tensor Core GPU datasheet (2021), SXM column, dense",
    },
    "H100 SXM": {
        "fp32": 67 * TFLOPS,
        "tf32": 494.7 * TFLOPS,
        "bf16": 989.4 * TFLOPS,
        "hbm_bytes_s": 3350 * GBPS,
        # NVLink 4: 900 GB/s total per GPU, i.e. 450 GB/s each way.
        "nvlink_bytes_s_per_direction": 450 * GBPS,
        "source": "NVIDIA H100 Tensor Core GPU datasheet (2023), SXM column, dense (half of "
        "the with-sparsity figures)",
    },
    "L4": {
        "fp32": 30.3 * TFLOPS,
        "tf32": 60 * TFLOPS,
        "bf16": 121 * TFLOPS,
        "hbm_bytes_s": 300 * GBPS,
        "nvlink_bytes_s_per_direction": None,
        "source": "NVIDIA L4 datasheet (2023), dense (half of the with-sparsity figures)",
    },
    "A10": {
        "fp32": 31.2 * TFLOPS,
        "tf32": 62.5 * TFLOPS,
        "bf16": 125 * TFLOPS,
        "hbm_bytes_s": 600 * GBPS,
        "nvlink_bytes_s_per_direction": None,
        "source": "NVIDIA A10 datasheet (2021), dense",
    },
    "V100 SXM2": {
        "fp32": 15.7 * TFLOPS,
        "tf32": None,
        "bf16": None,  # no bfloat16 tensor cores (FP16 only: 125 TFLOP/s)
        "hbm_bytes_s": 900 * GBPS,
        "nvlink_bytes_s_per_direction": 150 * GBPS,
        "source": "NVIDIA V100 datasheet (2020), SXM2 column",
    },
    "T4": {
        "fp32": 8.1 * TFLOPS,
        "tf32": None,
        "bf16": None,  # FP16 tensor cores only (65 TFLOP/s)
        "hbm_bytes_s": 320 * GBPS,
        "nvlink_bytes_s_per_direction": None,
        "source": "NVIDIA T4 datasheet (2019)",
    },
    "P100 SXM2 16GB": {
        "fp32": 10.6 * TFLOPS,
        "tf32": None,
        "bf16": None,
        "hbm_bytes_s": 732 * GBPS,
        "nvlink_bytes_s_per_direction": 80 * GBPS,
        "source": "NVIDIA Tesla P100 datasheet (2016), SXM2 column; the paper's GPU",
    },
}


def gpu_peak_flops(name: str, dtype: str) -> float | None:
    """The peak a JAX program of ``dtype`` can reach on the GPU (TF32 for float32 if present)."""
    peaks = GPU_PEAKS[name]
    if dtype == "bfloat16":
        return peaks["bf16"]
    return peaks["tf32"] or peaks["fp32"]


def match_gpu(device_kind: str) -> str | None:
    """The table entry for a JAX ``device_kind`` such as "NVIDIA H100 80GB HBM3", if any."""
    kind = device_kind.upper()
    for name in GPU_PEAKS:
        if name.split()[0] in kind:
            return name
    return None


def measure_cpu_matmul_peak(dtype: str = "float32", n: int = 2048, repeats: int = 5) -> dict:
    """FLOP/s of a jitted square matmul on the default device, best of ``repeats``.

    The best, not the median: a peak is what the hardware can do, and other load on the
    machine only ever slows a run.
    """
    a = jax.random.normal(jax.random.key(0), (n, n), jnp.dtype(dtype))
    b = jax.random.normal(jax.random.key(1), (n, n), jnp.dtype(dtype))
    matmul = jax.jit(lambda a, b: a @ b)
    _, times = time_calls(lambda: jax.block_until_ready(matmul(a, b)), repeats)
    best = min(times)
    return {"dtype": dtype, "n": n, "seconds": best, "flops_per_s": 2 * n**3 / best}


def device_peak(dtype: str, cpu_peaks: Mapping[str, float]) -> tuple[float | None, str]:
    """(peak FLOP/s, where it comes from) for the default device and a compute dtype."""
    device = jax.devices()[0]
    if device.platform == "cpu":
        peak = cpu_peaks.get(dtype) or cpu_peaks.get("float32")
        return peak, f"{dtype} matmul measured in this run"
    name = match_gpu(device.device_kind)
    if name is None:
        return None, f"no peak known for {device.device_kind}"
    return gpu_peak_flops(name, dtype), GPU_PEAKS[name]["source"]
