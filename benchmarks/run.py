"""The benchmark suite: train step, scaling, roofline, input pipeline, inference, PyTorch.

  python -m benchmarks.run --suite quick --output DIR [--coarse=RUN --fine=RUN]

Runs on whatever devices JAX sees and writes ``DIR/results.json`` (every number with the
device, versions, configs, date and the machine's load average at start and end),
``DIR/results.md`` (the tables) and PNG plots (``throughput.png``, ``scaling.png``).

``quick`` (a few minutes on a 2-core CPU) times the CPU presets (``fine:cpu``, ``coarse:cpu``)
at their batch; ``full`` times the paper's coarse and fine configs at batch 1 and 5 in
float32 and bfloat16, and adds the per-layer table. Each part can be skipped with
``--skip=scaling,pipeline,...``.
"""

from __future__ import annotations

import datetime
import functools
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import app, flags

from benchmarks import hardware, layers
from benchmarks.common import random_batch, time_calls
from lumbar_jax import __version__, trainer
from lumbar_jax import config as config_lib
from lumbar_jax.model.conv import resolve_conv_impl, resolve_layer_impl

FLAGS = flags.FLAGS
PARTS = ("train_step", "scaling", "roofline", "pipeline", "inference", "layers")
GIB = 1024**3

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
        "layers": {"config": "fine:cpu", "batch": 2, "impls": ["stack2d"]},
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
        "layers": {"config": "fine:cpu", "batch": 2, "impls": ["stack2d", "xla"]},
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


def metadata() -> dict:
    """Device, versions, host and date of this run."""
    device = jax.devices()[0]
    versions = {
        "lumbar_jax": __version__,
        "python": sys.version.split()[0],
        "jax": jax.__version__,
        "jaxlib": jax.lib.__version__ if hasattr(jax.lib, "__version__") else "",
        "flax": flax.__version__,
        "optax": optax.__version__,
        "numpy": np.__version__,
    }
    if layers.torch_available():
        import torch

        versions["torch"] = torch.__version__
    return {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "backend": jax.default_backend(),
        "device": device.device_kind,
        "device_count": jax.device_count(),
        "host": f"{platform.machine()} {platform.processor()}".strip(),
        "cpu_count": os.cpu_count(),
        "versions": versions,
    }


# Overrides applied to every config the suite loads (tests shrink the model with them).
_OVERRIDES: dict[str, str] = {}


def _config(name: str, dtype: str = "float32", **overrides: str):
    return config_lib.load_config(name, {**_OVERRIDES, "model.dtype": dtype, **overrides})


def _cost(compiled) -> dict:
    cost = compiled.cost_analysis()
    if isinstance(cost, list):  # older JAX: one dict per computation
        cost = cost[0]
    return {"flops": float(cost.get("flops", 0.0)), "bytes": float(cost.get("bytes accessed", 0))}


def _memory(compiled) -> dict:
    m = compiled.memory_analysis()
    if m is None:
        return {}
    arguments, outputs = m.argument_size_in_bytes, m.output_size_in_bytes
    # Donated state is aliased to the new state: counted once.
    peak = arguments + outputs - m.alias_size_in_bytes + m.temp_size_in_bytes
    return {"temp_gib": m.temp_size_in_bytes / GIB, "peak_estimate_gib": peak / GIB}


def compile_step(config, batch: int):
    """(jitted donating train step, compiled executable, compile seconds, state, device batch)."""
    state = trainer.create_train_state(config, jax.random.key(0))
    device_batch = jax.device_put(random_batch(config, batch))
    step = jax.jit(functools.partial(trainer.train_step, config=config), donate_argnums=0)
    start = time.perf_counter()
    compiled = step.lower(state, device_batch, jax.random.key(1)).compile()
    return compiled, time.perf_counter() - start, state, device_batch


