"""Step time of the train step on one device, in mesh mode and in pmap mode.

  XLA_FLAGS=--xla_force_host_platform_device_count=4 python -m benchmarks.parallel_step \
      --config=fine:cpu --batch=4

Times the same global batch in each mode on whatever devices JAX sees. Simulated CPU devices
share the machine's cores, so on CPU these times show overheads, not a speed-up.
"""

from __future__ import annotations

import json
import statistics
from typing import Any

import jax
import ml_collections
from absl import app, flags

from benchmarks import common
from lumbar_jax import config as config_lib
from lumbar_jax.training.parallel import DataParallel

FLAGS = flags.FLAGS


def define_flags() -> None:
    """Defines the command line's flags.

    Only when run as a program: the suite and the tests import several benchmark modules
    into one process, where flags of the same name would collide.
    """
    flags.DEFINE_string("config", "fine:cpu", "Config NAME[:ARG] or path.")
    flags.DEFINE_integer("batch", None, "Global batch; default one per device.")
    flags.DEFINE_integer("steps", 5, "Timed steps per mode.")


def time_mode(
    config: ml_collections.ConfigDict,
    mode: str,
    devices: list,
    global_batch: int,
    steps: int,
    initial: Any = None,
) -> dict:
    """Compile-and-first-step seconds and the median step time of one mode on ``devices``.

    Args:
      config: the run's config.
      mode: "mesh" or "pmap".
      devices: the devices to spread the global batch over.
      global_batch: samples per step over all devices.
      steps: timed steps after the first.
      initial: host train state; default the config's initial state.

    Returns:
      ``devices``, ``global_batch``, ``compile_and_first_step_s`` and ``step_s_median``.
    """
    if initial is None:
        initial = jax.device_get(common.initial_state(config))
    dp = DataParallel(mode, global_batch, devices)
    runner = common.StepRunner(
        dp.wrap_step(common.train_step_fn(config)),
        dp.place_state(initial),
        dp.place_batch(common.random_batch(config, global_batch)),
    )
    first, times = common.time_calls(runner, steps)  # the first call compiles
    return {
        "devices": len(devices),
        "global_batch": global_batch,
        "compile_and_first_step_s": round(first, 2),
        "step_s_median": round(statistics.median(times), 3),
    }


def time_modes(config: ml_collections.ConfigDict, global_batch: int, steps: int) -> list[dict]:
    """Median step time per mode on identical inputs."""
    initial = jax.device_get(common.initial_state(config))
    rows = []
    modes = [("one_device", "mesh", jax.devices()[:1])]
    modes += [("mesh", "mesh", jax.devices()), ("pmap", "pmap", jax.devices())]
    for name, mode, devices in modes:
        row = time_mode(config, mode, devices, global_batch, steps, initial)
        rows.append({"mode": name, **row})
    return rows


def main(argv: list[str]) -> None:
    del argv
    config = config_lib.load_config(FLAGS.config)
    batch = FLAGS.batch or jax.device_count()
    meta = {"backend": jax.default_backend(), "device": jax.devices()[0].device_kind}
    for row in time_modes(config, batch, FLAGS.steps):
        print(json.dumps({"config": FLAGS.config, **meta, **row}))


if __name__ == "__main__":
    define_flags()
    app.run(main)
