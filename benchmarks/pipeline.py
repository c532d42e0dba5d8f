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

In the suite (``run``), the same iterator of a smaller config and phantom, once per worker
count, against the train step the suite measured.
"""

from __future__ import annotations

import gc
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import grain
import ml_collections
import numpy as np
import scipy
from absl import app, flags

from benchmarks import common
from benchmarks.render import table
from lumbar_jax import config as config_lib
from lumbar_jax.data import datasets, pipeline, prepared

TITLE = "Input pipeline"
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


def fine_config(cases: int, workers: int = 0) -> ml_collections.ConfigDict:
    """The fine config at batch 1 on a phantom of ``cases`` series at matrix 320."""
    return config_lib.load_config(
        "fine",
        {
            "optim.batch_size": "1",
            "data.phantom_cases": str(cases),
            "data.phantom_matrix": "320",
            "data.worker_count": str(workers),
        },
    )


def time_pipeline(
    config: ml_collections.ConfigDict, dataset: datasets.Dataset, samples: int
) -> dict:
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


def time_sample_parts(
    config: ml_collections.ConfigDict, dataset: datasets.Dataset, repeats: int = 15
) -> dict[str, float]:
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
    return {name: round(1000 * common.median_time(fn, repeats), 2) for name, fn in parts.items()}


def run(
    spec: dict,
    step_rows: Sequence[dict] = (),
    overrides: Mapping[str, str] | None = None,
) -> dict:
    """Input pipeline samples/s against workers, and whether it keeps up with the step.

    Args:
      spec: ``config`` (a name), ``cases`` (phantom series), ``samples`` (timed per worker
        count) and ``workers`` (the counts).
      step_rows: the suite's train-step rows; the fastest float32 one of the same config is
        the consumer the pipeline has to keep up with.
      overrides: config overrides (tests shrink the model with them).

    Returns:
      ``{"config", "input_shape", "phantom_cases", "rows", "train_step_samples_per_s",
      "keeps_up"}``, one row per worker count (``time_pipeline``).
    """
    name = spec["config"]
    rows = []
    for workers in spec["workers"]:
        config = common.load_config(
            name,
            overrides,
            **{
                "optim.batch_size": "1",
                "data.phantom_cases": str(spec["cases"]),
                "data.worker_count": str(workers),
            },
        )
        dataset = datasets.from_config(config.data)
        rows.append(time_pipeline(config, dataset, spec["samples"]))
        print(json.dumps(rows[-1]), flush=True)
    steps = [r for r in step_rows if r["config"] == name and r["dtype"] == "float32"]
    consumer = max((r["samples_per_s"] for r in steps), default=None)
    best = max(r["samples_per_s"] for r in rows)
    return {
        "config": name,
        "input_shape": list(config.data.input_shape),
        "phantom_cases": spec["cases"],
        "rows": rows,
        "train_step_samples_per_s": consumer,
        "keeps_up": None if consumer is None else best >= consumer,
    }


def markdown(result: dict) -> str:
    """The iterator's rate per worker count and whether it keeps up with the train step."""
    cells = [
        [r["workers"], f"{r['first_batch_s']:.1f}", f"{r['samples_per_s']:.1f}"]
        for r in result["rows"]
    ]
    lines = [
        f"Training iterator of `{result['config']}` "
        f"({'x'.join(map(str, result['input_shape']))}, batch 1, default augmentation, "
        f"{result['phantom_cases']} phantom series).",
        "",
        *table(["grain workers", "first batch (s)", "samples/s"], cells),
    ]
    if result["train_step_samples_per_s"]:
        verdict = "keeps up with" if result["keeps_up"] else "does NOT keep up with"
        lines += [
            "",
            f"The pipeline {verdict} the measured float32 train step of the same config "
            f"({result['train_step_samples_per_s']:.2f} samples/s).",
        ]
    return "\n".join(lines) + "\n"


