import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lumbar_jax.model import UNet3D, validate_input_shape

SHAPES = [
    # (kwargs, input shape (b, d, h, w, c), expected logits shape)
    (dict(base_filters=4), (1, 16, 32, 32, 1), (1, 16, 32, 32, 6)),
    (dict(base_filters=4, num_classes=3), (2, 16, 64, 32, 1), (2, 16, 64, 32, 3)),
    (
        dict(base_filters=2, pool_factors=((1, 2, 2), (2, 2, 2), (2, 2, 2), (1, 2, 2))),
        (1, 8, 32, 16, 1),
        (1, 8, 32, 16, 6),
    ),
    (dict(base_filters=2, pool_factors=((2, 2, 2), (2, 2, 2))), (1, 4, 8, 8, 2), (1, 4, 8, 8, 6)),
    (dict(base_filters=4, norm="instance"), (1, 16, 16, 16, 1), (1, 16, 16, 16, 6)),
    (dict(base_filters=4, norm="none", remat=True), (1, 16, 16, 16, 1), (1, 16, 16, 16, 6)),
]


@pytest.mark.parametrize("kwargs,input_shape,expected", SHAPES)
def test_output_shape(kwargs, input_shape, expected):
    model = UNet3D(**kwargs)
    x = jnp.ones(input_shape)
    params = model.init(jax.random.key(0), x)
    out = model.apply(params, x)
    assert out.shape == expected
    assert out.dtype == jnp.float32


def test_levels_follow_pool_factors():
    model = UNet3D(base_filters=4, pool_factors=((1, 2, 2), (2, 2, 2)))
    params = model.init(jax.random.key(0), jnp.ones((1, 4, 8, 8, 1)))["params"]
    assert {"enc0", "enc1", "bottleneck", "up0", "up1", "dec0", "dec1", "head"} == set(params)
    assert params["bottleneck"]["block0"]["conv"]["kernel"].shape == (3, 3, 3, 8, 16)
    assert params["up0"]["kernel"].shape == (1, 2, 2, 8, 4)


@pytest.mark.parametrize(
    "shape,message",
    [
        ((16, 300, 128), "axis 1 is 300, must be a multiple of 16 (e.g. 288 or 304)"),
        ((12, 320, 128), "axis 0 is 12, must be a multiple of 8 (e.g. 8 or 16)"),
    ],
)
def test_rejects_shapes_pooling_cannot_divide(shape, message):
    pools = ((1, 2, 2), (2, 2, 2), (2, 2, 2), (2, 2, 2))
    with pytest.raises(ValueError) as err:
        validate_input_shape(shape, pools)
    assert message in str(err.value)
    with pytest.raises(ValueError, match="cannot pass pooling"):
        UNet3D(base_filters=2).init(jax.random.key(0), jnp.ones((1, *shape, 1)))


def test_bfloat16_compute_keeps_float32_params():
    model = UNet3D(base_filters=4, dtype=jnp.bfloat16)
    x = jnp.ones((1, 16, 16, 16, 1))
    params = model.init(jax.random.key(0), x)
    assert {p.dtype for p in jax.tree.leaves(params)} == {jnp.dtype("float32")}
    ref = UNet3D(base_filters=4).apply(params, x)
    out = model.apply(params, x)
    assert out.dtype == jnp.float32
    # Same parameters, lower precision: close but not equal. bfloat16 keeps 8 significant
    # bits (0.4 %) per operation; through 20 layers the logits drift by ~2 % of their scale.
    np.testing.assert_allclose(out, ref, atol=0.03 * float(np.max(np.abs(ref))))
    assert not np.array_equal(np.asarray(out), np.asarray(ref))


def test_remat_changes_memory_not_results():
    x = jax.random.normal(jax.random.key(0), (1, 8, 16, 16, 1))
    kwargs = dict(base_filters=4, pool_factors=((1, 2, 2), (2, 2, 2)))
    params = UNet3D(**kwargs).init(jax.random.key(1), x)

    def grads(remat):
        model = UNet3D(**kwargs, remat=remat)
        return jax.grad(lambda p: jnp.sum(model.apply(p, x) ** 2))(params)

    for a, b in zip(jax.tree.leaves(grads(False)), jax.tree.leaves(grads(True)), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_deep_supervision_heads_come_out_only_when_asked():
    model = UNet3D(
        num_classes=3,
        base_filters=2,
        pool_factors=((1, 2, 2), (2, 2, 2), (2, 2, 2)),
        deep_supervision=2,
    )
    x = jnp.zeros((1, 4, 8, 8, 1))
    params = model.init(jax.random.key(0), x, all_scales=True)["params"]
    assert {"head", "head1", "head2"} <= set(params)
    outs = model.apply({"params": params}, x, all_scales=True)
    assert [o.shape for o in outs] == [(1, 4, 8, 8, 3), (1, 4, 4, 4, 3), (1, 2, 2, 2, 3)]
    assert "head3" not in params  # only the levels asked for
    plain = model.apply({"params": params}, x)  # inference: the full-resolution head only
    np.testing.assert_array_equal(plain, outs[0])