class JaxStep:
    """The compiled, donating lumbar_jax train step of one case, timed per call."""

    def __init__(self, name: str, batch: int, dtype: str) -> None:
        self.name, self.batch, self.dtype = name, batch, dtype
        self.config = _config(name, dtype)
        self.compiled, self.compile_s, self.state, self.device_batch = compile_step(
            self.config, batch
        )

    def __call__(self) -> None:
        self.state, metrics = self.compiled(self.state, self.device_batch, jax.random.key(1))
        jax.block_until_ready(metrics)

    def time(self, steps: int) -> list[float]:
        """Seconds of each of ``steps`` calls, after one untimed call."""
        return time_calls(self, steps)

    def row(self, times: list[float], peaks: dict) -> dict:
        """Throughput, FLOP/s, utilization, compile time and memory from the step times."""
        config, batch, dtype = self.config, self.batch, self.dtype
        cost, memory = _cost(self.compiled), _memory(self.compiled)
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
            "conv_impl": f"{conv} -> {resolve_conv_impl(conv)}",
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
            "device_peak_bytes_in_use_gib": stats.get("peak_bytes_in_use", 0) / GIB or None,
        }


def jax_param_count(config) -> int:
    """Number of parameters of the lumbar_jax model for a config."""
    shapes = jax.eval_shape(lambda: trainer.create_train_state(config, jax.random.key(0)).params)
    return int(sum(np.prod(x.shape) for x in jax.tree.leaves(shapes)))


def run_train_step(suite: dict, peaks: dict, with_torch: bool) -> list[dict]:
    """JAX (and PyTorch) rows for every train-step case of the suite.

    The machine's speed drifts by 10-35 % over minutes here, so the two frameworks are timed
    in alternating rounds (JAX then PyTorch for each case, ``suite["rounds"]`` times, each
    after an untimed call) and each median is taken over all its rounds.
    """
    jax_steps = [JaxStep(name, batch, dtype) for name, batch, dtype in suite["train_step"]]
    torch_steps = []
    if with_torch:
        from benchmarks import torch_unet

        torch_steps = [
            torch_unet.TrainStep(step.config, step.batch, step.dtype) for step in jax_steps
        ]
    jax_times = [[] for _ in jax_steps]
    torch_times = [[] for _ in torch_steps]
    for _ in range(suite.get("rounds", 1)):
        for i, step in enumerate(jax_steps):
            jax_times[i] += step.time(suite["steps"])
            if torch_steps:
                torch_times[i] += torch_steps[i].time(suite["torch_steps"])
    rows = []
    for i, step in enumerate(jax_steps):
        row = step.row(jax_times[i], peaks)
        print(json.dumps({k: v for k, v in row.items() if k != "step_s_all"}), flush=True)
        if torch_steps:
            ref = torch_unet.summary(torch_steps[i].info, torch_times[i])
            ref["config"] = step.name
            ref["output_shape_bdhwc"] = list(torch_unet.output_shape(step.config, step.batch))
            row["torch"] = ref
            row["jax_over_torch_time"] = row["step_s_median"] / ref["step_s_median"]
            row["params_jax"] = jax_param_count(step.config)
            row["params_match"] = row["params_jax"] == ref["params"]
            expected = [step.batch, *step.config.data.input_shape, step.config.data.num_classes]
            row["output_shape_match"] = ref["output_shape_bdhwc"] == expected
            print(json.dumps({"torch": ref["step_s_median"], "ratio": row["jax_over_torch_time"]}))
        rows.append(row)
    return rows


def run_scaling(spec: dict) -> dict:
    """benchmarks.scaling in a subprocess with ``spec['devices']`` simulated CPU devices."""
    env = dict(os.environ)
    if jax.default_backend() == "cpu":
        flag = f"--xla_force_host_platform_device_count={spec['devices']}"
        env["XLA_FLAGS"] = f"{env.get('XLA_FLAGS', '')} {flag}".strip()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "scaling.json"
        cmd = [
            sys.executable,
            "-m",
            "benchmarks.scaling",
            f"--config={spec['config']}",
            f"--per_device={spec['per_device']}",
            f"--global_batch={spec['global_batch']}",
            "--steps=2",
            f"--modes={','.join(spec.get('modes', ('mesh', 'pmap')))}",
            *[f"--config.{k}={v}" for k, v in _OVERRIDES.items()],
            f"--output={out}",
        ]
        subprocess.run(cmd, env=env, check=True, cwd=Path(__file__).parent.parent)
        result = json.loads(out.read_text())
    result["command"] = " ".join(
        ([f"XLA_FLAGS={env['XLA_FLAGS']}"] if "XLA_FLAGS" in env else []) + ["python", *cmd[1:-1]]
    )
    return result


