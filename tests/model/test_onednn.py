"""conv_impl="onednn": oneDNN's forward, data-gradient and weight-gradient convolutions.

Each must equal ``lax.conv_general_dilated`` (SAME, stride 1, NDHWC x DHWIO) and its autodiff.
Tolerances: float32 results differ only by summation order, so the largest difference,
divided by the largest reference value of the same array, stays below 1e-5 (measured: up to
~1e-6); bfloat16 (inputs rounded to bfloat16, float32 accumulation, output rounded) within
2**-7 of the float32 convolution of the same rounded inputs, as XLA's bfloat16 convolution is.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import os
import platform
import shutil
import sys
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from lumbar_jax import config as config_lib
from lumbar_jax.model import UNet3D, onednn
from lumbar_jax.model.conv import Conv3D, conv3d_stack2d, conv3d_xla, resolve_conv_impl

F32_TOL = 1e-5
BF16_TOL = 2.0**-7

needs_onednn = pytest.mark.skipif(
    not onednn.available(), reason=f"oneDNN extension unavailable: {onednn.unavailable_reason()}"
)


def _normalized_error(got, want) -> float:
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    return float(np.max(np.abs(got - want)) / max(np.max(np.abs(want)), 1e-30))


def _conv_and_grads(fn, x, k, dy):
    y, pull = jax.vjp(fn, x, k)
    return (y, *pull(dy.astype(y.dtype)))


def _inputs(shape, cin, cout, kernel=(3, 3, 3), dtype=jnp.float32, seed=0):
    keys = jax.random.split(jax.random.key(seed), 3)
    x = jax.random.normal(keys[0], (*shape, cin)).astype(dtype)
    k = (jax.random.normal(keys[1], (*kernel, cin, cout)) / np.sqrt(cin * np.prod(kernel))).astype(
        dtype
    )
    dy = jax.random.normal(keys[2], (*shape, cout)).astype(dtype)
    return x, k, dy


def test_extension_built_where_supported():
    """The install builds the extension on Linux x86_64 (where the oneDNN wheel exists)."""
    if sys.platform != "linux" or platform.machine() != "x86_64":
        pytest.skip("the extension is built on Linux x86_64 only")
    if "0" in (os.environ.get("LUMBAR_JAX_ONEDNN"), os.environ.get("LUMBAR_JAX_BUILD_ONEDNN")):
        pytest.skip("switched off by the environment")
    if shutil.which(os.environ.get("CXX", "g++")) is None:
        pytest.skip("no C++ compiler: the install could not build the extension")
    try:
        importlib.metadata.distribution("onednn-cpu-gomp")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("onednn-cpu-gomp not installed: the environment predates the dependency")
    assert onednn.available(), onednn.unavailable_reason()
    assert onednn.version().startswith("3.")
    assert resolve_conv_impl("auto") == "onednn"


@needs_onednn
@pytest.mark.parametrize(
    "shape,cin,cout,kernel",
    [
        ((2, 5, 12, 8), 3, 4, (3, 3, 3)),  # batch > 1, odd sizes
        ((1, 1, 6, 6), 2, 2, (3, 3, 3)),  # one slice: depth is all padding
        ((3, 3, 7, 5), 1, 3, (3, 3, 3)),  # one input channel (the first conv), batch 3
        ((1, 4, 9, 11), 5, 16, (3, 3, 3)),  # odd channel counts
        ((2, 2, 8, 3), 64, 128, (3, 3, 3)),  # the bottleneck of a 16 x 128 x 48 input
        ((2, 4, 6, 5), 8, 6, (1, 1, 1)),  # a 1x1x1 head
        ((1, 4, 6, 5), 3, 2, (1, 3, 3)),  # 2D kernel in 3D
        ((1, 5, 6, 7), 2, 3, (2, 2, 4)),  # even kernel: XLA's SAME pads (k - 1) // 2 before
    ],
)
def test_float32_matches_xla(shape, cin, cout, kernel):
    """Output, data gradient and weight gradient within 1e-5 normalised of XLA's."""
    x, k, dy = _inputs(shape, cin, cout, kernel)
    got = _conv_and_grads(jax.jit(onednn.conv3d_onednn), x, k, dy)
    want = _conv_and_grads(conv3d_xla, x, k, dy)
    for name, g, w in zip(("y", "dx", "dk"), got, want, strict=True):
        assert g.shape == w.shape and g.dtype == w.dtype, name
        assert _normalized_error(g, w) < F32_TOL, name


