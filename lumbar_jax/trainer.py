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
from lumbar_jax.data import check, datasets, pipeline
from lumbar_jax.logbook import Logbook
from lumbar_jax.model import UNet3D
from lumbar_jax.parallel import DataParallel


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


def add_noise(
    image_bdhwc: jnp.ndarray, rng: jax.Array, sample_ids_b: jnp.ndarray, prob: float, max_std: float
) -> jnp.ndarray:
    """Gaussian noise augmentation (paper), drawn on the device.

    Each sample's draw is keyed by its index in the global batch, so it does not depend on
    how the batch is split across devices.
    """

    def one(sample_id, image_dhwc):
        k_apply, k_std, k_noise = jax.random.split(jax.random.fold_in(rng, sample_id), 3)
        std = jnp.where(
            jax.random.uniform(k_apply) < prob, jax.random.uniform(k_std, maxval=max_std), 0.0
        )
        return image_dhwc + std * jax.random.normal(k_noise, image_dhwc.shape, image_dhwc.dtype)

    return jax.vmap(one)(sample_ids_b, image_bdhwc)


def train_step(
    state: TrainState,
    batch: dict[str, jnp.ndarray],
    rng: jax.Array,
    *,
    config: ml_collections.ConfigDict,
    axis_name: str | None = None,
) -> tuple[TrainState, dict[str, jnp.ndarray]]:
    """One Adam step on a batch; pure, so it can be jitted, pmapped or sharded as is.

    Args:
      state: the train state.
      batch: ``image_dhwc`` (b, d, h, w, 1), ``label_dhw`` (b, d, h, w), ``labeled_c`` (b, c).
      rng: the run's key; the step is folded in here.
      config: the run's config.
      axis_name: under ``pmap``, the device axis: gradients and metrics are averaged over it.
        None under ``jit`` (one device, or a mesh where XLA inserts the all-reduce).
    """
    model, tx = make_model(config), make_optimizer(config)
    rng = jax.random.fold_in(rng, state.step)
    local_batch = batch["image_dhwc"].shape[0]
    first = jax.lax.axis_index(axis_name) * local_batch if axis_name else 0
    image = add_noise(
        batch["image_dhwc"],
        rng,
        first + jnp.arange(local_batch),
        config.aug.noise_prob,
        config.aug.noise_max_std,
    )
    label = batch["label_dhw"].astype(jnp.int32)

    def loss_fn(params):
        logits = model.apply({"params": params}, image)
        return losses.segmentation_loss(
            logits, label, batch["labeled_c"], config.loss.ce_weight, config.loss.dice_weight
        )

    (loss, parts), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    metrics = {"loss": loss, **parts}
    if axis_name:
        # Equal shards: the mean of the shards' mean losses is the global mean loss.
        grads, metrics = jax.lax.pmean((grads, metrics), axis_name)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    new_state = state.replace(step=state.step + 1, params=params, opt_state=opt_state)
    return new_state, {**metrics, "grad_norm": optax.tree.norm(grads)}


def predict_labels(params: Any, image_bdhwc: jnp.ndarray, *, config) -> jnp.ndarray:
    """Argmax label map (b, d, h, w) uint8."""
    logits = make_model(config).apply({"params": params}, image_bdhwc)
    return jnp.argmax(logits, axis=-1).astype(jnp.uint8)


