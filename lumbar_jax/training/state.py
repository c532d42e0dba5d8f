"""The train state (step, parameters, optimizer state) and the optimizer a config asks for."""

from __future__ import annotations

from typing import Any

import flax
import jax
import jax.numpy as jnp
import ml_collections
import optax

from lumbar_jax.model import init_params


@flax.struct.dataclass
class TrainState:
    step: jnp.ndarray
    params: Any
    opt_state: Any


def make_optimizer(config: ml_collections.ConfigDict) -> optax.GradientTransformation:
    """Adam with the config's learning rate (paper: 1e-4)."""
    return optax.adam(config.optim.learning_rate)


def create_train_state(config: ml_collections.ConfigDict, rng: jax.Array) -> TrainState:
    """Initial parameters (float32) and optimizer state for the config's input shape."""
    params = init_params(config, rng)
    opt_state = make_optimizer(config).init(params)
    return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=opt_state)
