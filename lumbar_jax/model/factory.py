"""The one place that builds a network from a config, and its initial parameters."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import jax
import jax.numpy as jnp

from lumbar_jax.model.unet3d import UNet3D

if TYPE_CHECKING:  # the GPU probe's image has no ml_collections; the model does not need it
    import ml_collections


def make_model(config: ml_collections.ConfigDict) -> UNet3D:
    """The U-Net a config describes (``config.model``, classes from ``config.data``)."""
    m = config.model
    return UNet3D(
        num_classes=config.data.num_classes,
        base_filters=m.base_filters,
        pool_factors=tuple(tuple(p) for p in m.pool_factors),
        norm=m.norm,
        num_groups=m.num_groups,
        conv_impl=m.conv_impl,
        # Configs saved before this field existed load with the default.
        layer_impl=m.get("layer_impl", "auto"),
        dtype=jnp.dtype(m.dtype),
        remat=m.remat,
        deep_supervision=m.get("deep_supervision", 0),
    )


def init_params(config: ml_collections.ConfigDict, rng: jax.Array) -> Any:
    """Initial float32 parameters of the config's model at its input shape."""
    image_bdhwc = jnp.zeros((1, *config.data.input_shape, 1), jnp.float32)
    # all_scales: the deep-supervision heads are parameters too.
    return make_model(config).init(rng, image_bdhwc, all_scales=True)["params"]


def param_shapes(config: ml_collections.ConfigDict) -> Any:
    """The parameters' tree of ``jax.ShapeDtypeStruct``, without computing them."""
    return jax.eval_shape(lambda: init_params(config, jax.random.key(0)))
