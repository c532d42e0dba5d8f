"""The U-Net's 3D convolution on oneDNN, called from XLA:CPU through the XLA FFI.

XLA:CPU runs the weight gradient of a convolution as a forward convolution whose "kernel" is
the whole output gradient, far below the CPU's peak; oneDNN (what PyTorch uses on CPU) has
primitives for the forward pass, the data gradient and the weight gradient. The C++ handlers
(``csrc/onednn_conv.cc``) take JAX's arrays as they are (activations NDHWC, kernel DHWIO,
float32 or bfloat16, SAME padding, stride 1) and ``conv3d_onednn`` wires them into
``jax.custom_vjp``. Parameters are those of every other ``conv_impl``.

The extension is built by the project's install (``pip install -e .``; ``setup.py`` compiles
``csrc/onednn_conv.cc`` against the ``onednn-devel-cpu-gomp`` wheel, oneDNN 3.2 with GNU
OpenMP) into ``lumbar_jax/model/_onednn_conv*.so``. Without it (the build failed, another
platform, or ``LUMBAR_JAX_ONEDNN=0``) ``available()`` is False and ``conv_impl="auto"`` takes
``stack2d``; ``conv3d_onednn`` itself then runs the plain XLA convolution.

Threads: oneDNN runs on its own OpenMP threads (all cores, ``OMP_NUM_THREADS`` to change),
next to XLA's thread pool; the handlers serialize their calls. OpenMP's threads spin after a
call by default and then take the cores from XLA's threads that run the next operations (the
convolutions alone took 2-3x longer here), so loading the library sets ``OMP_WAIT_POLICY``
to ``PASSIVE`` unless the environment sets it or ``GOMP_SPINCOUNT`` (read once, when libgomp
loads).
"""

from __future__ import annotations

import ctypes
import functools
import importlib.metadata
import importlib.util
import os
import platform
import sys
import warnings

import jax
import jax.numpy as jnp
from jax import lax

TARGETS = {
    "fwd": "lumbar_onednn_conv_fwd",
    "bwd_data": "lumbar_onednn_conv_bwd_data",
    "bwd_weights": "lumbar_onednn_conv_bwd_weights",
}
DTYPES = (jnp.dtype(jnp.float32), jnp.dtype(jnp.bfloat16))
EXTENSION = "lumbar_jax.model._onednn_conv"
DISABLE_ENV = "LUMBAR_JAX_ONEDNN"  # "0": never load the extension

_state: dict[str, object] = {"lib": None, "error": None, "loaded": False}


def _supported_platform() -> bool:
    return sys.platform == "linux" and platform.machine() in ("x86_64", "AMD64")


def _libdnnl_path() -> str | None:
    """libdnnl.so.3 of the onednn-cpu-gomp wheel (installed under the environment's lib/)."""
    try:
        files = importlib.metadata.distribution("onednn-cpu-gomp").files or []
    except importlib.metadata.PackageNotFoundError:
        return None
    for file in files:
        if file.name == "libdnnl.so.3":
            return str(file.locate())
    return None


def extension_path() -> str | None:
    """The built extension's file, or None when it was not built."""
    spec = importlib.util.find_spec(EXTENSION)
    return spec.origin if spec is not None and spec.origin else None


def _load() -> ctypes.CDLL:
    if os.environ.get(DISABLE_ENV, "1") == "0":
        raise RuntimeError(f"disabled by {DISABLE_ENV}=0")
    if not _supported_platform():
        raise RuntimeError(f"built only for Linux x86_64, not {sys.platform} {platform.machine()}")
    path = extension_path()
    if path is None:
        raise RuntimeError(
            f"the extension {EXTENSION} was not built (reinstall with `pip install -e .`, "
            "which compiles lumbar_jax/model/csrc/onednn_conv.cc; needs g++)"
        )
    dnnl = _libdnnl_path() or "libdnnl.so.3"
    # OpenMP reads its wait policy once, when libgomp loads with libdnnl (see the module doc).
    set_policy = "OMP_WAIT_POLICY" not in os.environ and "GOMP_SPINCOUNT" not in os.environ
    if set_policy:
        os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
    try:
        ctypes.CDLL(dnnl, mode=ctypes.RTLD_GLOBAL)  # the extension's libdnnl.so.3
        lib = ctypes.CDLL(path)
    finally:
        if set_policy:
            del os.environ["OMP_WAIT_POLICY"]
    lib.lumbar_onednn_version.restype = ctypes.c_char_p
    for name in TARGETS.values():
        jax.ffi.register_ffi_target(name, jax.ffi.pycapsule(getattr(lib, name)), platform="cpu")
    return lib


