"""3D U-Net (Cicek et al., MICCAI 2016) in flax.linen, channels-last.

Layout convention for every array in the project: ``image_bdhwc`` is
(batch, slices = left-right, superior-inferior, anterior-posterior, channels).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import flax.linen as nn
import jax.numpy as jnp

from lumbar_jax.model.conv import Conv3D, UpConv, max_pool, resolve_layer_impl

NORMS = ("group", "instance", "layer", "none")


def validate_input_shape(shape_dhw: Sequence[int], pool_factors: Sequence[Sequence[int]]) -> None:
    """Raises ValueError unless every pooling level divides ``shape_dhw`` evenly.

    Args:
      shape_dhw: spatial input shape (slices, superior-inferior, anterior-posterior).
      pool_factors: one (d, h, w) pooling factor per encoder level.
    """
    total = [math.prod(level[axis] for level in pool_factors) for axis in range(3)]
    bad = [axis for axis in range(3) if shape_dhw[axis] % total[axis]]
    if not bad:
        return
    hints = []
    for axis in bad:
        size, step = shape_dhw[axis], total[axis]
        lower = max(step, size // step * step)
        hints.append(
            f"axis {axis} is {size}, must be a multiple of {step} (e.g. {lower} or {lower + step})"
        )
    raise ValueError(
        f"Input shape {tuple(shape_dhw)} cannot pass pooling {tuple(map(tuple, pool_factors))}: "
        + "; ".join(hints)
        + "."
    )


class ConvNormAct(nn.Module):
    """3x3x3 convolution, normalization, ReLU."""

    features: int
    norm: str = "group"
    num_groups: int = 8
    conv_impl: str = "auto"
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, *parts_bdhwc: jnp.ndarray) -> jnp.ndarray:
        """Convolves the concatenation of ``parts_bdhwc`` along channels (see Conv3D)."""
        x = Conv3D(
            self.features,
            use_bias=self.norm == "none",
            impl=self.conv_impl,
            dtype=self.dtype,
            name="conv",
        )(*parts_bdhwc)
        x = _norm(self.norm, self.features, self.num_groups, self.dtype)(x)
        return nn.relu(x)


def _norm(kind: str, features: int, num_groups: int, dtype: jnp.dtype) -> nn.Module:
    if kind == "none":
        return lambda x: x
    groups = {"group": math.gcd(num_groups, features), "instance": features, "layer": 1}
    if kind not in groups:
        raise ValueError(f"Unknown norm {kind!r}; choose one of {NORMS}.")
    # Statistics in float32 even for bfloat16 compute: variance of small activations
    # underflows in bfloat16.
    return nn.GroupNorm(num_groups=groups[kind], dtype=dtype, name="norm")


class DoubleConv(nn.Module):
    """Two ConvNormAct blocks, the unit of every encoder and decoder level."""

    features: int
    norm: str
    num_groups: int
    conv_impl: str
    dtype: jnp.dtype

    @nn.compact
    def __call__(self, *parts_bdhwc: jnp.ndarray) -> jnp.ndarray:
        """The first convolution takes the concatenation of ``parts_bdhwc`` (see Conv3D)."""
        x_bdhwc = parts_bdhwc
        for i in range(2):
            block = ConvNormAct(
                self.features,
                self.norm,
                self.num_groups,
                self.conv_impl,
                self.dtype,
                name=f"block{i}",
            )
            x_bdhwc = block(*x_bdhwc) if i == 0 else block(x_bdhwc)
        return x_bdhwc


class UNet3D(nn.Module):
    """Encoder-decoder with skip connections; returns float32 logits (b, d, h, w, classes).

    Attributes:
      num_classes: output channels (background + structures).
      base_filters: channels of the first level; doubled at every level below.
      pool_factors: (d, h, w) max-pool factor of each encoder level; its length is
        the number of levels. Thick-slice stacks want 1 along d at some levels.
      norm: one of NORMS.
      num_groups: groups for ``norm="group"``.
      conv_impl: 3x3x3 convolution implementation (see model/conv.py); same parameters.
      layer_impl: "flax" (Flax's pooling and transposed convolution), "custom" (their
        reshape forms in model/conv.py) or "auto"; same parameters and outputs.
      dtype: compute dtype (float32 or bfloat16); parameters stay float32.
      remat: recompute each level's activations in the backward pass to save memory.
      deep_supervision: how many of the decoder's coarser levels get a 1x1x1 head of their
        own (nnU-Net's deep supervision); their logits come out only with ``all_scales``.
    """

    num_classes: int = 6
    base_filters: int = 32
    pool_factors: Sequence[Sequence[int]] = ((1, 2, 2), (2, 2, 2), (2, 2, 2), (2, 2, 2))
    norm: str = "group"
    num_groups: int = 8
    conv_impl: str = "auto"
    layer_impl: str = "auto"
    dtype: jnp.dtype = jnp.float32
    remat: bool = False
    deep_supervision: int = 0

    @nn.compact
    def __call__(
        self, image_bdhwc: jnp.ndarray, all_scales: bool = False
    ) -> jnp.ndarray | list[jnp.ndarray]:
        """Logits (b, d, h, w, classes); with ``all_scales`` a list: those, then the logits
        of each supervised coarser decoder level, finest first."""
        if image_bdhwc.ndim != 5:
            raise ValueError(f"Expected image_bdhwc with 5 dims, got shape {image_bdhwc.shape}.")
        validate_input_shape(image_bdhwc.shape[1:4], self.pool_factors)
        block = nn.remat(DoubleConv) if self.remat else DoubleConv
        args = (self.norm, self.num_groups, self.conv_impl, self.dtype)
        x = image_bdhwc.astype(self.dtype)
        skips = []
        for level, factors in enumerate(self.pool_factors):
            features = self.base_filters * 2**level
            x = block(features, *args, name=f"enc{level}")(x)
            skips.append(x)
            x = max_pool(x, factors, self.layer_impl)
        bottleneck_features = self.base_filters * 2 ** len(self.pool_factors)
        x = block(bottleneck_features, *args, name="bottleneck")(x)
        coarser = []
        for level in reversed(range(len(self.pool_factors))):
            features = self.base_filters * 2**level
            factors = tuple(self.pool_factors[level])
            if resolve_layer_impl(self.layer_impl) == "custom":
                x = UpConv(features, factors, dtype=self.dtype, name=f"up{level}")(x)
            else:
                # Linen's ConvTranspose (not lax.conv_transpose) is what jax2onnx exports.
                x = nn.ConvTranspose(
                    features,
                    kernel_size=factors,
                    strides=factors,
                    dtype=self.dtype,
                    name=f"up{level}",
                )(x)
            # The skip connection comes first along channels, as a concatenation would put it.
            x = block(features, *args, name=f"dec{level}")(skips[level], x)
            if all_scales and 0 < level <= self.deep_supervision:
                coarser.insert(0, self._head(x, f"head{level}"))
        logits = self._head(x, "head")
        return [logits, *coarser] if all_scales else logits

    def _head(self, x_bdhwc: jnp.ndarray, name: str) -> jnp.ndarray:
        conv = nn.Conv(self.num_classes, kernel_size=(1, 1, 1), dtype=self.dtype, name=name)
        return conv(x_bdhwc).astype(jnp.float32)