@needs_onednn
@pytest.mark.parametrize("shape,cin,cout", [((2, 5, 12, 8), 3, 4), ((2, 4, 16, 6), 32, 16)])
def test_bfloat16_as_accurate_as_xla(shape, cin, cout):
    """bfloat16 in and out: within 2**-7 of float32 on the same inputs, like XLA's bfloat16."""
    x, k, dy = _inputs(shape, cin, cout, dtype=jnp.bfloat16, seed=1)
    got = _conv_and_grads(onednn.conv3d_onednn, x, k, dy)
    xla = _conv_and_grads(conv3d_xla, x, k, dy)
    f32 = jnp.float32
    want = _conv_and_grads(conv3d_xla, x.astype(f32), k.astype(f32), dy.astype(f32))
    for name, g, x_, w in zip(("y", "dx", "dk"), got, xla, want, strict=True):
        assert g.dtype == jnp.bfloat16, name
        assert _normalized_error(g, w) < BF16_TOL, name
        assert _normalized_error(x_, w) < BF16_TOL, name  # the reference meets it too


@needs_onednn
def test_conv3d_module_of_parts_is_conv_of_concatenation():
    """The decoder's two-input Conv3D: one kernel, outputs and gradients of the XLA conv."""
    keys = jax.random.split(jax.random.key(4), 2)
    a = jax.random.normal(keys[0], (2, 4, 6, 5, 3))
    b = jax.random.normal(keys[1], (2, 4, 6, 5, 2))
    conv = Conv3D(4, impl="onednn")
    params = conv.init(jax.random.key(6), a, b)
    assert params["params"]["kernel"].shape == (3, 3, 3, 5, 4)
    whole = Conv3D(4, impl="xla")

    def grads(fn):
        return jax.grad(lambda p, a, b: jnp.sum(jnp.sin(fn(p, a, b))), argnums=(0, 1, 2))(
            params, a, b
        )

    got_y, want_y = conv.apply(params, a, b), whole.apply(params, jnp.concatenate([a, b], -1))
    assert _normalized_error(got_y, want_y) < F32_TOL
    got = grads(lambda p, a, b: conv.apply(p, a, b))
    want = grads(lambda p, a, b: whole.apply(p, jnp.concatenate([a, b], -1)))
    for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
        assert _normalized_error(g, w) < F32_TOL


@needs_onednn
def test_unet_same_params_outputs_and_gradients_as_xla():
    """A tiny U-Net: identical parameter trees; logits and every parameter's gradient."""
    x = jax.random.normal(jax.random.key(0), (2, 8, 16, 12, 1))
    labels = jax.random.randint(jax.random.key(1), (2, 8, 16, 12), 0, 6)
    models = {
        impl: UNet3D(base_filters=4, pool_factors=((1, 2, 2), (2, 2, 2)), conv_impl=impl)
        for impl in ("xla", "onednn")
    }
    trees = {impl: m.init(jax.random.key(2), x) for impl, m in models.items()}
    assert jax.tree.structure(trees["xla"]) == jax.tree.structure(trees["onednn"])
    for a, b in zip(jax.tree.leaves(trees["xla"]), jax.tree.leaves(trees["onednn"]), strict=True):
        np.testing.assert_array_equal(a, b)
    params = trees["xla"]

    def loss(p, model):
        logits = model.apply(p, x)
        return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), labels[..., None], -1))

    outs = {i: jax.jit(lambda p, m=m: m.apply(p, x))(params) for i, m in models.items()}
    # GroupNorm after every conv rescales the small summation-order differences.
    assert _normalized_error(outs["onednn"], outs["xla"]) < 1e-4
    grads = {i: jax.jit(jax.grad(lambda p, m=m: loss(p, m)))(params) for i, m in models.items()}
    flat_got = jax.tree_util.tree_leaves_with_path(grads["onednn"])
    for (path, g), w in zip(flat_got, jax.tree.leaves(grads["xla"]), strict=True):
        assert _normalized_error(g, w) < 1e-4, jax.tree_util.keystr(path)


