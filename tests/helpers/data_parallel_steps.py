"""Runs a few train steps on 1 device, in mesh mode and in pmap mode on N simulated CPU
devices, from the same initial state and global batches; saves the final parameters.

  python tests/helpers/data_parallel_steps.py NUM_DEVICES OUT.npz
"""

import os
import sys

num_devices, out = int(sys.argv[1]), sys.argv[2]
# Must be set before jax is imported.
os.environ["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={num_devices}"

import functools  # noqa: E402

import jax  # noqa: E402
import numpy as np  # noqa: E402

from lumbar_jax import config as config_lib  # noqa: E402
from lumbar_jax.training import state as state_lib  # noqa: E402
from lumbar_jax.training import step as step_lib  # noqa: E402
from lumbar_jax.training.parallel import DataParallel  # noqa: E402

GLOBAL_BATCH, STEPS = num_devices, 3
assert jax.device_count() == num_devices
config = config_lib.load_config(
    "fine:tiny", {"optim.batch_size": str(GLOBAL_BATCH), "optim.learning_rate": "1e-3"}
)
initial = jax.device_get(state_lib.create_train_state(config, jax.random.key(0)))
rng = np.random.default_rng(0)
shape = tuple(config.data.input_shape)
batches = [
    {
        "image_dhwc": rng.random((GLOBAL_BATCH, *shape, 1), np.float32),
        "label_dhw": rng.integers(0, 6, (GLOBAL_BATCH, *shape)).astype(np.uint8),
        "labeled_c": np.ones((GLOBAL_BATCH, 6), bool),
    }
    for _ in range(STEPS)
]
results = {}
for name, mode, devices in [
    ("one_device", "mesh", jax.devices()[:1]),
    ("mesh", "mesh", jax.devices()),
    ("pmap", "pmap", jax.devices()),
]:
    dp = DataParallel(mode, GLOBAL_BATCH, devices)
    state = dp.place_state(initial)
    step = dp.wrap_step(functools.partial(step_lib.train_step, config=config))
    losses, grad_norms = [], []
    for batch in batches:
        state, metrics = step(state, dp.place_batch(batch), jax.random.key(1))
        losses.append(float(dp.host_metrics(metrics)["loss"]))
        grad_norms.append(float(dp.host_metrics(metrics)["grad_norm"]))
    results[f"{name}/losses"] = np.array(losses)
    results[f"{name}/grad_norms"] = np.array(grad_norms)
    for path, leaf in jax.tree_util.tree_leaves_with_path(dp.host_state(state).params):
        results[f"{name}/{jax.tree_util.keystr(path)}"] = leaf
np.savez(out, **results)
