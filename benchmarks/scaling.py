"""Data-parallel scaling: 1..N devices, mesh versus pmap, weak and strong, with efficiency.

  XLA_FLAGS=--xla_force_host_platform_device_count=4 python -m benchmarks.scaling \
      --config=fine:tiny --per_device=5 --global_batch=4 --output=scaling.json

Weak scaling keeps ``--per_device`` samples on each device (the global batch grows with the
device count); strong scaling keeps ``--global_batch`` fixed. Efficiency is t(1) / t(n) for
weak and t(1) / (n t(n)) for strong scaling. Device counts that do not divide the strong
global batch are left out. On CPU, ``--xla_force_host_platform_device_count`` devices share
the machine's cores, so the times check that every mode runs; they are not a speed measure.

In the suite (``run``), this program runs in a subprocess, where the simulated device count
can still be set.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import jax
import ml_collections
from absl import app, flags

from benchmarks import common
from benchmarks.parallel_step import time_mode
from benchmarks.render import table
from lumbar_jax import config as config_lib

TITLE = "Scaling"
FLAGS = flags.FLAGS
_OVERRIDES: dict[str, str] = {}  # --config.a.b=v on the command line

CPU_NOTE = (
    "Simulated CPU devices share the same cores: these times check that every mode and "
    "device count runs; they are not a speed measure."
)


def define_flags() -> None:
    """Defines the command line's flags (only when run as a program; see train_step.py)."""
    flags.DEFINE_string("config", "fine:tiny", "Config NAME[:ARG] or path.")
    flags.DEFINE_integer("per_device", 5, "Samples per device for weak scaling.")
    flags.DEFINE_integer("global_batch", 4, "Global batch for strong scaling.")
    flags.DEFINE_integer("steps", 3, "Timed steps per point.")
    flags.DEFINE_list("modes", ["mesh", "pmap"], "Data-parallel modes to time.")
    flags.DEFINE_string("output", "", "JSON file for the rows (printed either way).")


def scaling_rows(
    config: ml_collections.ConfigDict,
    per_device: int,
    global_batch: int,
    steps: int,
    modes: Sequence[str] = ("mesh", "pmap"),
) -> list[dict]:
    """Step times for every device count, mode and scaling kind, with efficiencies."""
    initial = jax.device_get(common.initial_state(config))
    rows = []
    measured = {}  # (mode, devices, batch) -> row: a point shared by weak and strong runs once
    counts = range(1, jax.device_count() + 1)
    for kind in ("weak", "strong"):
        for mode in modes:
            base = None
            for n in counts:
                batch = per_device * n if kind == "weak" else global_batch
                if batch <= 0 or batch % n:  # strong scaling off, or not divisible
                    continue
                key = (mode, n, batch)
                if key not in measured:
                    measured[key] = time_mode(
                        config, mode, jax.devices()[:n], batch, steps, initial
                    )
                row = dict(measured[key])
                base = base or row["step_s_median"]
                ideal = base if kind == "weak" else base / n
                row.update(
                    scaling=kind, mode=mode, efficiency=round(ideal / row["step_s_median"], 3)
                )
                rows.append(row)
                print(json.dumps(row), flush=True)
    return rows


def run(spec: dict, overrides: Mapping[str, str] | None = None) -> dict:
    """This program in a subprocess with ``spec["devices"]`` simulated CPU devices (on CPU).

    Args:
      spec: ``config``, ``devices``, ``per_device``, ``global_batch`` and optionally
        ``modes`` (default mesh and pmap).
      overrides: config overrides, passed on as ``--config.KEY=VALUE``.

    Returns:
      The program's JSON (``config``, ``backend``, ``device``, ``device_count``, ``note``,
      ``rows``) and the ``command`` that reproduces it.
    """
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
            *[f"--config.{k}={v}" for k, v in (overrides or {}).items()],
            f"--output={out}",
        ]
        subprocess.run(cmd, env=env, check=True, cwd=Path(__file__).parent.parent)
        result = json.loads(out.read_text())
    result["command"] = " ".join(
        ([f"XLA_FLAGS={env['XLA_FLAGS']}"] if "XLA_FLAGS" in env else []) + ["python", *cmd[1:-1]]
    )
    return result


def markdown(result: dict) -> str:
    """The command, the note on simulated devices, and the step time per point."""
    header = ["scaling", "mode", "devices", "global batch", "step (s)", "efficiency"]
    rows = [
        [
            r["scaling"],
            r["mode"],
            r["devices"],
            r["global_batch"],
            f"{r['step_s_median']:.3f}",
            f"{r['efficiency']:.2f}",
        ]
        for r in result["rows"]
    ]
    lines = [f"`{result['command']}`. {result.get('note', '')}", "", *table(header, rows)]
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> None:
    del argv
    config = config_lib.load_config(FLAGS.config, _OVERRIDES)
    rows = scaling_rows(config, FLAGS.per_device, FLAGS.global_batch, FLAGS.steps, FLAGS.modes)
    result = {
        "config": FLAGS.config,
        "backend": jax.default_backend(),
        "device": jax.devices()[0].device_kind,
        "device_count": jax.device_count(),
        "note": CPU_NOTE if jax.default_backend() == "cpu" else "",
        "rows": rows,
    }
    if FLAGS.output:
        Path(FLAGS.output).write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    define_flags()
    app.run(main, flags_parser=config_lib.absl_flags_parser(_OVERRIDES))
