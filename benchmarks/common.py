"""Inputs and timing shared by the benchmarks."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import jax
import numpy as np


def random_batch(config, batch_size: int, seed: int = 0) -> dict[str, np.ndarray]:
    """A host batch of the config's shape with random intensities and labels."""
    shape = tuple(config.data.input_shape)
    classes = config.data.num_classes
    rng = np.random.default_rng(seed)
    return {
        "image_dhwc": rng.random((batch_size, *shape, 1), np.float32),
        "label_dhw": rng.integers(0, classes, (batch_size, *shape)).astype(np.uint8),
        "labeled_c": np.ones((batch_size, classes), bool),
    }


def time_steps(step: Callable, state: Any, batch: Any, steps: int) -> tuple[float, list[float]]:
    """(first call's seconds, seconds of each following call), each waited to completion."""
    times = []
    for _ in range(steps + 1):
        start = time.perf_counter()
        state, metrics = step(state, batch, jax.random.key(1))
        jax.block_until_ready(metrics)
        times.append(time.perf_counter() - start)
    return times[0], times[1:]


def time_calls(fn: Callable[[], Any], calls: int) -> list[float]:
    """Seconds of each of ``calls`` calls of ``fn`` (which waits for its result), warmed up."""
    fn()
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times
