"""The one pure train step, wrapped per parallel mode by ``parallel.DataParallel``."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import optax

from lumbar_jax.model import make_model
from lumbar_jax.training import augment, losses
from lumbar_jax.training.state import TrainState

# Keys of the synthesis and of its coin flips: streams apart from the noise's, which folds in
# the sample ids (small numbers) directly.
_SYNTHESIS_STREAM, _COIN_STREAM = 2**31 - 1, 2**31 - 2


def augmented_image(
    batch: dict[str, jnp.ndarray],
    rng: jax.Array,
    sample_ids_b: jnp.ndarray,
    config: ml_collections.ConfigDict,
) -> jnp.ndarray:
    """The batch's images after the device's augmentations: tissue synthesis, noise."""
    image = batch["image_dhwc"]
    if "tissue_dhw" in batch:
        with jax.named_scope("synthesis"):
            drawn = augment.synthesize(
                batch["tissue_dhw"],
                batch["spacing_3"],
                jax.random.fold_in(rng, _SYNTHESIS_STREAM),
                sample_ids_b,
                config.synthesis,
            )
        # A share of the samples with a tissue map get the drawn image; cases without one
        # (real images) keep their own.
        coins = jax.random.fold_in(rng, _COIN_STREAM)
        coin = jax.vmap(lambda i: jax.random.uniform(jax.random.fold_in(coins, i)))(sample_ids_b)
        use = batch["has_tissue"] & (coin < config.synthesis.prob)
        image = jnp.where(use[:, None, None, None, None], drawn, image)
    with jax.named_scope("noise"):
        return augment.add_noise(
            image, rng, sample_ids_b, config.aug.noise_prob, config.aug.noise_max_std
        )


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
      batch: ``image_dhwc`` (b, d, h, w, 1), ``label_dhw`` (b, d, h, w), ``labeled_c`` (b, c);
        with ``data.synthesis="tissues"`` also ``tissue_dhw`` (b, d, h, w), ``spacing_3``
        (b, 3) and ``has_tissue`` (b,): those samples get an image drawn from their tissues.
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
    image = augmented_image(batch, rng, first + jnp.arange(local_batch), config)
    label = batch["label_dhw"].astype(jnp.int32)

    options = {
        "ce_weight": config.loss.ce_weight,
        "dice_weight": config.loss.dice_weight,
        "class_weights_c": config.loss.get("class_weights") or None,
    }

    def loss_fn(params):
        if model.deep_supervision:
            logits = model.apply({"params": params}, image, all_scales=True)
            with jax.named_scope("loss"):
                return losses.multiscale_loss(
                    logits, label, batch["labeled_c"], model.pool_factors, **options
                )
        logits = model.apply({"params": params}, image)
        with jax.named_scope("loss"):
            return losses.segmentation_loss(logits, label, batch["labeled_c"], **options)

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
