"""Fixtures of the training tests."""

import pytest

from lumbar_jax.training import loop
from tests.helpers.runs import TOTAL_STEPS, run_config


@pytest.fixture(scope="session")
def reference(phantom_root, tmp_path_factory):
    """The final parameters of an uninterrupted run of ``run_config``."""
    result = loop.train_and_evaluate(run_config(phantom_root), tmp_path_factory.mktemp("reference"))
    assert result["step"] == TOTAL_STEPS and result["preempted"] is None
    return result["params"]
