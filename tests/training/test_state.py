"""The optimizer and its learning-rate schedules."""

import jax
import numpy as np
import pytest

from lumbar_jax.training import state as state_lib
from tests.conftest import tiny_config


def _rates(phantom_root, steps_per_epoch=10, **optim):
    config = tiny_config(
        phantom_root, **{"optim.num_epochs": "5", **{f"optim.{k}": v for k, v in optim.items()}}
    )
    schedule = state_lib.learning_rate_schedule(config, steps_per_epoch)
    return np.array([float(schedule(s)) for s in range(50)]), config.optim.learning_rate


def test_constant_is_the_papers(phantom_root):
    rates, peak = _rates(phantom_root)
    assert np.all(rates == pytest.approx(peak))


def test_cosine_warms_up_then_decays_to_its_floor(phantom_root):
    rates, peak = _rates(
        phantom_root, schedule="cosine", warmup_epochs="1", final_lr_fraction="0.1"
    )
    assert rates[0] == pytest.approx(peak / 10)  # warm-up: 10 steps, linear
    assert np.all(np.diff(rates[:10]) > 0) and rates[10] == pytest.approx(peak)
    assert np.all(np.diff(rates[10:]) < 0)  # then only down
    assert rates[-1] == pytest.approx(0.1 * peak, rel=0.02)  # near the floor at the end


def test_poly_reaches_zero(phantom_root):
    rates, peak = _rates(phantom_root, schedule="poly")
    assert rates[0] == pytest.approx(peak)
    assert rates[25] == pytest.approx(peak * (1 - 25 / 50) ** 0.9, rel=1e-5)


def test_unknown_schedule_is_refused(phantom_root):
    with pytest.raises(ValueError, match=r"config\.optim\.schedule is 'step'"):
        _rates(phantom_root, schedule="step")


def test_the_state_carries_the_rate(phantom_root):
    config = tiny_config(phantom_root, **{"optim.schedule": "poly"})
    state = state_lib.create_train_state(config, jax.random.key(0), steps_per_epoch=3)
    assert float(state.opt_state.hyperparams["learning_rate"]) == pytest.approx(
        config.optim.learning_rate
    )
    # tx is static: not a leaf to save, nor anything under it.
    paths = [jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_leaves_with_path(state)]
    assert paths and not any(".tx" in p for p in paths)
    assert all(not callable(leaf) for leaf in jax.tree.leaves(state))
