"""Every conv implementation must match XLA's 3D convolution, forward and backward."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lumbar_jax.model import UNet3D
from lumbar_jax.model.conv import CONV_IMPLS, conv3d_stack2d, conv3d_xla, resolve_conv_impl

# float32 sums in a different order: differences of ~1e-6 relative to the largest value are
# expected; gradients here reach ~30, so their absolute tolerance is 1e-4.
RTOL, ATOL = 1e-4, 1e-5


@pytest.mark.parametrize("shape,cin,cout", [((2, 5, 12, 8), 3, 4), ((1, 1, 6, 6), 2, 2)])
def test_stack2d_matches_xla(shape, cin, cout):
    x = jax.random.normal(jax.random.key(0), (*shape, cin))
    k = jax.random.normal(jax.random.key(1), (3, 3, 3, cin, cout))
    np.testing.assert_allclose(conv3d_stack2d(x, k), conv3d_xla(x, k), rtol=RTOL, atol=ATOL)

    def loss(f):
        return lambda x, k: jnp.sum(jnp.sin(f(x, k)))

    gx_ref, gk_ref = jax.grad(loss(conv3d_xla), argnums=(0, 1))(x, k)
    gx, gk = jax.grad(loss(conv3d_stack2d), argnums=(0, 1))(x, k)
    np.testing.assert_allclose(gx, gx_ref, rtol=RTOL, atol=1e-4)
    np.testing.assert_allclose(gk, gk_ref, rtol=RTOL, atol=1e-4)


def test_unet_same_params_and_outputs_for_every_impl():
    x = jax.random.normal(jax.random.key(0), (1, 8, 16, 16, 1))
    trees = {}
    outs = {}
    for impl in ("xla", "stack2d"):
        model = UNet3D(base_filters=4, pool_factors=((1, 2, 2), (2, 2, 2)), conv_impl=impl)
        trees[impl] = model.init(jax.random.key(1), x)
        outs[impl] = model.apply(trees["xla"], x)
    assert jax.tree.structure(trees["xla"]) == jax.tree.structure(trees["stack2d"])
    for a, b in zip(jax.tree.leaves(trees["xla"]), jax.tree.leaves(trees["stack2d"]), strict=True):
        np.testing.assert_array_equal(a, b)  # same initializer, same names, same shapes
    np.testing.assert_allclose(outs["stack2d"], outs["xla"], rtol=RTOL, atol=1e-4)


def test_resolve_conv_impl():
    assert resolve_conv_impl("auto") == ("stack2d" if jax.default_backend() == "cpu" else "xla")
    assert set(CONV_IMPLS) == {"auto", "xla", "stack2d"}
    with pytest.raises(ValueError, match="Unknown conv_impl 'cudnn'"):
        resolve_conv_impl("cudnn")


@pytest.mark.parametrize("impl", [i for i in CONV_IMPLS if i != "auto"])
def test_every_impl_matches_xla(impl):
    """Outputs within rtol 1e-4 / atol 1e-5 and gradients within atol 1e-4 of the XLA conv."""
    impls = {"xla": conv3d_xla, "stack2d": conv3d_stack2d}
    x = jax.random.normal(jax.random.key(2), (1, 4, 6, 5, 3))
    k = jax.random.normal(jax.random.key(3), (3, 3, 3, 3, 5))
    np.testing.assert_allclose(impls[impl](x, k), conv3d_xla(x, k), rtol=RTOL, atol=ATOL)
    grads = [
        jax.grad(lambda x, k, f=f: jnp.sum(jnp.sin(f(x, k))), argnums=(0, 1))(x, k)
        for f in (impls[impl], conv3d_xla)
    ]
    for got, want in zip(*grads, strict=True):
        np.testing.assert_allclose(got, want, rtol=RTOL, atol=1e-4)
