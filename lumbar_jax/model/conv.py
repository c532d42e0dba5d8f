"""The U-Net's convolutions and resampling, with interchangeable implementations.

XLA:CPU runs 3D convolutions far below the CPU's matmul peak, while its 2D convolutions are
fast. ``stack2d`` rewrites one 3D convolution as a single 2D convolution over depth-stacked
inputs: the three depth-shifted copies of the input are concatenated on channels and the
kernel's depth axis is folded into its input channels. The parameters (``kernel`` of shape
(kd, kh, kw, in, out), ``bias``) are the same as ``flax.linen.Conv``'s, so checkpoints and
ONNX export do not depend on the implementation chosen. ``onednn`` runs the convolution, its
data gradient and its weight gradient as oneDNN primitives through the XLA FFI (CPU only; a C++
extension that the install builds, see ``model/onednn.py``).

Pooling and the transposed convolution going up use windows equal to their strides, so each
is also a reshape: with ``layer_impl="custom"`` pooling takes the maximum over a reshaped array
and the transposed convolution is one matrix product followed by a depth-to-space reshape.
XLA:CPU lowers ``nn.ConvTranspose`` to an input-dilated convolution that took about 100 ms
per call at the CPU preset's top level, and the gradient of ``nn.max_pool`` builds an index
array per dimension; the reshaped forms avoid both. ``layer_impl="flax"`` keeps Flax's layers
(``nn.max_pool``, ``nn.ConvTranspose``), which is what jax2onnx exports.
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

from lumbar_jax.model import onednn

CONV_IMPLS = ("auto", "xla", "stack2d", "onednn")
LAYER_IMPLS = ("auto", "flax", "custom")


def resolve_conv_impl(impl: str, dtype: jnp.dtype = jnp.float32) -> str:
    """Maps ``auto`` to the fastest implementation measured on the default backend.

    On CPU that is ``onednn`` for float32 when its extension loads, else ``stack2d`` (with a
    warning, once per process); cuDNN/TPU 3D convolutions are fast, so ``xla`` elsewhere. An
    explicit ``onednn`` where it cannot run (another backend, extension missing) falls back the
    same way. bfloat16 takes ``stack2d`` on CPU: the oneDNN extension's bfloat16 train steps
    gave non-finite gradients now and then (tests/model/test_conv.py), and this CPU computes
    bfloat16 convolutions in float32 anyway.
    """
    if impl not in CONV_IMPLS:
        raise ValueError(f"Unknown conv_impl {impl!r}; choose one of {CONV_IMPLS}.")
    if impl not in ("auto", "onednn"):
        return impl
    if jax.default_backend() != "cpu":
        return "xla"
    if jnp.dtype(dtype) == jnp.bfloat16:
        if impl == "onednn":
            onednn.warn_bfloat16()
        return "stack2d"
    if onednn.available():
        return "onednn"
    onednn.warn_unavailable()
    return "stack2d"


def resolve_layer_impl(impl: str) -> str:
    """Maps ``auto`` to ``custom`` on CPU (measured faster) and to ``flax`` elsewhere."""
    if impl not in LAYER_IMPLS:
        raise ValueError(f"Unknown layer_impl {impl!r}; choose one of {LAYER_IMPLS}.")
    if impl == "auto":
        return "custom" if jax.default_backend() == "cpu" else "flax"
    return impl


def conv3d_xla(x_bdhwc: jnp.ndarray, kernel_dhwio: jnp.ndarray) -> jnp.ndarray:
    """Plain XLA 3D convolution, stride 1, SAME padding."""
    return lax.conv_general_dilated(
        x_bdhwc, kernel_dhwio, (1, 1, 1), "SAME", dimension_numbers=("NDHWC", "DHWIO", "NDHWC")
    )


def _conv2d(x_nhwc: jnp.ndarray, kernel_hwio: jnp.ndarray) -> jnp.ndarray:
    return lax.conv_general_dilated(
        x_nhwc, kernel_hwio, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
    )


def conv3d_stack2d(x_bdhwc: jnp.ndarray, kernel_dhwio: jnp.ndarray) -> jnp.ndarray:
    """The same convolution as one 2D convolution over depth-stacked channels."""
    b, d, h, w, c = x_bdhwc.shape
    kd, kh, kw, _, out = kernel_dhwio.shape
    pad = kd // 2
    x_padded = jnp.pad(x_bdhwc, ((0, 0), (pad, kd - 1 - pad), (0, 0), (0, 0), (0, 0)))
    stacked = jnp.concatenate([x_padded[:, i : i + d] for i in range(kd)], axis=-1)
    kernel_hwio = jnp.transpose(kernel_dhwio, (1, 2, 0, 3, 4)).reshape(kh, kw, kd * c, out)
    y = _conv2d(stacked.reshape(b * d, h, w, kd * c), kernel_hwio)
    return y.reshape(b, d, h, w, out)


_IMPLS = {"xla": conv3d_xla, "stack2d": conv3d_stack2d, "onednn": onednn.conv3d_onednn}


class Conv3D(nn.Module):
    """Drop-in for ``nn.Conv(features, kernel_size, padding="SAME")`` on 5D inputs.

    Called with several arrays, it convolves their concatenation along channels (one kernel,
    as ``nn.Conv`` would hold). ``stack2d`` then convolves each part with its slice of the
    kernel and adds, which skips the concatenation and, at the decoder's inputs, a slower
    wide-input convolution (measured on XLA:CPU); ``onednn`` is faster on the concatenation.
    """

    features: int
    kernel_size: Sequence[int] = (3, 3, 3)
    use_bias: bool = True
    impl: str = "auto"
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, *parts_bdhwc: jnp.ndarray) -> jnp.ndarray:
        channels = [x.shape[-1] for x in parts_bdhwc]
        kernel = self.param(
            "kernel",
            nn.initializers.lecun_normal(),
            (*self.kernel_size, sum(channels), self.features),
            jnp.float32,
        )
        kernel = kernel.astype(self.dtype)
        parts = [x.astype(self.dtype) for x in parts_bdhwc]
        impl = resolve_conv_impl(self.impl, self.dtype)
        # oneDNN runs one wide convolution faster than the sum of two (measured at the decoders).
        if impl in ("xla", "onednn") or len(parts) == 1:
            x = parts[0] if len(parts) == 1 else jnp.concatenate(parts, axis=-1)
            y = _IMPLS[impl](x, kernel)
        else:
            # The partial sums add in float32, so bfloat16 rounds about as often as one conv.
            y, start = 0.0, 0
            for x, c in zip(parts, channels, strict=True):
                part = _IMPLS[impl](x, kernel[:, :, :, start : start + c])
                y, start = y + part.astype(jnp.float32), start + c
            y = y.astype(self.dtype)
        if self.use_bias:
            bias = self.param("bias", nn.initializers.zeros_init(), (self.features,), jnp.float32)
            y = y + bias.astype(self.dtype)
        return y


def max_pool_reshape(x_bdhwc: jnp.ndarray, factors: Sequence[int]) -> jnp.ndarray:
    """Max pooling with window = stride = ``factors`` (dividing the shape) as a reshape."""
    b, d, h, w, c = x_bdhwc.shape
    fd, fh, fw = factors
    blocks = x_bdhwc.reshape(b, d // fd, fd, h // fh, fh, w // fw, fw, c)
    return jnp.max(blocks, axis=(2, 4, 6))


def max_pool(x_bdhwc: jnp.ndarray, factors: Sequence[int], impl: str = "auto") -> jnp.ndarray:
    """Max pooling by ``factors`` (window = stride); the same values for every impl."""
    if resolve_layer_impl(impl) == "custom":
        return max_pool_reshape(x_bdhwc, factors)
    # Keywords: jax2onnx exports this call only with window_shape given by name.
    return nn.max_pool(x_bdhwc, window_shape=tuple(factors), strides=tuple(factors))


def conv_transpose_reshape(x_bdhwc: jnp.ndarray, kernel_dhwio: jnp.ndarray) -> jnp.ndarray:
    """``nn.ConvTranspose`` with kernel = strides as a matrix product and depth-to-space.

    Each input voxel fills its own output block, weighted by the (flipped, as in
    ``nn.ConvTranspose``) kernel, so no output voxel sums two inputs.
    """
    b, d, h, w, _ = x_bdhwc.shape
    fd, fh, fw, _, out = kernel_dhwio.shape
    flipped = kernel_dhwio[::-1, ::-1, ::-1]
    blocks = jnp.einsum("bdhwc,ijkco->bdihjwko", x_bdhwc, flipped)
    return blocks.reshape(b, d * fd, h * fh, w * fw, out)


class UpConv(nn.Module):
    """Drop-in for ``nn.ConvTranspose(features, factors, strides=factors)``: same parameters."""

    features: int
    factors: Sequence[int]
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x_bdhwc: jnp.ndarray) -> jnp.ndarray:
        kernel = self.param(
            "kernel",
            nn.initializers.lecun_normal(),
            (*self.factors, x_bdhwc.shape[-1], self.features),
            jnp.float32,
        )
        bias = self.param("bias", nn.initializers.zeros_init(), (self.features,), jnp.float32)
        x_bdhwc, kernel = x_bdhwc.astype(self.dtype), kernel.astype(self.dtype)
        return conv_transpose_reshape(x_bdhwc, kernel) + bias.astype(self.dtype)
