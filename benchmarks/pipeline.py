"""Throughput of the training input pipeline at the fine config, against the train step.

  python -m benchmarks.pipeline [--cases=12] [--samples=48] [--workers=0,1,2] [--repeats=3]

Builds ``pipeline.train_iter_dataset`` for the fine config at full size (16 x 320 x 128, batch
1) on a phantom dataset of ``--cases`` series at matrix 320, and for each worker count reports
the time to the first batch (worker start-up and first reads included) and the steady-state
samples/s after a warm-up of two epochs (every process has then prepared its cases). First it
times, in this process, one sample's resampling alone, with the default augmentation, and each
host intensity augmentation on its own. Other load on the machine slows every number, so the
1-minute load average before and after is recorded. Writes ``pipeline_fine.json`` and
``pipeline_fine.md`` to ``--output``; the train step it is compared with is
``train_step_fine_b1.json`` there (``python -m benchmarks.train_step``).
"""

from __future__ import annotations

import datetime
import gc
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import grain
import numpy as np
import scipy
from absl import app, flags

from lumbar_jax import config as config_lib
from lumbar_jax.data import datasets, pipeline, prepared

# Estimate, not a measurement: a fine step of the paper's batch of 5 on one H100.
H100_STEP_S_ESTIMATE, H100_BATCH = 0.1, 5

FLAGS = flags.FLAGS


def define_flags() -> None:
    """Defines the command line's flags.

    Only when run as a program: the suite and the tests import several benchmark modules
    into one process, where flags of the same name would collide.
    """
    flags.DEFINE_integer("cases", 12, "Phantom series to generate (matrix 320).")
    flags.DEFINE_integer("samples", 48, "Timed samples per worker count.")
    flags.DEFINE_list("workers", ["0", "1", "2"], "grain worker counts to time.")
    flags.DEFINE_integer("repeats", 3, "Runs per worker count; the median is reported.")
    flags.DEFINE_string("output", "benchmarks/results", "Folder for the results.")


def fine_config(cases: int, workers: int = 0):
    return config_lib.load_config(
        "fine",
        {
            "optim.batch_size": "1",
            "data.phantom_cases": str(cases),
            "data.phantom_matrix": "320",
            "data.worker_count": str(workers),
        },
    )


def time_pipeline(config, dataset: datasets.Dataset, samples: int) -> dict:
    """First-batch latency and steady-state samples/s of the training iterator."""
    warmup = 2 * len(dataset.split(config.data.train_split))
    start = time.perf_counter()
    it = iter(pipeline.train_iter_dataset(config, dataset))
    next(it)
    first_s = time.perf_counter() - start
    for _ in range(warmup):
        next(it)
    start = time.perf_counter()
    for _ in range(samples):
        next(it)
    elapsed = time.perf_counter() - start
    # Stop the worker processes and let them exit before anything else is timed.
    del it
    gc.collect()
    time.sleep(3)
    return {
        "workers": config.data.worker_count,
        "first_batch_s": round(first_s, 2),
        "warmup_samples": warmup,
        "timed_samples": samples,
        "samples_per_s": round(samples / elapsed, 2),
    }