def run_roofline(spec: dict) -> list[dict]:
    """Roofline predictions for a step (the paper's fine one), compiled with the XLA conv, not run."""
    rows = []
    batch = spec["batch"]
    for dtype in spec["dtypes"]:
        # The XLA convolution and Flax's layers are what a GPU runs ("auto" there); the CPU
        # rewrites would change the bytes.
        config = _config(
            spec["config"], dtype, **{"model.conv_impl": "xla", "model.layer_impl": "flax"}
        )
        state = jax.eval_shape(
            lambda config=config: trainer.create_train_state(config, jax.random.key(0))
        )
        shape = tuple(config.data.input_shape)
        batch_spec = {
            "image_dhwc": jax.ShapeDtypeStruct((batch, *shape, 1), jnp.float32),
            "label_dhw": jax.ShapeDtypeStruct((batch, *shape), jnp.uint8),
            "labeled_c": jax.ShapeDtypeStruct((batch, config.data.num_classes), jnp.bool_),
        }
        step = jax.jit(functools.partial(trainer.train_step, config=config), donate_argnums=0)
        cost = _cost(step.lower(state, batch_spec, jax.random.key(0)).compile())
        params = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(state.params))
        for row in hardware.roofline(cost["flops"], cost["bytes"], 4 * params, dtype):
            row.update(
                config=spec["config"],
                batch_per_gpu=batch,
                flops_per_step=cost["flops"],
                bytes_per_step=cost["bytes"],
                params=params,
                cost_analysis_backend=jax.default_backend(),
            )
            rows.append(row)
    return rows


def run_pipeline(spec: dict, step_rows: list[dict]) -> dict:
    """Input pipeline samples/s against workers, and whether it keeps up with the step."""
    from benchmarks import pipeline as pipeline_bench
    from lumbar_jax.data import datasets

    name = spec["config"]
    rows = []
    for workers in spec["workers"]:
        config = config_lib.load_config(
            name,
            {
                **_OVERRIDES,
                "optim.batch_size": "1",
                "data.phantom_cases": str(spec["cases"]),
                "data.worker_count": str(workers),
            },
        )
        dataset = datasets.from_config(config.data)
        rows.append(pipeline_bench.time_pipeline(config, dataset, spec["samples"]))
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


def run_inference(coarse: str, fine: str, series: int) -> dict:
    """benchmarks.inference on trained runs, or a note saying why it was skipped."""
    if not coarse or not fine:
        demo = Path("runs/demo")
        if (demo / "coarse").is_dir() and (demo / "fine").is_dir():
            coarse, fine = str(demo / "coarse"), str(demo / "fine")
        else:
            return {
                "skipped": "no trained runs: pass --coarse=RUN --fine=RUN (or train the demo, "
                "which writes runs/demo/coarse and runs/demo/fine)"
            }
    from benchmarks import inference

    return inference.run(coarse, fine, series)


def _fmt(x, spec: str = ".3g") -> str:
    return "n/a" if x is None else format(x, spec)


