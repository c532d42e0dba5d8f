"""Helpers every benchmark uses: inputs, compiling the train step, XLA's analyses, timing.

One way to do each: ``compile_train_step`` (a real state and batch, to run) and
``compile_train_step_shapes`` (shapes only, for the cost and memory analyses) build the same
jitted, donating ``lumbar_jax.training.step.train_step``; ``cost_analysis`` and
``memory_analysis`` read the compiled step; ``time_calls`` is the one timing loop (a warm-up
call, then the timed ones), ``StepRunner`` makes a train step a call of no arguments for it,
and ``time_in_rounds`` alternates several timed callables.
"""

from __future__ import annotations

import datetime
import functools
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import flax
import jax
import ml_collections
import numpy as np
import optax

from lumbar_jax import __version__
from lumbar_jax import config as config_lib
from lumbar_jax.data.phantom.tissues import NUM_TISSUES
from lumbar_jax.training import state as state_lib
from lumbar_jax.training import step as step_lib

GIB = 1024**3


def load_config(
    name: str, overrides: Mapping[str, str] | None = None, **more: str
) -> ml_collections.ConfigDict:
    """The config ``name`` with ``overrides`` (e.g. a test's tiny shapes), then ``more``."""
    return config_lib.load_config(name, {**(overrides or {}), **more})


def random_batch(
    config: ml_collections.ConfigDict, batch_size: int, seed: int = 0
) -> dict[str, np.ndarray]:
    """A host batch of the config's shape with random intensities and labels.

    With ``data.synthesis="tissues"`` it also holds random tissue maps, so the step draws
    images from them (for ``config.synthesis.prob`` of the samples), as in training.
    """
    shape = tuple(config.data.input_shape)
    classes = config.data.num_classes
    rng = np.random.default_rng(seed)
    batch = {
        "image_dhwc": rng.random((batch_size, *shape, 1), np.float32),
        "label_dhw": rng.integers(0, classes, (batch_size, *shape)).astype(np.uint8),
        "labeled_c": np.ones((batch_size, classes), bool),
    }
    if config.data.get("synthesis", "image") == "tissues":
        batch["tissue_dhw"] = rng.integers(0, NUM_TISSUES, (batch_size, *shape)).astype(np.uint8)
        batch["spacing_3"] = np.tile(np.float32([4.0, 1.0, 1.0]), (batch_size, 1))
        batch["has_tissue"] = np.ones(batch_size, bool)
    return batch


def batch_spec(config: ml_collections.ConfigDict, batch_size: int) -> dict[str, Any]:
    """The shapes and dtypes of ``random_batch`` (nothing on the device)."""
    return jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), random_batch(config, batch_size)
    )


def initial_state(config: ml_collections.ConfigDict) -> Any:
    """The config's initial train state (parameters and optimizer state), on the device."""
    return state_lib.create_train_state(config, jax.random.key(0))


def abstract_state(config: ml_collections.ConfigDict) -> Any:
    """The shapes and dtypes of ``initial_state``, nothing allocated."""
    return jax.eval_shape(lambda: initial_state(config))


def param_count(config: ml_collections.ConfigDict) -> int:
    """Number of parameters of the lumbar_jax model for a config."""
    return int(sum(np.prod(x.shape) for x in jax.tree.leaves(abstract_state(config).params)))


def train_step_fn(config: ml_collections.ConfigDict) -> Callable:
    """``train_step(state, batch, rng)`` of the config, not jitted."""
    return functools.partial(step_lib.train_step, config=config)


def jit_train_step(config: ml_collections.ConfigDict) -> Callable:
    """The jitted train step of the config, its state argument donated."""
    return jax.jit(train_step_fn(config), donate_argnums=0)


class StepRunner:
    """A train step called on fixed inputs, its (donated) state carried from call to call.

    Args:
      step: ``step(state, batch, rng) -> (state, metrics)``, jitted or compiled.
      state: the initial state, placed as ``step`` expects it.
      batch: the batch every call uses, placed likewise.
    """

    def __init__(self, step: Callable, state: Any, batch: Any) -> None:
        self.step, self.state, self.batch = step, state, batch
        self.rng = jax.random.key(1)

    def __call__(self, steps: int = 1) -> None:
        """Runs ``steps`` steps (one by default), waiting for the last one only."""
        for _ in range(steps):
            self.state, metrics = self.step(self.state, self.batch, self.rng)
        jax.block_until_ready(metrics)


