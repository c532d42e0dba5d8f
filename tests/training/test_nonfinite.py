"""NaN/Inf losses, gradients or parameters: the "stop" and "skip" policies."""

from __future__ import annotations

import json

import jax
import numpy as np
import pytest

from lumbar_jax.checkpoint import Checkpoints
from lumbar_jax.training import loop, parallel
from lumbar_jax.training import state as state_lib
from lumbar_jax.training import step as step_lib
from tests.conftest import tiny_config
from tests.helpers.runs import (
    assert_same_params,
    leaves,
    on_batch,
    run_config,
)


def _nan_image(batch):
    return {**batch, "image_dhwc": np.full_like(batch["image_dhwc"], np.nan)}


def test_stop_policy_names_the_step_and_saves_nothing(phantom_root, tmp_path, monkeypatch):
    on_batch(monkeypatch, {2: _nan_image})
    with pytest.raises(FloatingPointError, match=r"Loss is nan at step 2; training stopped"):
        loop.train_and_evaluate(run_config(phantom_root), tmp_path)
    ckpt = Checkpoints(tmp_path)
    assert ckpt.latest_step() is None
    ckpt.close()


def test_skip_policy_skips_a_nan_batch_and_keeps_the_state(phantom_root, tmp_path, monkeypatch):
    config = run_config(phantom_root, **{"train.nonfinite": "skip"})
    before = loop.train_and_evaluate(config, tmp_path, max_steps=4)["params"]
    on_batch(monkeypatch, {1: _nan_image})  # step 5
    result = loop.train_and_evaluate(config, tmp_path, max_steps=5)
    assert result["skipped_steps"] == 1 and result["step"] == 5
    assert_same_params(result["params"], before)
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").open()]
    assert {"step": 5, "skipped_steps": 1}.items() <= rows[-1].items()
    assert "Loss is nan" in rows[-1]["skipped_update"]
    monkeypatch.undo()
    after = loop.train_and_evaluate(config, tmp_path, max_steps=6)["params"]
    assert all(np.isfinite(x).all() for x in leaves(after))
    assert any((x != y).any() for x, y in zip(leaves(after), leaves(before), strict=True))


def test_skip_policy_stops_after_too_many_in_a_row(phantom_root, tmp_path):
    good = run_config(phantom_root)
    loop.train_and_evaluate(good, tmp_path, max_steps=3)
    # Adam's steps are ~lr in size whatever the gradient: lr 1e30 overflows within two steps.
    bad = run_config(
        phantom_root,
        **{
            "optim.learning_rate": "1e30",
            "train.nonfinite": "skip",
            "train.max_skipped_steps": "3",
        },
    )
    with pytest.raises(FloatingPointError, match=r"3 non-finite steps in a row") as err:
        loop.train_and_evaluate(bad, tmp_path)
    assert "max_skipped_steps = 3" in str(err.value)
    ckpt = Checkpoints(tmp_path)
    state = jax.device_get(state_lib.create_train_state(good, jax.random.key(0)))
    restored = ckpt.restore_latest(state)
    ckpt.close()
    assert all(np.isfinite(x).all() for x in leaves(restored.params))


@pytest.mark.parametrize("mode", ["mesh", "pmap"])
def test_skip_is_decided_on_the_device_in_both_parallel_modes(phantom_root, mode):
    import functools

    config = tiny_config(phantom_root)
    dp = parallel.DataParallel(mode, 2)
    initial = jax.device_get(state_lib.create_train_state(config, jax.random.key(0)))
    step = dp.wrap_step(functools.partial(step_lib.train_step, config=config))
    rng = np.random.default_rng(0)
    batch = {
        "image_dhwc": rng.random((2, *config.data.input_shape, 1), np.float32),
        "label_dhw": rng.integers(0, 6, (2, *config.data.input_shape)).astype(np.uint8),
        "labeled_c": np.ones((2, 6), bool),
    }
    state, m = step(dp.place_state(initial), dp.place_batch(_nan_image(batch)), jax.random.key(1))
    assert not dp.host_metrics(m)["finite"]
    kept = dp.host_state(state)
    assert int(kept.step) == 1
    assert_same_params((kept.params, kept.opt_state), (initial.params, initial.opt_state))
    state, m = step(state, dp.place_batch(batch), jax.random.key(1))
    assert dp.host_metrics(m)["finite"]
    assert any(
        (x != y).any()
        for x, y in zip(leaves(dp.host_state(state).params), leaves(initial.params), strict=True)
    )


def test_unknown_nonfinite_policy_is_refused(phantom_root, tmp_path):
    with pytest.raises(ValueError, match=r"config.train.nonfinite is 'ignore'"):
        loop.train_and_evaluate(run_config(phantom_root, **{"train.nonfinite": "ignore"}), tmp_path)
    assert not tmp_path.joinpath("config.json").exists()
