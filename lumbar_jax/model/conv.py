"""3x3x3 "SAME" convolutions with interchangeable implementations and identical parameters.

XLA:CPU runs 3D convolutions far below the CPU's matmul peak, while its 2D convolutions are
fast. ``stack2d`` rewrites one 3D convolution as a single 2D convolution over depth-stacked
inputs: the three depth-shifted copies of the input are concatenated on channels and the
kernel's depth axis is folded into its input channels. The parameters (``kernel`` of shape
(kd, kh, kw, in, out), ``bias``) are the same as ``flax.linen.Conv``'s, so checkpoints and
ONNX export do not depend on the implementation chosen.
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

CONV_IMPLS = ("auto", "xla", "stack2d")


def resolve_conv_impl(impl: str) -> str:
    """Maps ``auto`` to the fastest implementation measured on the default backend."""
    if impl not in CONV_IMPLS:
        raise ValueError(f"Unknown conv_impl {impl!r}; choose one of {CONV_IMPLS}.")
    if impl == "auto":
        # cuDNN/TPU 3D convolutions are fast; only XLA:CPU needs the rewrite.
        return "stack2d" if jax.default_backend() == "cpu" else "xla"
    return impl


def conv3d_xla(x_bdhwc: jnp.ndarray, kernel_dhwio: jnp.ndarray) -> jnp.ndarray:
    """Plain XLA 3D convolution, stride 1, SAME padding."""
    return lax.conv_general_dilated(
        x_bdhwc, kernel_dhwio, (1, 1, 1), "SAME", dimension_numbers=("NDHWC", "DHWIO", "NDHWC")
    )


def conv3d_stack2d(x_bdhwc: jnp.ndarray, kernel_dhwio: jnp.ndarray) -> jnp.ndarray:
    """The same convolution as one 2D convolution over depth-stacked channels."""
    b, d, h, w, c = x_bdhwc.shape
    kd, kh, kw, _, out = kernel_dhwio.shape
    pad = kd // 2
    x_padded = jnp.pad(x_bdhwc, ((0, 0), (pad, kd - 1 - pad), (0, 0), (0, 0), (0, 0)))
    stacked = jnp.concatenate([x_padded[:, i : i + d] for i in range(kd)], axis=-1)
    kernel_hwio = jnp.transpose(kernel_dhwio, (1, 2, 0, 3, 4)).reshape(kh, kw, kd * c, out)
    y = lax.conv_general_dilated(
        stacked.reshape(b * d, h, w, kd * c),
        kernel_hwio,
        (1, 1),
        "SAME",
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
    )
    return y.reshape(b, d, h, w, out)


_IMPLS = {"xla": conv3d_xla, "stack2d": conv3d_stack2d}


class Conv3D(nn.Module):
    """Drop-in for ``nn.Conv(features, kernel_size, padding="SAME")`` on 5D inputs."""

    features: int
    kernel_size: Sequence[int] = (3, 3, 3)
    use_bias: bool = True
    impl: str = "auto"
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x_bdhwc: jnp.ndarray) -> jnp.ndarray:
        kernel = self.param(
            "kernel",
            nn.initializers.lecun_normal(),
            (*self.kernel_size, x_bdhwc.shape[-1], self.features),
            jnp.float32,
        )
        x_bdhwc, kernel = x_bdhwc.astype(self.dtype), kernel.astype(self.dtype)
        y = _IMPLS[resolve_conv_impl(self.impl)](x_bdhwc, kernel)
        if self.use_bias:
            bias = self.param("bias", nn.initializers.zeros_init(), (self.features,), jnp.float32)
            y = y + bias.astype(self.dtype)
        return y