def markdown(result: dict) -> str:
    """Every table of the suite's results."""
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
    steps = result.get("train_step")
    if steps:
        lines += [
            "### Train step",
            "",
            "| config | input | batch | dtype | conv | step (s) | samples/s | Mvoxels/s "
            "| GFLOP/s | utilization | compile (s) | peak memory est. (GiB) | PyTorch step (s) "
            "| JAX/PyTorch time |",
            "|" + "---|" * 14,
        ]
        for r in steps:
            ref = r.get("torch")
            lines.append(
                f"| {r['config']} | {'x'.join(map(str, r['input_shape']))} | {r['batch']} "
                f"| {r['dtype']} | {r['conv_impl'].split(' -> ')[-1]} | {r['step_s_median']:.3f} "
                f"| {r['samples_per_s']:.2f} | {r['voxels_per_s'] / 1e6:.2f} "
                f"| {r['flops_per_s'] / 1e9:.1f} | {_fmt(r['utilization'], '.1%')} "
                f"| {r['compile_s']:.1f} | {_fmt(r.get('peak_estimate_gib'), '.2f')} "
                f"| {_fmt(ref and ref['step_s_median'], '.3f')} "
                f"| {_fmt(r.get('jax_over_torch_time'), '.2f')} |"
            )
        checks = [r for r in steps if "params_match" in r]
        if checks:
            r = checks[0]
            lines += [
                "",
                f"JAX/PyTorch time below 1 means lumbar_jax is faster. PyTorch {r['torch']['torch']} "
                f"eager, {r['torch']['threads']} threads, bfloat16 by autocast. Same model: "
                f"parameter counts {'agree' if all(c['params_match'] for c in checks) else 'DIFFER'}"
                f" ({r['params_jax']:,} for {r['config']}), output shapes "
                f"{'agree' if all(c['output_shape_match'] for c in checks) else 'DIFFER'}. "
                "Utilization is the XLA cost-analysis FLOPs per second over the peak.",
            ]
        lines.append("")
    scaling = result.get("scaling")
    if scaling:
        lines += [
            "### Scaling",
            "",
            f"`{scaling['command']}`. {scaling.get('note', '')}",
            "",
            "| scaling | mode | devices | global batch | step (s) | efficiency |",
            "|---|---|---|---|---|---|",
        ]
        lines += [
            f"| {r['scaling']} | {r['mode']} | {r['devices']} | {r['global_batch']} "
            f"| {r['step_s_median']:.3f} | {r['efficiency']:.2f} |"
            for r in scaling["rows"]
        ]
        lines.append("")
    roof = result.get("roofline")
    if roof:
        r0 = roof[0]
        lines += [
            "### Roofline: the paper's fine step on GPUs (a prediction, not a measurement)",
            "",
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
            "| GPU | dtype | peak (TFLOP/s) | HBM (GB/s) | NVLink per direction (GB/s) | bound "
            "| step, 1 GPU (ms) | utilization | 8-GPU all-reduce (ms) | step, 8 GPUs (ms) "
            "| all-reduce share |",
            "|" + "---|" * 11,
        ]
        lines += [
            f"| {r['gpu']} | {r['dtype']} | {r['peak_flops_per_s'] / 1e12:.1f} "
            f"| {r['hbm_bytes_per_s'] / 1e9:.0f} | {r['nvlink_bytes_per_s_per_direction'] / 1e9:.0f} "
            f"| {r['bound']} | {1000 * r['step_s']:.1f} | {r['utilization']:.0%} "
            f"| {1000 * r['allreduce_s']:.2f} | {1000 * r['step_s_multi_gpu']:.1f} "
            f"| {r['allreduce_overhead']:.1%} |"
            for r in roof
        ]
        lines += [
            "",
            "Peaks (dense): "
            + "; ".join(
                f"{gpu}: {src}" for gpu, src in {r["gpu"]: r["source"] for r in roof}.items()
            ),
        ]
        lines.append("")
    pipe = result.get("pipeline")
    if pipe:
        lines += [
            "### Input pipeline",
            "",
            f"Training iterator of `{pipe['config']}` ({'x'.join(map(str, pipe['input_shape']))}, "
            f"batch 1, default augmentation, {pipe['phantom_cases']} phantom series).",
            "",
            "| grain workers | first batch (s) | samples/s |",
            "|---|---|---|",
        ]
        lines += [
            f"| {r['workers']} | {r['first_batch_s']:.1f} | {r['samples_per_s']:.1f} |"
            for r in pipe["rows"]
        ]
        if pipe["train_step_samples_per_s"]:
            verdict = "keeps up with" if pipe["keeps_up"] else "does NOT keep up with"
            lines += [
                "",
                f"The pipeline {verdict} the measured float32 train step of the same config "
                f"({pipe['train_step_samples_per_s']:.2f} samples/s).",
            ]
        lines.append("")
    inf = result.get("inference")
    if inf:
        lines += ["### Inference", ""]
        if "skipped" in inf:
            lines += [f"Skipped: {inf['skipped']}.", ""]
        else:
            from benchmarks import inference

            lines += [inference.markdown(inf)]
    layer_rows = result.get("layers")
    if layer_rows:
        spec = result["layers_spec"]
        lines += [
            "### Per layer: conv block (conv, GroupNorm, ReLU) forward + backward",
            "",
            layers.markdown(layer_rows, spec["impls"], ["float32", "bfloat16"]),
        ]
    return "\n".join(lines)


