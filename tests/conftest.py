"""Shared fixtures: tiny configs and a tiny phantom dataset, generated once per session."""

from __future__ import annotations

from pathlib import Path

import jax
import pytest

from lumbar_jax import config as config_lib
from lumbar_jax.data.phantom import dataset as phantom_dataset


@pytest.fixture(scope="session", autouse=True)
def _compilation_cache(tmp_path_factory):
    # Several tests compile the same tiny train step; a persistent cache compiles it once.
    jax.config.update("jax_compilation_cache_dir", str(tmp_path_factory.mktemp("jax_cache")))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)


@pytest.fixture(scope="session")
def phantom_root(tmp_path_factory) -> Path:
    """Eight tiny phantom cases in nnU-Net raw layout (split 6/1/1)."""
    return phantom_dataset.write_dataset(
        tmp_path_factory.mktemp("data") / "phantom", 8, seed=0, matrix=64
    )


def tiny_config(phantom_root: Path, stage: str = "fine", **overrides: str):
    """The ``:tiny`` config of a stage, reading ``phantom_root``."""
    return config_lib.load_config(f"{stage}:tiny", {"data.root": str(phantom_root), **overrides})


@pytest.fixture(scope="session")
def tiny_runs(phantom_root, tmp_path_factory) -> dict[str, Path]:
    """A coarse and a fine run of one epoch each on the tiny phantom: {"coarse", "fine"}."""
    from lumbar_jax.training import loop

    runs = {}
    for stage in ("coarse", "fine"):
        workdir = tmp_path_factory.mktemp(f"{stage}_run")
        config = tiny_config(phantom_root, stage, **{"optim.num_epochs": "1"})
        loop.train_and_evaluate(config, workdir)
        runs[stage] = workdir
    return runs
