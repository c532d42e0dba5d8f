"""Compiled memory estimate of the train step (XLA memory analysis), per stage and precision.

  python -m benchmarks.memory --batch=5 --output=benchmarks/results

Compiles (does not run) the train step of ``coarse`` and ``fine`` at the given batch in
float32 and bfloat16, with and without rematerialization, and reports XLA's buffer sizes. The
estimate is for the backend it compiles on; ``--conv_impl=xla --layer_impl=flax`` (the
defaults here) compile the convolutions and layers a GPU would run.
"""

from __future__ import annotations

import json
from pathlib import Path

import jax
import ml_collections
from absl import app, flags

from benchmarks import common
from benchmarks.render import table

FLAGS = flags.FLAGS


def define_flags() -> None:
    """Defines the command line's flags.

    Only when run as a program: the suite and the tests import several benchmark modules
    into one process, where flags of the same name would collide.
    """
    flags.DEFINE_integer("batch", 5, "Batch size (the paper's is 5).")
    flags.DEFINE_string("conv_impl", "xla", "Convolution implementation to compile.")
    flags.DEFINE_string("layer_impl", "flax", "Pooling/up-convolution implementation.")
    flags.DEFINE_string("output", "benchmarks/results", "Folder for memory.json/.md.")


def train_step_memory(config: ml_collections.ConfigDict, batch: int) -> dict:
    """XLA's memory analysis of the compiled train step, in GiB (rounded to 3 decimals)."""
    memory = common.memory_analysis(common.compile_train_step_shapes(config, batch))
    return {key: round(gib, 3) for key, gib in memory.items()}


def run(batch: int, conv_impl: str = "xla", layer_impl: str = "flax") -> dict:
    """The memory analysis of ``coarse`` and ``fine`` per dtype, with and without remat.

    Returns:
      ``{"meta", "rows"}``: the date, backend, device, jax version and conv_impl, and one row
      per stage, dtype and remat setting.
    """
    rows = []
    for stage in ("coarse", "fine"):
        for dtype in ("float32", "bfloat16"):
            for remat in (False, True):
                config = common.load_config(
                    stage,
                    {
                        "model.dtype": dtype,
                        "model.remat": str(remat),
                        "model.conv_impl": conv_impl,
                        "model.layer_impl": layer_impl,
                    },
                )
                row = {"stage": stage, "dtype": dtype, "remat": remat, "batch": batch}
                row.update(train_step_memory(config, batch))
                rows.append(row)
                print(json.dumps(row), flush=True)
    meta = {
        "date": common.utc_now(),
        "backend": jax.default_backend(),
        "device": jax.devices()[0].device_kind,
        "jax": jax.__version__,
        "conv_impl": conv_impl,
    }
    return {"meta": meta, "rows": rows}


def markdown(result: dict) -> str:
    """One line on where it was compiled, and the table (whether it fits the paper's GPU)."""
    meta = result["meta"]
    header = ["stage", "dtype", "remat", "batch", "params+opt state (GiB)", "temporaries (GiB)"]
    header += ["peak estimate (GiB)", "fits 16 GB P100"]
    cells = [
        [
            r["stage"],
            r["dtype"],
            r["remat"],
            r["batch"],
            f"{r['outputs_gib']:.2f}",
            f"{r['temp_gib']:.2f}",
            f"{r['peak_estimate_gib']:.2f}",
            "yes" if r["peak_estimate_gib"] * common.GIB < 16e9 else "no",
        ]
        for r in result["rows"]
    ]
    lines = [
        f"Train-step memory, XLA memory analysis on {meta['backend']} ({meta['device']}), "
        f"conv_impl={meta['conv_impl']}, jax {meta['jax']}, {meta['date']}:",
        "",
        *table(header, cells),
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> None:
    del argv
    result = run(FLAGS.batch, FLAGS.conv_impl, FLAGS.layer_impl)
    out = Path(FLAGS.output)
    out.mkdir(parents=True, exist_ok=True)
    (out / "memory.json").write_text(json.dumps(result, indent=2) + "\n")
    (out / "memory.md").write_text(markdown(result))
    print(markdown(result), end="")


if __name__ == "__main__":
    define_flags()
    app.run(main)
