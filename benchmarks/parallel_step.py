"""Step time of the train step on one device, in mesh mode and in pmap mode.

  XLA_FLAGS=--xla_force_host_platform_device_count=4 python -m benchmarks.parallel_step \
      --config=fine:cpu --batch=4

Times the same global batch in each mode on whatever devices JAX sees. Simulated CPU devices
share the machine's cores, so on CPU these times show overheads, not a speed-up.
"""

from __future__ import annotations

import functools
import json
import statistics

import jax
from absl import app, flags

from benchmarks.common import random_batch, time_steps
from lumbar_jax import config as config_lib
from lumbar_jax import trainer
from lumbar_jax.parallel import DataParallel

_CONFIG = flags.DEFINE_string("config", "fine:cpu", "Config NAME[:ARG] or path.")
_BATCH = flags.DEFINE_integer("batch", None, "Global batch; default one per device.")
_STEPS = flags.DEFINE_integer("steps", 5, "Timed steps per mode.")


def time_modes(config, global_batch: int, steps: int) -> list[dict]:
    """Median step time per mode on identical inputs."""
    initial = jax.device_get(trainer.create_train_state(config, jax.random.key(0)))
    batch = random_batch(config, global_batch)
    rows = []
    modes = [("one_device", "mesh", jax.devices()[:1])]
    modes += [("mesh", "mesh", jax.devices()), ("pmap", "pmap", jax.devices())]
    for name, mode, devices in modes:
        dp = DataParallel(mode, global_batch, devices)
        state = dp.place_state(initial)
        step = dp.wrap_step(functools.partial(trainer.train_step, config=config))
        first, times = time_steps(step, state, dp.place_batch(batch), steps)
        rows.append(
            {
                "mode": name,
                "devices": len(devices),
                "global_batch": global_batch,
                "compile_and_first_step_s": round(first, 2),
                "step_s_median": round(statistics.median(times), 3),
            }
        )
    return rows


def main(argv: list[str]) -> None:
    del argv
    config = config_lib.load_config(_CONFIG.value)
    batch = _BATCH.value or jax.device_count()
    meta = {"backend": jax.default_backend(), "device": jax.devices()[0].device_kind}
    for row in time_modes(config, batch, _STEPS.value):
        print(json.dumps({"config": _CONFIG.value, **meta, **row}))


if __name__ == "__main__":
    app.run(main)
