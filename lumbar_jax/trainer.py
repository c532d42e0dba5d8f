"""Training: the train state, one pure train step, evaluation and the loop with checkpoints."""

from __future__ import annotations

import functools
import json
import time
from pathlib import Path
from typing import Any

import flax
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from tqdm import tqdm

from lumbar_jax import STRUCTURES, losses, metrics
from lumbar_jax import config as config_lib
from lumbar_jax.checkpoint import Checkpoints
from lumbar_jax.data import datasets, pipeline
from lumbar_jax.logbook import Logbook
from lumbar_jax.model import UNet3D


@flax.struct.dataclass
class TrainState:
    step: jnp.ndarray
    params: Any
    opt_state: Any


def make_model(config: ml_collections.ConfigDict) -> UNet3D:
    m = config.model
    return UNet3D(
        num_classes=config.data.num_classes,
        base_filters=m.base_filters,
        pool_factors=tuple(tuple(p) for p in m.pool_factors),
        norm=m.norm,
        num_groups=m.num_groups,
        conv_impl=m.conv_impl,
        dtype=jnp.dtype(m.dtype),
        remat=m.remat,
    )


def make_optimizer(config: ml_collections.ConfigDict) -> optax.GradientTransformation:
    return optax.adam(config.optim.learning_rate)


def create_train_state(config: ml_collections.ConfigDict, rng: jax.Array) -> TrainState:
    """Initial parameters (float32) and Adam state for the config's input shape."""
    model, tx = make_model(config), make_optimizer(config)
    image = jnp.zeros((1, *config.data.input_shape, 1), jnp.float32)
    params = model.init(rng, image)["params"]
    return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params))


def add_noise(image_bdhwc: jnp.ndarray, rng: jax.Array, prob: float, max_std: float) -> jnp.ndarray:
    """Gaussian noise augmentation (paper), drawn per sample on the device."""
    b = image_bdhwc.shape[0]
    k_apply, k_std, k_noise = jax.random.split(rng, 3)
    apply = jax.random.uniform(k_apply, (b,)) < prob
    std = jnp.where(apply, jax.random.uniform(k_std, (b,), maxval=max_std), 0.0)
    noise = jax.random.normal(k_noise, image_bdhwc.shape, image_bdhwc.dtype)
    return image_bdhwc + std[:, None, None, None, None] * noise


def train_step(
    state: TrainState,
    batch: dict[str, jnp.ndarray],
    rng: jax.Array,
    *,
    config: ml_collections.ConfigDict,
) -> tuple[TrainState, dict[str, jnp.ndarray]]:
    """One Adam step on a batch; pure, so it can be jitted, pmapped or sharded as is."""
    model, tx = make_model(config), make_optimizer(config)
    rng = jax.random.fold_in(rng, state.step)
    image = add_noise(batch["image_dhwc"], rng, config.aug.noise_prob, config.aug.noise_max_std)
    label = batch["label_dhw"].astype(jnp.int32)

    def loss_fn(params):
        logits = model.apply({"params": params}, image)
        return losses.segmentation_loss(
            logits, label, batch["labeled_c"], config.loss.ce_weight, config.loss.dice_weight
        )

    (loss, parts), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    new_state = state.replace(step=state.step + 1, params=params, opt_state=opt_state)
    return new_state, {"loss": loss, **parts, "grad_norm": optax.global_norm(grads)}


def predict_labels(params: Any, image_bdhwc: jnp.ndarray, *, config) -> jnp.ndarray:
    """Argmax label map (b, d, h, w) uint8."""
    logits = make_model(config).apply({"params": params}, image_bdhwc)
    return jnp.argmax(logits, axis=-1).astype(jnp.uint8)


