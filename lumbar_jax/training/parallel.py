"""Data parallelism over every device of every process, around the one ``train_step``.

Two modes, chosen by ``config.parallel``:

- ``pmap``: ``jax.pmap`` over the local devices; ``train_step`` averages gradients with
  ``lax.pmean`` over the ``data`` axis (which spans all processes).
- ``mesh``: ``jax.jit`` over a 1D ``Mesh`` of all devices; parameters replicated, the batch
  sharded along ``data`` with ``NamedSharding``; XLA inserts the gradient all-reduce.

Batch semantics: ``config.optim.batch_size`` is the global batch, the number of samples in one
optimizer step across all devices and hosts. Each process feeds ``batch_size / process_count``
samples, each device computes ``batch_size / device_count``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

MODES = ("pmap", "mesh")
AXIS = "data"


def check_batch(global_batch: int, num_devices: int, num_processes: int = 1) -> int:
    """Per-device batch; raises ValueError with valid choices when it does not divide."""
    if global_batch >= num_devices and global_batch % num_devices == 0:
        return global_batch // num_devices
    lower = global_batch // num_devices * num_devices
    options = sorted({v for v in (lower, lower + num_devices) if v > 0})
    divisors = [d for d in range(1, global_batch + 1) if global_batch % d == 0]
    raise ValueError(
        f"Global batch {global_batch} does not divide across {num_devices} devices "
        f"({num_processes} process(es)): set --config.optim.batch_size to a multiple of "
        f"{num_devices} (e.g. {' or '.join(map(str, options))}), or run on "
        f"{', '.join(map(str, divisors))} devices."
    )


class DataParallel:
    """Places state and batches on devices and wraps the train step for one mode."""

    def __init__(self, mode: str, global_batch: int, devices: list | None = None):
        """
        Args:
          mode: one of MODES.
          global_batch: samples per optimizer step over all devices.
          devices: the devices to use (single-process only); default all of them.
        """
        if mode not in MODES:
            raise ValueError(f"Unknown config.parallel {mode!r}; choose one of {MODES}.")
        self.mode = mode
        devices = list(devices) if devices is not None else jax.devices()
        self.num_devices = len(devices)
        self.local_devices = [d for d in devices if d.process_index == jax.process_index()]
        self.per_device_batch = check_batch(global_batch, self.num_devices, jax.process_count())
        if mode == "mesh":
            self.mesh = jax.make_mesh(
                (self.num_devices,),
                (AXIS,),
                axis_types=(jax.sharding.AxisType.Auto,),
                devices=devices,
            )
            self.replicated = NamedSharding(self.mesh, P())
            self.batch_sharding = NamedSharding(self.mesh, P(AXIS))

    def place_state(self, host_state: Any) -> Any:
        """Host (numpy) state -> the replicated device state this mode trains on."""
        if self.mode == "mesh":
            return jax.tree.map(
                lambda x: jax.make_array_from_callback(
                    np.shape(x), self.replicated, lambda idx, x=x: np.asarray(x)[idx]
                ),
                host_state,
            )
        # pmap takes one leading entry per local device.
        n = len(self.local_devices)
        local_mesh = jax.make_mesh(
            (n,), (AXIS,), axis_types=(jax.sharding.AxisType.Auto,), devices=self.local_devices
        )
        stacked = NamedSharding(local_mesh, P(AXIS))
        return jax.tree.map(
            lambda x: jax.device_put(np.broadcast_to(np.asarray(x), (n, *np.shape(x))), stacked),
            host_state,
        )

    def host_state(self, state: Any) -> Any:
        """One copy of the state as numpy arrays, for checkpoints and evaluation."""
        if self.mode == "pmap":
            state = jax.tree.map(lambda x: x[0], state)
        return jax.device_get(state)

    def place_batch(self, local_batch: dict[str, np.ndarray]) -> dict[str, jax.Array]:
        """This process's share of the global batch -> device arrays."""
        if self.mode == "mesh":
            return {
                k: jax.make_array_from_process_local_data(self.batch_sharding, v)
                for k, v in local_batch.items()
            }
        n = len(self.local_devices)
        return {k: v.reshape(n, v.shape[0] // n, *v.shape[1:]) for k, v in local_batch.items()}

    def wrap_step(self, train_step: Callable) -> Callable:
        """``train_step(state, batch, rng, *, axis_name)`` -> the step this mode runs."""
        if self.mode == "mesh":
            return jax.jit(
                functools.partial(train_step, axis_name=None),
                in_shardings=(self.replicated, self.batch_sharding, self.replicated),
                out_shardings=(self.replicated, self.replicated),
                donate_argnums=0,
            )
        return jax.pmap(
            functools.partial(train_step, axis_name=AXIS),
            axis_name=AXIS,
            in_axes=(0, 0, None),
            donate_argnums=0,
            devices=self.local_devices if jax.process_count() == 1 else None,
        )

    def host_metrics(self, metrics: dict) -> dict:
        """Device metrics -> host floats (pmap replicas hold equal, averaged values)."""
        if self.mode == "pmap":
            metrics = jax.tree.map(lambda x: x[0], metrics)
        return jax.device_get(metrics)
