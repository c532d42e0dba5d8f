"""Compiled memory estimate of the train step (XLA memory analysis), per stage and precision.

  python -m benchmarks.memory --batch=5 --output=benchmarks/results

Compiles (does not run) the train step of ``coarse`` and ``fine`` at the given batch in
float32 and bfloat16, with and without rematerialization, and reports XLA's buffer sizes. The
estimate is for the backend it compiles on; ``--conv_impl=xla --layer_impl=flax`` (the
defaults here) compile the convolutions and layers a GPU would run.
"""

from __future__ import annotations

import datetime
import functools
import json
from pathlib import Path

import jax
import jax.numpy as jnp
from absl import app, flags

from lumbar_jax import config as config_lib
from lumbar_jax import trainer

GIB = 1024**3

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


def train_step_memory(config, batch: int) -> dict:
    """XLA's memory analysis of the compiled train step, in GiB."""
    shape = tuple(config.data.input_shape)
    state = jax.eval_shape(lambda: trainer.create_train_state(config, jax.random.key(0)))
    batch_spec = {
        "image_dhwc": jax.ShapeDtypeStruct((batch, *shape, 1), jnp.float32),
        "label_dhw": jax.ShapeDtypeStruct((batch, *shape), jnp.uint8),
        "labeled_c": jax.ShapeDtypeStruct((batch, config.data.num_classes), jnp.bool_),
    }
    step = jax.jit(functools.partial(trainer.train_step, config=config), donate_argnums=0)
    compiled = step.lower(state, batch_spec, jax.random.key(0)).compile()
    m = compiled.memory_analysis()
    arguments = m.argument_size_in_bytes / GIB
    outputs = m.output_size_in_bytes / GIB
    aliased = m.alias_size_in_bytes / GIB
    temp = m.temp_size_in_bytes / GIB
    return {
        "arguments_gib": round(arguments, 3),
        "outputs_gib": round(outputs, 3),
        "aliased_gib": round(aliased, 3),
        "temp_gib": round(temp, 3),
        # Donated state is aliased to the new state: counted once.
        "peak_estimate_gib": round(arguments + outputs - aliased + temp, 3),
    }


def main(argv: list[str]) -> None:
    del argv
    rows = []
    for stage in ("coarse", "fine"):
        for dtype in ("float32", "bfloat16"):
            for remat in (False, True):
                config = config_lib.load_config(
                    stage,
                    {
                        "model.dtype": dtype,
                        "model.remat": str(remat),
                        "model.conv_impl": FLAGS.conv_impl,
                        "model.layer_impl": FLAGS.layer_impl,
                    },
                )
                row = {"stage": stage, "dtype": dtype, "remat": remat, "batch": FLAGS.batch}
                row.update(train_step_memory(config, FLAGS.batch))
                rows.append(row)
                print(json.dumps(row), flush=True)
    device = jax.devices()[0]
    meta = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "backend": jax.default_backend(),
        "device": device.device_kind,
        "jax": jax.__version__,
        "conv_impl": FLAGS.conv_impl,
    }
    out = Path(FLAGS.output)
    out.mkdir(parents=True, exist_ok=True)
    (out / "memory.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
    lines = [
        f"Train-step memory, XLA memory analysis on {meta['backend']} ({meta['device']}), "
        f"conv_impl={meta['conv_impl']}, jax {meta['jax']}, {meta['date']}:",
        "",
        "| stage | dtype | remat | batch | params+opt state (GiB) | temporaries (GiB) | peak estimate (GiB) | fits 16 GB P100 |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        fits = "yes" if r["peak_estimate_gib"] * GIB < 16e9 else "no"
        lines.append(
            f"| {r['stage']} | {r['dtype']} | {r['remat']} | {r['batch']} | {r['outputs_gib']:.2f} "
            f"| {r['temp_gib']:.2f} | {r['peak_estimate_gib']:.2f} | {fits} |"
        )
    (out / "memory.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    define_flags()
    app.run(main)
