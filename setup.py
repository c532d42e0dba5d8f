"""Builds the optional oneDNN convolution extension; everything else is in pyproject.toml.

``lumbar_jax/model/csrc/onednn_conv.cc`` (XLA FFI handlers, see ``lumbar_jax/model/onednn.py``)
is compiled against the headers of the ``onednn-devel-cpu-gomp`` wheel, which the build
requirements install into pip's build environment, and linked to that wheel's ``libdnnl.so.3``;
at run time the same library comes from the ``onednn-cpu-gomp`` dependency. The XLA FFI
headers are vendored (``csrc/third_party``), so the build does not need jaxlib.

The extension is optional: on another platform, without the oneDNN wheel or without a C++
compiler the install goes on without it (a message says why) and ``conv_impl=auto`` uses
``stack2d``. ``LUMBAR_JAX_BUILD_ONEDNN=0`` skips it.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import sys
from pathlib import Path

from setuptools import Extension, setup

CSRC = Path("lumbar_jax") / "model" / "csrc"


def _wheel_dir(dist_name: str, suffix: str) -> str | None:
    """The folder holding ``suffix`` (a relative path) in an installed wheel's files."""
    try:
        files = importlib.metadata.distribution(dist_name).files or []
    except importlib.metadata.PackageNotFoundError:
        return None
    for file in files:
        path = Path(file.locate()).resolve()
        if path.as_posix().endswith("/" + suffix):
            return path.as_posix()[: -len(suffix) - 1]
    return None


def _extensions() -> list[Extension]:
    if os.environ.get("LUMBAR_JAX_BUILD_ONEDNN", "1") == "0":
        print("lumbar_jax: LUMBAR_JAX_BUILD_ONEDNN=0, oneDNN extension not built", file=sys.stderr)
        return []
    if sys.platform != "linux" or platform.machine() != "x86_64":
        return []
    include = _wheel_dir("onednn-devel-cpu-gomp", "oneapi/dnnl/dnnl.hpp")
    lib = _wheel_dir("onednn-cpu-gomp", "libdnnl.so")
    if include is None or lib is None:
        print(
            "lumbar_jax: oneDNN wheel (onednn-devel-cpu-gomp) not found, oneDNN extension "
            "not built; conv_impl=auto will use stack2d",
            file=sys.stderr,
        )
        return []
    return [
        Extension(
            "lumbar_jax.model._onednn_conv",
            sources=[str(CSRC / "onednn_conv.cc")],
            library_dirs=[lib],
            libraries=["dnnl", "gomp"],  # gomp: the OpenMP of libdnnl.so.3
            # -isystem: no warnings from the vendored XLA and oneDNN headers.
            extra_compile_args=[
                *("-isystem", str(CSRC / "third_party"), "-isystem", include),
                *("-std=c++17", "-O2", "-g0"),
            ],
            language="c++",
            optional=True,  # a failed compile leaves the package without it, not uninstallable
        )
    ]


setup(ext_modules=_extensions())