def _lib() -> ctypes.CDLL | None:
    if not _state["loaded"]:
        _state["loaded"] = True
        try:
            _state["lib"] = _load()
        except (OSError, RuntimeError, AttributeError) as error:
            _state["error"] = str(error)
    return _state["lib"]  # type: ignore[return-value]


def available() -> bool:
    """Whether the extension is built and loads (Linux x86_64); loads it on the first call."""
    return _lib() is not None


def unavailable_reason() -> str | None:
    """Why ``available()`` is False; None when it is True."""
    return None if available() else str(_state["error"])


def version() -> str | None:
    """oneDNN's version ("3.2.0") when available."""
    lib = _lib()
    return lib.lumbar_onednn_version().decode() if lib is not None else None


def stats() -> dict[str, int]:
    """Handler calls, cached primitives and the most calls in flight at once, since loading."""
    lib = _lib()
    out = (ctypes.c_int64 * 3)()
    if lib is not None:
        lib.lumbar_onednn_stats(out)
    return {"calls": out[0], "primitives": out[1], "max_in_flight": out[2]}


def supports(x_bdhwc: jax.Array, kernel_dhwio: jax.Array) -> bool:
    """Whether the handlers take these arrays (5D, one dtype, float32 or bfloat16)."""
    return (
        x_bdhwc.ndim == 5
        and kernel_dhwio.ndim == 5
        and x_bdhwc.dtype == kernel_dhwio.dtype
        and x_bdhwc.dtype in DTYPES
        and x_bdhwc.shape[-1] == kernel_dhwio.shape[-2]
        and available()
    )


def _call(target: str, shape: tuple[int, ...], dtype: jnp.dtype, *args: jax.Array) -> jax.Array:
    out = jax.ShapeDtypeStruct(shape, dtype)
    return jax.ffi.ffi_call(TARGETS[target], out, vmap_method="sequential")(*args)


def _forward(x_bdhwc: jax.Array, kernel_dhwio: jax.Array) -> jax.Array:
    shape = (*x_bdhwc.shape[:-1], kernel_dhwio.shape[-1])
    return _call("fwd", shape, x_bdhwc.dtype, x_bdhwc, kernel_dhwio)


@jax.custom_vjp
def _conv(x_bdhwc: jax.Array, kernel_dhwio: jax.Array) -> jax.Array:
    return _forward(x_bdhwc, kernel_dhwio)


def _conv_fwd(x_bdhwc, kernel_dhwio):
    return _forward(x_bdhwc, kernel_dhwio), (x_bdhwc, kernel_dhwio)


def _conv_bwd(residuals, dy_bdhwc):
    x_bdhwc, kernel_dhwio = residuals
    dy_bdhwc = dy_bdhwc.astype(x_bdhwc.dtype)
    dx = _call("bwd_data", x_bdhwc.shape, x_bdhwc.dtype, dy_bdhwc, kernel_dhwio)
    dk = _call("bwd_weights", kernel_dhwio.shape, kernel_dhwio.dtype, x_bdhwc, dy_bdhwc)
    return dx, dk


_conv.defvjp(_conv_fwd, _conv_bwd)


def conv3d_onednn(x_bdhwc: jax.Array, kernel_dhwio: jax.Array) -> jax.Array:
    """``lax.conv_general_dilated(x, kernel, (1, 1, 1), "SAME")`` (NDHWC, DHWIO) on oneDNN.

    Forward pass, data gradient and weight gradient are oneDNN primitives. Where the handlers
    do not apply (extension missing, other dtypes or ranks) it is the plain XLA convolution,
    with the same result.
    """
    if supports(x_bdhwc, kernel_dhwio):
        return _conv(x_bdhwc, kernel_dhwio)
    return lax.conv_general_dilated(
        x_bdhwc, kernel_dhwio, (1, 1, 1), "SAME", dimension_numbers=("NDHWC", "DHWIO", "NDHWC")
    )


@functools.cache
def warn_unavailable() -> None:
    """Warns once per process that oneDNN is missing (quiet with LUMBAR_JAX_ONEDNN=0)."""
    if os.environ.get(DISABLE_ENV, "1") != "0" and _supported_platform():
        warnings.warn(
            f"oneDNN convolutions unavailable ({unavailable_reason()}); using conv_impl=stack2d.",
            RuntimeWarning,
            stacklevel=3,
        )


@functools.cache
def warn_bfloat16() -> None:
    """Warns once per process that an explicit ``conv_impl=onednn`` in bfloat16 is not used."""
    warnings.warn(
        "conv_impl=onednn in bfloat16 gave non-finite gradients now and then; "
        "using conv_impl=stack2d for bfloat16.",
        RuntimeWarning,
        stacklevel=3,
    )