def evaluate_samples(
    predict_fn, params: Any, samples: list[dict[str, np.ndarray]], num_classes: int
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Dice per structure per case, in the network's input space.

    Args:
      predict_fn: ``(params, image_bdhwc) -> labels_bdhw``.
      params: model parameters.
      samples: un-augmented samples (``pipeline.eval_samples``), one per case.
      num_classes: background + structures.

    Returns:
      (summary from ``metrics.summarize``, per-case Dice (cases, structures)).
    """
    rows = []
    for sample in samples:
        pred = np.asarray(predict_fn(params, sample["image_dhwc"][None]))[0]
        rows.append(
            metrics.dice_per_class(pred, sample["label_dhw"], num_classes, sample["labeled_c"])
        )
    dice_nc = np.stack(rows) if rows else np.full((0, len(STRUCTURES)), np.nan)
    return metrics.summarize(dice_nc), dice_nc


def split_samples(config: ml_collections.ConfigDict, dataset, split: str) -> list[dict]:
    """Every case of a split, prepared once for repeated evaluation."""
    return [sample for _, sample in pipeline.eval_samples(config, dataset, split)]


def _named(values: np.ndarray) -> dict[str, float | None]:
    return {
        n: (None if np.isnan(v) else round(float(v), 4))
        for n, v in zip(STRUCTURES, values, strict=True)
    }


def _check_resume_config(config: ml_collections.ConfigDict, workdir: Path) -> None:
    """A workdir's checkpoints only fit the architecture and input they were trained with.

    conv_impl, dtype and remat may change between runs: they leave the parameters as they are.
    """
    path = workdir / "config.json"
    if not path.is_file():
        return
    saved = config_lib.to_dict(config_lib.read_config(path))
    current = config_lib.to_dict(config)
    fields = [("model", k) for k in ("base_filters", "pool_factors", "norm", "num_groups")]
    fields += [("data", "input_shape"), ("data", "num_classes")]
    for section, key in fields:
        old, new = saved[section].get(key), current[section][key]
        if old != new:
            raise ValueError(
                f"{path}: this workdir was trained with config.{section}.{key} = {old}, "
                f"not {new}; use a new --workdir or the same value."
            )


def train_and_evaluate(
    config: ml_collections.ConfigDict, workdir: str | Path, *, max_steps: int | None = None
) -> dict[str, Any]:
    """Trains (resuming from the workdir's latest checkpoint), validates and tests.

    Runs data-parallel over all devices of all processes (``config.parallel``). Every process
    calls this; only process 0 writes logs, curves and tables, all take part in checkpoints.

    Args:
      config: a config from ``configs/``.
      workdir: where checkpoints, metrics.jsonl, training_curves.png and results go.
      max_steps: stop after this global step with a latest checkpoint, as a preempted job
        would (the same call resumes).

    Returns:
      {"step": final step, "test": per-structure test Dice summary (None until the last
      step), "params": the final parameters (numpy)}.

    Raises:
      FloatingPointError: when the loss becomes NaN or Inf (the last good checkpoint stays).
    """
    workdir = Path(workdir)
    lead = jax.process_index() == 0
    dp = DataParallel(config.parallel, config.optim.batch_size)
    if lead:
        workdir.mkdir(parents=True, exist_ok=True)
        _check_resume_config(config, workdir)
        config_lib.save_config(config, workdir)

    dataset = datasets.from_config(config.data)
    report = check.check_dataset(dataset, config.data.min_slices)
    if report.problems:
        raise ValueError(
            f"{dataset.root} fails the dataset check (python -m lumbar_jax.data.check):\n"
            + "\n".join(report.problems)
        )
    steps_per_epoch = pipeline.steps_per_epoch(config, dataset)
    total_steps = config.optim.num_epochs * steps_per_epoch
    stop_step = total_steps if max_steps is None else min(max_steps, total_steps)

    init_rng, step_rng = jax.random.split(jax.random.key(config.seed))
    host_state = jax.device_get(create_train_state(config, init_rng))

    def data_from(step: int):
        return iter(
            pipeline.train_iter_dataset(
                config,
                dataset,
                process_index=jax.process_index(),
                process_count=jax.process_count(),
                start_step=step,
            )
        )

    data_iter = data_from(0)
    ckpt = Checkpoints(workdir)
    logbook = Logbook(workdir)
    latest = ckpt.latest_step()
    if latest is not None:
        if ckpt.has_iterator_state(latest):
            host_state = ckpt.restore_latest(host_state, data_iter)
        else:
            # Saved by a run with another number of processes: the global stream of batches
            # is the same, so start this process's share at the restored step.
            host_state = ckpt.restore_latest(host_state)
            data_iter = data_from(latest)
        if lead:
            print(f"Resumed from {ckpt.latest.directory} at step {latest}.")
    start_step = int(host_state.step)
    if lead:
        logbook.truncate_after(start_step)
    best = ckpt.best_record()
    state = dp.place_state(host_state)
    del host_state

    step_fn = dp.wrap_step(functools.partial(train_step, config=config))
    predict_fn = jax.jit(functools.partial(predict_labels, config=config))

    def check_finite(step: int, device_metrics: dict) -> dict:
        m = dp.host_metrics(device_metrics)
        if not np.isfinite(m["loss"]):
            raise FloatingPointError(
                f"Loss is {m['loss']} at step {step}; training stopped. The last good "
                f"checkpoint (step {ckpt.latest_step()}) is kept in {ckpt.latest.directory}."
            )
        return m

    progress = tqdm(
        total=stop_step,
        initial=start_step,
        desc="train",
        unit="step",
        mininterval=2,
        disable=not lead,
    )
    val_samples = None
    pending = None  # (step, device metrics): read one step late so the host never stalls
    window_start, window_steps = time.perf_counter(), 0
    try:
        for step in range(start_step + 1, stop_step + 1):
            batch = dp.place_batch(next(data_iter))
            state, step_metrics = step_fn(state, batch, step_rng)
            if pending is not None:
                m = check_finite(*pending)
                if lead and pending[0] % config.train.log_every_steps == 0:
                    rate = (
                        window_steps
                        * config.optim.batch_size
                        / (time.perf_counter() - window_start)
                    )
                    logbook.write(
                        {
                            "step": pending[0],
                            "epoch": pending[0] / steps_per_epoch,
                            **{k: float(m[k]) for k in ("ce", "dice_loss", "grad_norm")},
                            "train_loss": float(m["loss"]),
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
            save = (epoch_done and epoch % config.train.checkpoint_every_epochs == 0) or (
                step == stop_step
            )
            validate = epoch_done and (
                epoch % config.train.eval_every_epochs == 0 or step == total_steps
            )
            if save or validate:
                check_finite(*pending)  # never checkpoint or score a NaN state
                host_state = dp.host_state(state)
            if save:
                ckpt.save_latest(step, host_state, data_iter)
            if validate:
                if val_samples is None:  # read and resampled once, reused every validation
                    val_samples = split_samples(config, dataset, config.data.val_split)
                summary, _ = evaluate_samples(
                    predict_fn, host_state.params, val_samples, config.data.num_classes
                )
                mean = (
                    float(np.nanmean(summary["mean"])) if summary["count"].any() else float("nan")
                )
                if not np.isnan(mean) and (best is None or mean > best["score"]):
                    best = {"step": step, "epoch": epoch, "score": mean}
                    ckpt.save_best(step, host_state.params, best)
                if lead:
                    logbook.write(
                        {
                            "step": step,
                            "epoch": epoch,
                            "val_dice": _named(summary["mean"]),
                            "val_mean_dice": mean,
                        }
                    )
                    logbook.plot()
                    progress.write(
                        f"epoch {epoch}: validation mean Dice {mean:.4f} "
                        f"(best {best['score'] if best else float('nan'):.4f} at step "
                        f"{best['step'] if best else '-'})"
                    )
    finally:
        progress.close()
        ckpt.wait()

    final_step = max(start_step, stop_step)
    params = dp.host_state(state).params
    result: dict[str, Any] = {"step": final_step, "test": None, "params": params}
    if final_step < total_steps:
        ckpt.close()
        return result
    if best is not None:
        params = ckpt.restore_best_params(params)
    test_samples = split_samples(config, dataset, config.data.test_split)
    summary, dice_nc = evaluate_samples(predict_fn, params, test_samples, config.data.num_classes)
    ckpt.close()
    result["test"] = summary
    if lead:
        _write_test_report(config, workdir, summary, dice_nc, best, final_step)
    return result


def _write_test_report(config, workdir: Path, summary, dice_nc, best, final_step: int) -> None:
    source = f"best checkpoint, step {best['step']}" if best else f"final step {final_step}"
    table = metrics.dice_table(
        summary,
        STRUCTURES,
        f"Test split ({len(dice_nc)} cases), {config.stage} stage, network input space, {source}:",
    )
    print(table, flush=True)
    (workdir / "test_dice.md").write_text(table + "\n")
    report = {
        "split": config.data.test_split,
        "source": source,
        **{k: _named(summary[k]) for k in ("mean", "min", "max")},
    }
    (workdir / "test_dice.json").write_text(json.dumps(report, indent=2) + "\n")