@needs_onednn
def test_handlers_cache_one_primitive_per_problem():
    x, k, dy = _inputs((1, 3, 5, 4), 2, 3, seed=7)
    fn = jax.jit(lambda x, k, dy: _conv_and_grads(onednn.conv3d_onednn, x, k, dy))
    jax.block_until_ready(fn(x, k, dy))
    before = onednn.stats()
    jax.block_until_ready(fn(x, k, dy))
    after = onednn.stats()
    assert after["calls"] == before["calls"] + 3  # forward, data and weight gradient
    assert after["primitives"] == before["primitives"]  # cached


def test_unsupported_inputs_take_the_xla_convolution():
    """float16 (no handler for it) gives XLA's result, with or without the extension."""
    x, k, _ = _inputs((1, 3, 4, 5), 2, 3, dtype=jnp.float16)
    assert not onednn.supports(x, k)
    np.testing.assert_array_equal(onednn.conv3d_onednn(x, k), conv3d_xla(x, k))


def test_fallback_when_the_extension_is_missing(monkeypatch):
    """auto takes stack2d with one warning; conv_impl=onednn still runs (the XLA conv)."""
    monkeypatch.setattr(onednn, "EXTENSION", "lumbar_jax.model._no_such_extension")
    monkeypatch.setattr(onednn, "_state", {"lib": None, "error": None, "loaded": False})
    monkeypatch.setattr(onednn, "_supported_platform", lambda: True)
    monkeypatch.delenv("LUMBAR_JAX_ONEDNN", raising=False)
    onednn.warn_unavailable.cache_clear()
    assert not onednn.available()
    assert "not built" in onednn.unavailable_reason()
    expected = "stack2d" if jax.default_backend() == "cpu" else "xla"
    with pytest.warns(RuntimeWarning, match="oneDNN convolutions unavailable"):
        assert resolve_conv_impl("auto") == expected
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # once per process
        assert resolve_conv_impl("onednn") == expected
    x = _inputs((1, 3, 4, 5), 2, 3)[0]
    conv = Conv3D(3, impl="onednn")
    params = conv.init(jax.random.key(0), x)
    np.testing.assert_allclose(
        conv.apply(params, x), conv3d_stack2d(x, params["params"]["kernel"]), rtol=1e-5, atol=1e-5
    )
    onednn.warn_unavailable.cache_clear()


def test_disabled_by_environment_is_quiet(monkeypatch):
    monkeypatch.setenv("LUMBAR_JAX_ONEDNN", "0")
    monkeypatch.setattr(onednn, "_state", {"lib": None, "error": None, "loaded": False})
    onednn.warn_unavailable.cache_clear()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert not onednn.available()
        assert resolve_conv_impl("auto") in ("stack2d", "xla")
    assert "LUMBAR_JAX_ONEDNN=0" in onednn.unavailable_reason()
    onednn.warn_unavailable.cache_clear()


def test_conv_general_dilated_reference_is_same_padding():
    """The reference's SAME for even kernels pads (k - 1) // 2 before, as the handlers do."""
    x, k, _ = _inputs((1, 5, 6, 7), 2, 3, kernel=(2, 2, 4))
    explicit = lax.conv_general_dilated(
        x, k, (1, 1, 1), [(0, 1), (0, 1), (1, 2)], dimension_numbers=("NDHWC", "DHWIO", "NDHWC")
    )
    np.testing.assert_array_equal(conv3d_xla(x, k), explicit)


def test_onnx_export_of_an_onednn_model(tiny_runs, tmp_path):
    """Export traces stack2d and Flax layers whatever conv_impl a run was trained with."""
    pytest.importorskip("jax2onnx")
    from lumbar_jax.export import onnx as export
    from lumbar_jax.inference import jax_stage

    fine = jax_stage.load_stages(tiny_runs["coarse"], tiny_runs["fine"])[1]
    config = config_lib.to_dict(fine.config)
    config["model"]["conv_impl"] = "onednn"
    stage = dataclasses.replace(fine, config=config_lib.from_dict(config))
    checks = export.export_stage(stage, tmp_path / "fine.onnx")
    assert all(c.max_abs_diff < 1e-4 * max(1.0, c.logit_scale) for c in checks)
    assert (tmp_path / "fine.onnx").stat().st_size > 0
