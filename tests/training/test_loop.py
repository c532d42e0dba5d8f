import functools
import json

import jax
import numpy as np
import pytest

from lumbar_jax.checkpoint import Checkpoints
from lumbar_jax.data import datasets, pipeline
from lumbar_jax.training import loop
from lumbar_jax.training import state as state_lib
from lumbar_jax.training import step as step_lib
from tests.conftest import tiny_config


def _steps_on_one_batch(config, phantom_root, steps=12):
    """(final state, losses) of ``steps`` train steps on one real phantom batch."""
    ds = datasets.load_nnunet_raw(phantom_root)
    batch = next(iter(pipeline.train_iter_dataset(config, ds)))
    state = state_lib.create_train_state(config, jax.random.key(0))
    step = jax.jit(functools.partial(step_lib.train_step, config=config), donate_argnums=0)
    losses = []
    for _ in range(steps):
        state, m = step(state, batch, jax.random.key(1))
        losses.append(float(m["loss"]))
    return state, losses


def test_steps_lower_the_loss(phantom_root):
    state, losses = _steps_on_one_batch(tiny_config(phantom_root), phantom_root)
    assert int(state.step) == 12
    assert np.isfinite(losses).all()
    assert np.mean(losses[-3:]) < 0.9 * np.mean(losses[:3]), losses


def _leaves(tree):
    return [np.asarray(x) for x in jax.tree.leaves(tree)]


def test_interrupted_and_resumed_equals_uninterrupted(phantom_root, tmp_path):
    config = tiny_config(phantom_root)
    straight = loop.train_and_evaluate(config, tmp_path / "straight")
    assert straight["step"] == 6  # 2 epochs of 6 cases in batches of 2
    assert straight["test"] is not None

    first = loop.train_and_evaluate(config, tmp_path / "resumed", max_steps=4)
    assert first["step"] == 4 and first["test"] is None
    second = loop.train_and_evaluate(config, tmp_path / "resumed")
    assert second["step"] == 6

    def final_params(run):
        ckpt = Checkpoints(tmp_path / run)
        state = state_lib.create_train_state(config, jax.random.key(0))
        data_iter = iter(
            pipeline.train_iter_dataset(config, datasets.load_nnunet_raw(phantom_root))
        )
        restored = ckpt.restore_latest(state, data_iter)
        ckpt.close()
        return restored

    a, b = final_params("straight"), final_params("resumed")
    assert int(a.step) == int(b.step) == 6
    for x, y in zip(_leaves(a.params), _leaves(b.params), strict=True):
        np.testing.assert_array_equal(x, y)

    rows = [json.loads(line) for line in (tmp_path / "resumed" / "metrics.jsonl").open()]
    train_steps = [r["step"] for r in rows if "train_loss" in r]
    assert train_steps == sorted(set(train_steps))  # resumed steps are not logged twice
    for name in ("config.json", "training_curves.png", "test_dice.json", "test_dice.md"):
        assert (tmp_path / "resumed" / name).is_file()
    summary = json.loads((tmp_path / "resumed" / "test_dice.json").read_text())
    assert set(summary["mean"]) == {
        "vertebral_body",
        "intervertebral_disc",
        "intervertebral_foramen",
        "spinal_canal",
        "cord_cauda_equina",
    }
    assert (tmp_path / "resumed" / "checkpoints" / "best").is_dir()


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(phantom_root, tmp_path):
    good = tiny_config(phantom_root)
    loop.train_and_evaluate(good, tmp_path / "run", max_steps=3)  # one epoch, checkpointed
    # Adam's steps are ~lr in size whatever the gradient: lr 1e30 overflows within two steps.
    bad = tiny_config(phantom_root, **{"optim.learning_rate": "1e30"})
    with pytest.raises(
        FloatingPointError, match=r"Loss is (nan|inf) at step [45]; training stopped"
    ):
        loop.train_and_evaluate(bad, tmp_path / "run")
    ckpt = Checkpoints(tmp_path / "run")
    assert ckpt.latest_step() == 3
    state = state_lib.create_train_state(good, jax.random.key(0))
    data_iter = iter(pipeline.train_iter_dataset(good, datasets.load_nnunet_raw(phantom_root)))
    restored = ckpt.restore_latest(state, data_iter)
    ckpt.close()
    assert int(restored.step) == 3
    assert all(np.isfinite(x).all() for x in _leaves(restored.params))


def test_resume_with_another_model_is_refused(phantom_root, tmp_path):
    config = tiny_config(phantom_root, **{"optim.num_epochs": "1"})
    loop.train_and_evaluate(config, tmp_path / "run", max_steps=1)
    other = tiny_config(phantom_root, **{"model.base_filters": "8"})
    with pytest.raises(
        ValueError,
        match=r"config.json: this workdir was trained with config.model.base_filters = 4, not 8",
    ):
        loop.train_and_evaluate(other, tmp_path / "run")


def test_bfloat16_training_lowers_the_loss(phantom_root):
    config = tiny_config(phantom_root, **{"model.dtype": "bfloat16"})
    state, losses = _steps_on_one_batch(config, phantom_root)
    # Parameters and optimizer state stay float32; only the compute is bfloat16.
    dtypes = {x.dtype for x in jax.tree.leaves((state.params, state.opt_state))}
    assert dtypes <= {np.dtype("float32"), np.dtype("int32")}
    assert np.isfinite(losses).all()
    assert np.mean(losses[-3:]) < 0.9 * np.mean(losses[:3]), losses


def test_partially_labelled_data_trains(phantom_root):
    # As if the dataset labelled only bodies and discs (like ../shared/data/real).
    config = tiny_config(phantom_root, **{"data.label_map": "1:1,2:2,3-5:0"})
    ds = datasets.from_config(config.data)
    batch = next(iter(pipeline.train_iter_dataset(config, ds)))
    assert batch["labeled_c"].tolist() == [[True, True, True, False, False, False]] * 2
    assert set(np.unique(batch["label_dhw"])) <= {0, 1, 2}
    state = state_lib.create_train_state(config, jax.random.key(0))
    step = jax.jit(functools.partial(step_lib.train_step, config=config), donate_argnums=0)
    losses = []
    for _ in range(12):
        state, m = step(state, batch, jax.random.key(1))
        losses.append(float(m["loss"]))
    assert np.isfinite(losses).all()
    assert losses[-1] < 0.95 * losses[0] and np.all(np.diff(losses) < 0), losses


def test_init_from_starts_with_another_runs_parameters(tiny_runs, phantom_root, tmp_path):
    from lumbar_jax.inference import jax_stage

    source = jax_stage.load_stage(tiny_runs["fine"])
    config = tiny_config(phantom_root, **{"init_from": str(tiny_runs["fine"])})
    result = loop.train_and_evaluate(config, tmp_path / "tuned", max_steps=0)
    assert result["step"] == 0
    for got, want in zip(
        jax.tree.leaves(result["params"]), jax.tree.leaves(source.params), strict=True
    ):
        np.testing.assert_array_equal(np.asarray(got), np.asarray(want))


def test_init_from_a_run_of_another_model_names_the_field(tiny_runs, phantom_root, tmp_path):
    config = tiny_config(
        phantom_root, **{"init_from": str(tiny_runs["fine"]), "model.base_filters": "8"}
    )
    with pytest.raises(ValueError, match=r"config\.model\.base_filters = 4, not 8"):
        loop.train_and_evaluate(config, tmp_path / "tuned", max_steps=0)