def _median_ms(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return round(1000 * statistics.median(times), 2)


def time_sample_parts(config, dataset: datasets.Dataset, repeats: int = 15) -> dict:
    """Per-sample host milliseconds of resampling and of each intensity augmentation."""
    cases = dataset.split(config.data.train_split)
    case = prepared.prepare_case(cases[0], dataset, config.data.window_percentiles)
    rng = np.random.default_rng(0)
    plain = pipeline.MakeSample(config.data, None)
    augmented = pipeline.MakeSample(config.data, config.aug)
    image = plain.random_map(case, rng)["image_dhwc"][..., 0]
    parts = {
        "resample (crop + resize, no augmentation)": lambda: plain.random_map(case, rng),
        "sample with the default augmentation": lambda: augmented.random_map(case, rng),
    }
    off = {key: 0.0 for key in config.aug if key.endswith("_prob")}
    for name in ("bias", "contrast", "gamma"):
        aug = config.aug.copy_and_resolve_references()
        with aug.unlocked():
            aug.update(off)
            setattr(aug, f"{name}_prob", 1.0)
        parts[f"{name} (intensity, on host)"] = lambda aug=aug: pipeline.augment_intensity(
            image, aug, rng
        )
    parts["left-right flip (copy)"] = lambda: np.ascontiguousarray(image[::-1])
    return {name: _median_ms(fn, repeats) for name, fn in parts.items()}


def main(argv: list[str]) -> None:
    del argv
    # Other work on the machine slows every row; the load says how quiet it was.
    load_before = os.getloadavg()[0]
    config = fine_config(FLAGS.cases)
    dataset = datasets.from_config(config.data)
    # Per-sample parts first, while no worker process competes for the cores.
    parts = time_sample_parts(config, dataset)
    print(json.dumps(parts), flush=True)
    rows = []
    for workers in (int(w) for w in FLAGS.workers):
        runs = [
            time_pipeline(fine_config(FLAGS.cases, workers), dataset, FLAGS.samples)
            for _ in range(FLAGS.repeats)
        ]
        rates = [r["samples_per_s"] for r in runs]
        row = {
            "workers": workers,
            "first_batch_s": statistics.median(r["first_batch_s"] for r in runs),
            "warmup_samples": runs[0]["warmup_samples"],
            "timed_samples": FLAGS.samples,
            "samples_per_s": statistics.median(rates),
            "samples_per_s_runs": rates,
        }
        print(json.dumps(row), flush=True)
        rows.append(row)

    out = Path(FLAGS.output)
    step_file = out / "train_step_fine_b1.json"
    step = json.loads(step_file.read_text()) if step_file.is_file() else None
    meta = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "host": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "cpu_count": os.cpu_count(),
        "load_avg_1m": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "python": sys.version.split()[0],
        "grain": grain.__version__ if hasattr(grain, "__version__") else "",
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "config": "fine",
        "input_shape": list(config.data.input_shape),
        "batch": 1,
        "phantom_cases": FLAGS.cases,
        "phantom_matrix": 320,
        "train_cases": len(dataset.split(config.data.train_split)),
        "aug": config.aug.to_dict(),
    }
    result = {"meta": meta, "pipeline": rows, "sample_ms": parts}
    if step:
        result["train_step_cpu"] = {
            "step_s": step["step_s_median"],
            "batch": step["batch"],
            "samples_per_s": round(step["batch"] / step["step_s_median"], 4),
        }
    result["train_step_h100_estimate"] = {
        "step_s": H100_STEP_S_ESTIMATE,
        "batch": H100_BATCH,
        "samples_per_s": H100_BATCH / H100_STEP_S_ESTIMATE,
        "note": "an estimate, not measured here",
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "pipeline_fine.json").write_text(json.dumps(result, indent=2) + "\n")

    lines = [
        f"Training pipeline at the fine config ({'x'.join(map(str, meta['input_shape']))}, "
        f"batch 1, default augmentation), {meta['train_cases']} phantom training series at "
        f"matrix 320, on {meta['cpu_count']} CPU cores (1-minute load average "
        f"{meta['load_avg_1m'][0]:.1f} before, {meta['load_avg_1m'][1]:.1f} after), {meta['date']}:",
        "",
        f"| grain workers | first batch (s) | samples/s, median of {FLAGS.repeats} | runs |",
        "|---|---|---|---|",
    ]
    lines += [
        f"| {r['workers']} | {r['first_batch_s']:.1f} | {r['samples_per_s']:.1f} "
        f"| {', '.join(f'{x:.1f}' for x in r['samples_per_s_runs'])} |"
        for r in rows
    ]
    lines += ["", "| consumer | samples/s |", "|---|---|"]
    if step:
        s = result["train_step_cpu"]
        lines.append(
            f"| fine train step, this CPU (measured: {s['step_s']:.1f} s at batch {s['batch']}) "
            f"| {s['samples_per_s']:.3f} |"
        )
    lines.append(
        f"| fine train step, one H100 (estimate: ~{H100_STEP_S_ESTIMATE} s at batch "
        f"{H100_BATCH}) | ~{H100_BATCH / H100_STEP_S_ESTIMATE:.0f} |"
    )
    lines += ["", "| per-sample host cost, in this process | ms |", "|---|---|"]
    lines += [f"| {name} | {ms:.1f} |" for name, ms in parts.items()]
    (out / "pipeline_fine.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    define_flags()
    app.run(main)