def plot(result: dict, out: Path) -> list[str]:
    """throughput.png (samples/s per case, JAX and PyTorch) and scaling.png; the files written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    steps = result.get("train_step")
    if steps:
        labels = [f"{r['config']}\nb{r['batch']} {r['dtype']}" for r in steps]
        x = np.arange(len(steps))
        fig, ax = plt.subplots(figsize=(max(5, 1.6 * len(steps)), 3.8))
        ax.bar(x - 0.2, [r["samples_per_s"] for r in steps], 0.4, label="lumbar_jax")
        if any("torch" in r for r in steps):
            ref = [r["torch"]["samples_per_s"] if "torch" in r else 0 for r in steps]
            ax.bar(x + 0.2, ref, 0.4, label="PyTorch eager")
        ax.set_xticks(x, labels, fontsize=8)
        ax.set_ylabel("samples/s")
        ax.set_title(f"Train step throughput, {result['meta']['device']}")
        ax.legend()
        fig.tight_layout()
        fig.savefig(out / "throughput.png", dpi=110)
        plt.close(fig)
        written.append("throughput.png")
    scaling = result.get("scaling")
    if scaling and scaling["rows"]:
        fig, ax = plt.subplots(figsize=(5, 3.8))
        for kind in ("weak", "strong"):
            for mode in ("mesh", "pmap"):
                rows = [r for r in scaling["rows"] if r["scaling"] == kind and r["mode"] == mode]
                if rows:
                    ax.plot(
                        [r["devices"] for r in rows],
                        [r["efficiency"] for r in rows],
                        marker="o",
                        label=f"{kind}, {mode}",
                    )
        ax.set_xlabel("devices")
        ax.set_ylabel("efficiency")
        title = "Scaling efficiency"
        if scaling.get("note"):
            title += "\n(simulated CPU devices: not a speed measure)"
        ax.set_title(title, fontsize=10)
        ax.legend()
        fig.tight_layout()
        fig.savefig(out / "scaling.png", dpi=110)
        plt.close(fig)
        written.append("scaling.png")
    return written


def _jsonable(x):
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
    skip: list[str] = (),
    coarse: str = "",
    fine: str = "",
    with_torch: bool = True,
    suite: dict | None = None,
) -> dict:
    """Runs the suite's parts (``suite`` overrides the named one, e.g. tiny shapes in tests)."""
    suite = suite or SUITES[suite_name]
    _OVERRIDES.clear()
    _OVERRIDES.update(suite.get("overrides", {}))
    load_start, suite_start = os.getloadavg()[0], time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    with_torch = with_torch and layers.torch_available()
    result: dict = {"meta": {**metadata(), "suite": suite_name}, "suite": suite}
    peaks = {}
    if jax.default_backend() == "cpu":
        for dtype in ("float32", "bfloat16"):
            peaks[dtype] = hardware.measure_cpu_matmul_peak(dtype)["flops_per_s"]
        result["cpu_matmul_peak"] = peaks
    result["gpu_peaks"] = hardware.GPU_PEAKS
    seconds = result["part_seconds"] = {}

    def timed(part: str, fn, *args):
        start = time.perf_counter()
        value = fn(*args)
        seconds[part] = round(time.perf_counter() - start, 1)
        return value

    if "train_step" not in skip:
        result["train_step"] = timed("train_step", run_train_step, suite, peaks, with_torch)
    if "scaling" not in skip and suite["scaling"]:
        result["scaling"] = timed("scaling", run_scaling, suite["scaling"])
    if "roofline" not in skip and suite["roofline"]:
        result["roofline"] = timed("roofline", run_roofline, suite["roofline"])
    if "pipeline" not in skip and suite["pipeline"]:
        steps = result.get("train_step", [])
        result["pipeline"] = timed("pipeline", run_pipeline, suite["pipeline"], steps)
    if "inference" not in skip:
        try:
            result["inference"] = timed(
                "inference", run_inference, coarse, fine, suite["inference_series"]
            )
        except Exception as e:  # e.g. an export parity failure: keep the other parts' results
            result["inference"] = {"skipped": f"failed: {type(e).__name__}: {e}"}
    if "layers" not in skip and suite["layers"]:
        spec = suite["layers"]
        result["layers_spec"] = spec
        result["layers"] = timed(
            "layers",
            layers.time_layers,
            _config(spec["config"]),
            spec["batch"],
            spec["impls"],
            ["float32", "bfloat16"],
            3,
            with_torch,
        )
    result["meta"]["wall_s"] = round(time.perf_counter() - suite_start, 1)
    result["meta"]["load_avg_1m"] = {"start": load_start, "end": os.getloadavg()[0]}
    result["plots"] = plot(result, out)
    result = _jsonable(result)
    (out / "results.json").write_text(json.dumps(result, indent=1, default=str) + "\n")
    (out / "results.md").write_text(markdown(result) + "\n")
    return result


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
