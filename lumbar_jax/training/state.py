"""The train state (step, parameters, optimizer state) and the optimizer a config asks for."""

from __future__ import annotations

from typing import Any

import flax
import jax
import jax.numpy as jnp
import ml_collections
import optax

from lumbar_jax.model import init_params

SCHEDULES = ("constant", "cosine", "poly")


@flax.struct.dataclass
class TrainState:
    """What a train step updates. ``tx`` is static: it is rebuilt from the config, not saved."""

    step: jnp.ndarray
    params: Any
    opt_state: Any
    tx: optax.GradientTransformation = flax.struct.field(pytree_node=False, default=None)


def learning_rate_schedule(
    config: ml_collections.ConfigDict, steps_per_epoch: int
) -> optax.Schedule:
    """The learning rate over steps: ``config.optim.schedule`` after a linear warm-up.

    "constant" is the paper's (Adam at 1e-4 throughout); "cosine" decays to
    ``final_lr_fraction`` of the peak; "poly" is nnU-Net's (1 - t)^0.9. Warm-up and decay are
    in epochs, so the same config fits datasets of any size.
    """
    o = config.optim
    kind = o.get("schedule", "constant")
    if kind not in SCHEDULES:
        raise ValueError(f"config.optim.schedule is {kind!r}; choose one of {SCHEDULES}.")
    peak = o.learning_rate
    total = max(1, o.num_epochs * steps_per_epoch)
    warmup = min(int(o.get("warmup_epochs", 0) * steps_per_epoch), total - 1)
    if kind == "constant":
        decay = optax.constant_schedule(peak)
    elif kind == "cosine":
        decay = optax.cosine_decay_schedule(peak, total - warmup, o.get("final_lr_fraction", 0.0))
    else:
        decay = optax.polynomial_schedule(peak, 0.0, 0.9, total - warmup)
    if warmup == 0:
        return decay
    ramp = optax.linear_schedule(peak / max(warmup, 1), peak, warmup)
    return optax.join_schedules([ramp, decay], [warmup])


def make_optimizer(
    config: ml_collections.ConfigDict, steps_per_epoch: int = 1
) -> optax.GradientTransformation:
    """Adam (paper: learning rate 1e-4) on the config's schedule; the rate is in the state."""
    # inject_hyperparams keeps the current rate in the optimizer state, so metrics can show it.
    return optax.inject_hyperparams(optax.adam)(
        learning_rate=learning_rate_schedule(config, steps_per_epoch)
    )


def create_train_state(
    config: ml_collections.ConfigDict, rng: jax.Array, steps_per_epoch: int = 1
) -> TrainState:
    """Initial parameters (float32) and optimizer state for the config's input shape.

    Args:
      config: the run's config.
      rng: initialization key.
      steps_per_epoch: optimizer steps per epoch, which the learning-rate schedule counts in.
    """
    params = init_params(config, rng)
    tx = make_optimizer(config, steps_per_epoch)
    return TrainState(
        step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params), tx=tx
    )