def compile_train_step(
    config: ml_collections.ConfigDict, batch_size: int
) -> tuple[Any, float, StepRunner]:
    """Compiles the train step for a random batch and its initial state.

    Returns:
      The compiled executable, the seconds compiling took, and a ``StepRunner`` of the
      executable on the initial state and the batch (on the default device).
    """
    state = initial_state(config)
    batch = jax.device_put(random_batch(config, batch_size))
    start = time.perf_counter()
    compiled = jit_train_step(config).lower(state, batch, jax.random.key(1)).compile()
    return compiled, time.perf_counter() - start, StepRunner(compiled, state, batch)


def compile_train_step_shapes(config: ml_collections.ConfigDict, batch_size: int) -> Any:
    """The train step compiled from shapes alone (nothing allocated, nothing run)."""
    lowered = jit_train_step(config).lower(
        abstract_state(config), batch_spec(config, batch_size), jax.random.key(0)
    )
    return lowered.compile()


def cost_analysis(compiled: Any) -> dict[str, float]:
    """FLOPs and bytes accessed per call, from XLA's cost analysis of a compiled function."""
    cost = compiled.cost_analysis()
    if isinstance(cost, list):  # older JAX: one dict per computation
        cost = cost[0]
    return {"flops": float(cost.get("flops", 0.0)), "bytes": float(cost.get("bytes accessed", 0))}


def memory_analysis(compiled: Any) -> dict[str, float]:
    """XLA's buffer sizes of a compiled function in GiB, and the peak they add up to.

    Returns:
      ``arguments_gib``, ``outputs_gib``, ``aliased_gib``, ``temp_gib`` and
      ``peak_estimate_gib``; empty where the backend gives no memory analysis.
    """
    m = compiled.memory_analysis()
    if m is None:
        return {}
    arguments, outputs = m.argument_size_in_bytes / GIB, m.output_size_in_bytes / GIB
    aliased, temp = m.alias_size_in_bytes / GIB, m.temp_size_in_bytes / GIB
    return {
        "arguments_gib": arguments,
        "outputs_gib": outputs,
        "aliased_gib": aliased,
        "temp_gib": temp,
        # Donated state is aliased to the new state: counted once.
        "peak_estimate_gib": arguments + outputs - aliased + temp,
    }


def time_calls(fn: Callable[[], Any], calls: int) -> tuple[float, list[float]]:
    """Times a first call (the warm-up: compilation, caches), then ``calls`` more.

    Args:
      fn: a function of no arguments that waits for its own result.
      calls: timed calls after the first.

    Returns:
      The first call's seconds and the seconds of each following call.
    """
    times = []
    for _ in range(calls + 1):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times[0], times[1:]


def median_time(fn: Callable[[], Any], calls: int) -> float:
    """Median seconds of ``calls`` calls of ``fn``, after one untimed call."""
    return statistics.median(time_calls(fn, calls)[1])


def time_in_rounds(
    timers: Sequence[Callable[[], Any]], calls: Sequence[int], rounds: int
) -> list[list[float]]:
    """Times each callable ``calls[i]`` times per round, in turn, for ``rounds`` rounds.

    A machine's speed drifts over minutes, so callables to be compared are timed alternately
    and each one's times pooled over the rounds; every turn starts with an untimed call.

    Returns:
      Per callable, the seconds of all its timed calls.
    """
    times: list[list[float]] = [[] for _ in timers]
    for _ in range(rounds):
        for i, fn in enumerate(timers):
            times[i] += time_calls(fn, calls[i])[1]
    return times


def utc_now() -> str:
    """The current UTC date and time, to the second (ISO 8601)."""
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


def torch_available() -> bool:
    """Whether the optional PyTorch reference can run."""
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


def metadata() -> dict[str, Any]:
    """Device, versions, host and date of this run."""
    versions = {
        "lumbar_jax": __version__,
        "python": sys.version.split()[0],
        "jax": jax.__version__,
        "jaxlib": jax.lib.__version__ if hasattr(jax.lib, "__version__") else "",
        "flax": flax.__version__,
        "optax": optax.__version__,
        "numpy": np.__version__,
    }
    if torch_available():
        import torch

        versions["torch"] = torch.__version__
    return {
        "date": utc_now(),
        "backend": jax.default_backend(),
        "device": jax.devices()[0].device_kind,
        "device_count": jax.device_count(),
        "host": f"{platform.machine()} {platform.processor()}".strip(),
        "cpu_count": os.cpu_count(),
        "versions": versions,
    }