def evaluate_split(
    predict_fn, params: Any, config: ml_collections.ConfigDict, dataset, split: str
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Dice per structure per case of a split, in the network's input space.

    Returns:
      (summary from ``metrics.summarize``, per-case Dice (cases, structures)).
    """
    rows = []
    for _, sample in pipeline.eval_samples(config, dataset, split):
        pred = np.asarray(predict_fn(params, sample["image_dhwc"][None]))[0]
        rows.append(
            metrics.dice_per_class(
                pred, sample["label_dhw"], config.data.num_classes, sample["labeled_c"]
            )
        )
    dice_nc = np.stack(rows) if rows else np.full((0, len(STRUCTURES)), np.nan)
    return metrics.summarize(dice_nc), dice_nc


def _named(values: np.ndarray) -> dict[str, float | None]:
    return {
        n: (None if np.isnan(v) else round(float(v), 4))
        for n, v in zip(STRUCTURES, values, strict=True)
    }


def _check_resume_config(config: ml_collections.ConfigDict, workdir: Path) -> None:
    """A workdir's checkpoints only fit the model and input shape they were trained with."""
    path = workdir / "config.json"
    if not path.is_file():
        return
    saved = config_lib.read_config(path)
    for field in ("model", "data.input_shape", "data.num_classes"):
        old, new = saved, config
        for key in field.split("."):
            old, new = old[key], new[key]
        old_json = json.dumps(config_lib.to_dict(old) if hasattr(old, "to_dict") else old)
        new_json = json.dumps(config_lib.to_dict(new) if hasattr(new, "to_dict") else new)
        if old_json != new_json:
            raise ValueError(
                f"{path}: this workdir was trained with config.{field} = {old_json}, "
                f"not {new_json}; use a new --workdir or the same config."
            )


def train_and_evaluate(
    config: ml_collections.ConfigDict, workdir: str | Path, *, max_steps: int | None = None
) -> dict[str, Any]:
    """Trains (resuming from the workdir's latest checkpoint), validates and tests.

    Args:
      config: a config from ``configs/``.
      workdir: where checkpoints, metrics.jsonl, training_curves.png and results go.
      max_steps: stop after this global step with a latest checkpoint, as a preempted job
        would (the same call resumes).

    Returns:
      {"step": final step, "test": per-structure test Dice summary or None}.

    Raises:
      FloatingPointError: when the loss becomes NaN or Inf (the last good checkpoint stays).
    """
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    _check_resume_config(config, workdir)
    config_lib.save_config(config, workdir)

    dataset = datasets.from_config(config.data)
    steps_per_epoch = pipeline.steps_per_epoch(config, dataset)
    total_steps = config.optim.num_epochs * steps_per_epoch
    stop_step = total_steps if max_steps is None else min(max_steps, total_steps)

    rng = jax.random.key(config.seed)
    init_rng, step_rng = jax.random.split(rng)
    state = create_train_state(config, init_rng)
    data_iter = iter(pipeline.train_iter_dataset(config, dataset))
    ckpt = Checkpoints(workdir)
    logbook = Logbook(workdir)
    if ckpt.latest_step() is not None:
        state = ckpt.restore_latest(state, data_iter)
        print(f"Resumed from {ckpt.latest.directory} at step {int(state.step)}.", flush=True)
    start_step = int(state.step)
    logbook.truncate_after(start_step)
    best = ckpt.best_record()

    step_fn = jax.jit(functools.partial(train_step, config=config), donate_argnums=0)
    predict_fn = jax.jit(functools.partial(predict_labels, config=config))

    def check_finite(step: int, m: dict) -> dict:
        m = jax.device_get(m)
        if not np.isfinite(m["loss"]):
            last = ckpt.latest_step()
            raise FloatingPointError(
                f"Loss is {m['loss']} at step {step}; training stopped. The last good "
                f"checkpoint (step {last}) is kept in {ckpt.latest.directory}."
            )
        return m

    batch_size = config.optim.batch_size
    progress = tqdm(total=stop_step, initial=start_step, desc="train", unit="step", mininterval=2)
    pending = None  # (step, device metrics): read one step late so the host never stalls
    window_start, window_steps = time.perf_counter(), 0
    try:
        for step in range(start_step + 1, stop_step + 1):
            batch = next(data_iter)
            state, step_metrics = step_fn(state, batch, step_rng)
            if pending is not None:
                m = check_finite(*pending)
                if pending[0] % config.train.log_every_steps == 0:
                    elapsed = time.perf_counter() - window_start
                    rate = window_steps * batch_size / max(elapsed, 1e-9)
                    logbook.write(
                        {
                            "step": pending[0],
                            "epoch": pending[0] / steps_per_epoch,
                            "train_loss": float(m["loss"]),
                            "ce": float(m["ce"]),
                            "dice_loss": float(m["dice_loss"]),
                            "grad_norm": float(m["grad_norm"]),
                            "samples_per_s": rate,
                        }
                    )
                    progress.set_postfix(loss=f"{float(m['loss']):.4f}", samples_s=f"{rate:.2f}")
                    window_start, window_steps = time.perf_counter(), 0
            pending = (step, step_metrics)
            window_steps += 1
            progress.update(1)

            epoch_done = step % steps_per_epoch == 0
            epoch = step // steps_per_epoch
            last = step == stop_step
            if (epoch_done and epoch % config.train.checkpoint_every_epochs == 0) or last:
                check_finite(*pending)  # never checkpoint a NaN state
                ckpt.save_latest(step, state, data_iter)
            if epoch_done and (epoch % config.train.eval_every_epochs == 0 or step == total_steps):
                summary, _ = evaluate_split(
                    predict_fn, state.params, config, dataset, config.data.val_split
                )
                mean = (
                    float(np.nanmean(summary["mean"])) if summary["count"].any() else float("nan")
                )
                logbook.write(
                    {
                        "step": step,
                        "epoch": epoch,
                        "val_dice": _named(summary["mean"]),
                        "val_mean_dice": mean,
                    }
                )
                logbook.plot()
                if not np.isnan(mean) and (best is None or mean > best["score"]):
                    best = {"step": step, "epoch": epoch, "score": mean}
                    ckpt.save_best(step, state.params, best)
                progress.write(
                    f"epoch {epoch}: validation mean Dice {mean:.4f} (best {best['score'] if best else float('nan'):.4f})"
                )
    finally:
        progress.close()
        ckpt.wait()

    result: dict[str, Any] = {"step": int(state.step), "test": None}
    if int(state.step) < total_steps:
        ckpt.close()
        return result
    params = ckpt.restore_best_params(state.params) if best is not None else state.params
    summary, dice_nc = evaluate_split(predict_fn, params, config, dataset, config.data.test_split)
    ckpt.close()
    source = f"best checkpoint, step {best['step']}" if best else f"final step {int(state.step)}"
    table = metrics.dice_table(
        summary,
        STRUCTURES,
        f"Test split ({len(dice_nc)} cases), {config.stage} stage, network input space, {source}:",
    )
    print(table, flush=True)
    (workdir / "test_dice.md").write_text(table + "\n")
    (workdir / "test_dice.json").write_text(
        json.dumps(
            {
                "split": config.data.test_split,
                "source": source,
                "mean": _named(summary["mean"]),
                "min": _named(summary["min"]),
                "max": _named(summary["max"]),
            },
            indent=2,
        )
        + "\n"
    )
    result["test"] = summary
    return result
