"""The one pure train step, wrapped per parallel mode by ``parallel.DataParallel``."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import optax

from lumbar_jax.model import make_model
from lumbar_jax.training import losses
from lumbar_jax.training.state import TrainState


def add_noise(
    image_bdhwc: jnp.ndarray, rng: jax.Array, sample_ids_b: jnp.ndarray, prob: float, max_std: float
) -> jnp.ndarray:
    """Gaussian noise augmentation (paper), drawn on the device.

    Each sample's draw is keyed by its index in the global batch, so it does not depend on
    how the batch is split across devices.
    """

    def one(sample_id, image_dhwc):
        k_apply, k_std, k_noise = jax.random.split(jax.random.fold_in(rng, sample_id), 3)
        std = jnp.where(
            jax.random.uniform(k_apply) < prob, jax.random.uniform(k_std, maxval=max_std), 0.0
        )
        return image_dhwc + std * jax.random.normal(k_noise, image_dhwc.shape, image_dhwc.dtype)

    return jax.vmap(one)(sample_ids_b, image_bdhwc)


def train_step(
    state: TrainState,
    batch: dict[str, jnp.ndarray],
    rng: jax.Array,
    *,
    config: ml_collections.ConfigDict,
    axis_name: str | None = None,
) -> tuple[TrainState, dict[str, jnp.ndarray]]:
    """One optimizer step on a batch; pure, so it can be jitted, pmapped or sharded as is.

    Args:
      state: the train state.
      batch: ``image_dhwc`` (b, d, h, w, 1), ``label_dhw`` (b, d, h, w), ``labeled_c`` (b, c).
      rng: the run's key; the step is folded in here.
      config: the run's config.
      axis_name: under ``pmap``, the device axis: gradients and metrics are averaged over it.
        None under ``jit`` (one device, or a mesh where XLA inserts the all-reduce).

    Returns:
      (the new state, metrics: loss and its parts, grad_norm, and ``finite``: whether the
      update was applied).
    """
    model = make_model(config)
    rng = jax.random.fold_in(rng, state.step)
    local_batch = batch["image_dhwc"].shape[0]
    first = jax.lax.axis_index(axis_name) * local_batch if axis_name else 0
    # Named scopes label the compiled operations (benchmarks/profile_step.py reads them).
    with jax.named_scope("noise"):
        image = add_noise(
            batch["image_dhwc"],
            rng,
            first + jnp.arange(local_batch),
            config.aug.noise_prob,
            config.aug.noise_max_std,
        )
    label = batch["label_dhw"].astype(jnp.int32)

    def loss_fn(params):
        logits = model.apply({"params": params}, image)
        with jax.named_scope("loss"):
            return losses.segmentation_loss(
                logits, label, batch["labeled_c"], config.loss.ce_weight, config.loss.dice_weight
            )

    (loss, parts), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    metrics = {"loss": loss, **parts}
    if axis_name:
        # Equal shards: the mean of the shards' mean losses is the global mean loss.
        grads, metrics = jax.lax.pmean((grads, metrics), axis_name)
    with jax.named_scope("optimizer"):
        updates, opt_state = state.tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        # inject_hyperparams records the rate it computed for this update in the new state.
        learning_rate = opt_state.hyperparams["learning_rate"]
    # A step whose loss, gradients or new parameters are not finite keeps the old state. It
    # is decided here, on the device, from values every replica holds alike after the pmean
    # (or the global values under a mesh), so replicas agree without a host round trip; the
    # host reads "finite" one step late and applies config.train.nonfinite.
    finite = all_finite((metrics["loss"], grads, params))
    params, opt_state = jax.tree.map(
        lambda new, old: jnp.where(finite, new, old),
        (params, opt_state),
        (state.params, state.opt_state),
    )
    # The step advances either way: it numbers the batches and keys the noise.
    new_state = state.replace(step=state.step + 1, params=params, opt_state=opt_state)
    return new_state, {
        **metrics,
        "grad_norm": optax.tree.norm(grads),
        "learning_rate": learning_rate,
        "finite": finite,
    }


def all_finite(tree: Any) -> jnp.ndarray:
    """Scalar bool: every floating-point value in ``tree`` is finite."""
    leaves = [x for x in jax.tree.leaves(tree) if jnp.issubdtype(jnp.result_type(x), jnp.inexact)]
    return jnp.all(jnp.stack([jnp.isfinite(x).all() for x in leaves]))