def run_fine(
    cases: int, samples: int, workers: Sequence[int], repeats: int, step_file: Path
) -> dict:
    """The program's benchmark: the fine config at full size, against the fine train step.

    Args:
      cases: phantom series to generate (matrix 320).
      samples: timed samples per run.
      workers: grain worker counts to time.
      repeats: runs per worker count (the median is reported).
      step_file: ``python -m benchmarks.train_step``'s JSON of the fine step, if there.

    Returns:
      ``{"meta", "pipeline", "sample_ms"}``, with ``train_step_cpu`` when ``step_file``
      exists, and ``train_step_h100_estimate``.
    """
    # Other work on the machine slows every row; the load says how quiet it was.
    load_before = os.getloadavg()[0]
    config = fine_config(cases)
    dataset = datasets.from_config(config.data)
    # Per-sample parts first, while no worker process competes for the cores.
    parts = time_sample_parts(config, dataset)
    print(json.dumps(parts), flush=True)
    rows = []
    for count in workers:
        runs = [time_pipeline(fine_config(cases, count), dataset, samples) for _ in range(repeats)]
        rates = [r["samples_per_s"] for r in runs]
        row = {
            "workers": count,
            "first_batch_s": statistics.median(r["first_batch_s"] for r in runs),
            "warmup_samples": runs[0]["warmup_samples"],
            "timed_samples": samples,
            "samples_per_s": statistics.median(rates),
            "samples_per_s_runs": rates,
        }
        print(json.dumps(row), flush=True)
        rows.append(row)
    meta = {
        "date": common.utc_now(),
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
        "phantom_cases": cases,
        "phantom_matrix": 320,
        "train_cases": len(dataset.split(config.data.train_split)),
        "aug": config.aug.to_dict(),
    }
    return {"meta": meta, "pipeline": rows, "sample_ms": parts, **_consumers(step_file)}


def _consumers(step_file: Path) -> dict:
    """The measured fine train step (if ``step_file`` exists) and the H100 estimate."""
    result = {}
    if step_file.is_file():
        step = json.loads(step_file.read_text())
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
    return result


def markdown_fine(result: dict) -> str:
    """The program's tables: rate per worker count, consumers, per-sample host costs."""
    meta, rows = result["meta"], result["pipeline"]
    repeats = len(rows[0]["samples_per_s_runs"])
    cells = [
        [
            r["workers"],
            f"{r['first_batch_s']:.1f}",
            f"{r['samples_per_s']:.1f}",
            ", ".join(f"{x:.1f}" for x in r["samples_per_s_runs"]),
        ]
        for r in rows
    ]
    consumers = []
    if "train_step_cpu" in result:
        s = result["train_step_cpu"]
        consumers.append(
            [
                f"fine train step, this CPU (measured: {s['step_s']:.1f} s at batch {s['batch']})",
                f"{s['samples_per_s']:.3f}",
            ]
        )
    consumers.append(
        [
            f"fine train step, one H100 (estimate: ~{H100_STEP_S_ESTIMATE} s at batch "
            f"{H100_BATCH})",
            f"~{H100_BATCH / H100_STEP_S_ESTIMATE:.0f}",
        ]
    )
    parts = [[name, f"{ms:.1f}"] for name, ms in result["sample_ms"].items()]
    header = ["grain workers", "first batch (s)", f"samples/s, median of {repeats}", "runs"]
    lines = [
        f"Training pipeline at the fine config ({'x'.join(map(str, meta['input_shape']))}, "
        f"batch 1, default augmentation), {meta['train_cases']} phantom training series at "
        f"matrix 320, on {meta['cpu_count']} CPU cores (1-minute load average "
        f"{meta['load_avg_1m'][0]:.1f} before, {meta['load_avg_1m'][1]:.1f} after), {meta['date']}:",
        "",
        *table(header, cells),
        "",
        *table(["consumer", "samples/s"], consumers),
        "",
        *table(["per-sample host cost, in this process", "ms"], parts),
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> None:
    del argv
    out = Path(FLAGS.output)
    workers = [int(w) for w in FLAGS.workers]
    step_file = out / "train_step_fine_b1.json"
    result = run_fine(FLAGS.cases, FLAGS.samples, workers, FLAGS.repeats, step_file)
    out.mkdir(parents=True, exist_ok=True)
    (out / "pipeline_fine.json").write_text(json.dumps(result, indent=2) + "\n")
    (out / "pipeline_fine.md").write_text(markdown_fine(result))
    print(markdown_fine(result), end="")


if __name__ == "__main__":
    define_flags()
    app.run(main)
