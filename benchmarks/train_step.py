"""Times the jitted train step of a config on the default device.

  python -m benchmarks.train_step --config=fine --batch=1 --steps=3

Prints the device, compile time and the median wall time per step (after one warm-up step),
measured on synthetic input of the config's shape.
"""

from __future__ import annotations

import functools
import json
import statistics
import time

import jax
from absl import app, flags

from benchmarks.common import random_batch, time_steps
from lumbar_jax import config as config_lib
from lumbar_jax import trainer

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


def time_train_step(config, batch_size: int, steps: int) -> dict:
    """Compile time and per-step times of ``trainer.train_step`` on random data."""
    batch = jax.device_put(random_batch(config, batch_size))
    state = trainer.create_train_state(config, jax.random.key(0))
    step = jax.jit(functools.partial(trainer.train_step, config=config), donate_argnums=0)
    start = time.perf_counter()
    compiled = step.lower(state, batch, jax.random.key(1)).compile()
    compile_s = time.perf_counter() - start
    _, times = time_steps(compiled, state, batch, steps)  # the first call is a warm-up
    return {
        "device": str(jax.devices()[0].device_kind),
        "platform": jax.default_backend(),
        "batch": batch_size,
        "input_shape": list(config.data.input_shape),
        "conv_impl": config.model.conv_impl,
        "layer_impl": config.model.layer_impl,
        "dtype": config.model.dtype,
        "compile_s": round(compile_s, 2),
        "step_s_median": round(statistics.median(times), 3),
        "step_s_all": [round(t, 3) for t in times],
    }


def main(argv: list[str]) -> None:
    del argv
    config = config_lib.load_config(FLAGS.config, _OVERRIDES)
    print(json.dumps({"config": FLAGS.config, **time_train_step(config, FLAGS.batch, FLAGS.steps)}))


if __name__ == "__main__":
    define_flags()
    app.run(main, flags_parser=config_lib.absl_flags_parser(_OVERRIDES))
