"""Training: the train state, one pure train step, evaluation and the loop with checkpoints."""

from __future__ import annotations

import functools
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

from lumbar_jax import config as config_lib
from lumbar_jax import losses, validation
from lumbar_jax import preemption as preemption_lib
from lumbar_jax.checkpoint import Checkpoints
from lumbar_jax.data import check, datasets, pipeline
from lumbar_jax.logbook import Logbook
from lumbar_jax.model import UNet3D
from lumbar_jax.parallel import DataParallel

NONFINITE_POLICIES = ("stop", "skip")


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
        # Configs saved before this field existed load with the default.
        layer_impl=m.get("layer_impl", "auto"),
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
    # Named scopes label the compiled operations (benchmarks/profile_step.py reads them).
    with jax.named_scope("noise"):
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
        with jax.named_scope("loss"):
            return losses.segmentation_loss(
                logits, label, batch["labeled_c"], config.loss.ce_weight, config.loss.dice_weight
            )

    (loss, parts), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    metrics = {"loss": loss, **parts}
    if axis_name:
        # Equal shards: the mean of the shards' mean losses is the global mean loss.
        grads, metrics = jax.lax.pmean((grads, metrics), axis_name)
    with jax.named_scope("optimizer"):
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
    # A step whose loss, gradients or new parameters are not finite keeps the old state. It
    # is decided here, on the device, from values every replica holds alike after the pmean
    # (or the global values under a mesh), so replicas agree without a host round trip; the
    # host reads "finite" one step late and applies config.train.nonfinite.
    finite = _all_finite((metrics["loss"], grads, params))
    params, opt_state = jax.tree.map(
        lambda new, old: jnp.where(finite, new, old),
        (params, opt_state),
        (state.params, state.opt_state),
    )
    # The step advances either way: it numbers the batches and keys the noise.
    new_state = state.replace(step=state.step + 1, params=params, opt_state=opt_state)
    return new_state, {**metrics, "grad_norm": optax.tree.norm(grads), "finite": finite}


def _all_finite(tree: Any) -> jnp.ndarray:
    """Scalar bool: every floating-point value in ``tree`` is finite."""
    leaves = [x for x in jax.tree.leaves(tree) if jnp.issubdtype(jnp.result_type(x), jnp.inexact)]
    return jnp.all(jnp.stack([jnp.isfinite(x).all() for x in leaves]))


def _check_resume_config(config: ml_collections.ConfigDict, workdir: Path) -> None:
    """A workdir's checkpoints only fit the architecture and input they were trained with.

    conv_impl, layer_impl, dtype and remat may change between runs: they leave the parameters
    as they are.
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

    SIGTERM or SIGINT while training saves a latest checkpoint after the step in flight and
    returns normally (see ``preemption.Preemption``); the same call resumes, with the same parameters
    and data order as a run never interrupted. A step with a non-finite loss or gradient is
    handled by ``config.train.nonfinite``; a non-finite state is never checkpointed.

    Returns:
      {"step": final step, "test": per-structure test Dice summary (None until the last
      step), "params": the final parameters (numpy), "preempted": the signal's name or None,
      "skipped_steps": steps skipped for non-finite values}.

    Raises:
      FloatingPointError: naming the step, when the loss or gradients become NaN or Inf
        (policy "stop") or do so for ``max_skipped_steps`` steps in a row (policy "skip");
        the last good checkpoint stays.
      ValueError: for a dataset that fails the check or a config that does not fit the
        workdir.
      OSError: for a workdir that cannot be written, a checkpoint that cannot be written
        (the previous one stays) or none that can be restored.
    """
    workdir = Path(workdir)
    lead = jax.process_index() == 0
    policy = config.train.get("nonfinite", "stop")
    if policy not in NONFINITE_POLICIES:
        raise ValueError(
            f"config.train.nonfinite is {policy!r}; choose one of {NONFINITE_POLICIES}."
        )
    max_skipped = int(config.train.get("max_skipped_steps", 10))
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
    # Only the run that owns the workdir may delete the temporary folders of killed saves.
    ckpt = Checkpoints(workdir, cleanup_tmp=True)
    if ckpt.latest_step() is not None:
        # Falls back to the previous checkpoint when the newest one does not restore.
        host_state, resumed, with_iter = ckpt.restore_for_resume(host_state, data_iter)
        if not with_iter:
            # Saved by a run with another number of processes: the global stream of batches
            # is the same, so start this process's share at the restored step.
            data_iter = data_from(resumed)
        if lead:
            print(f"Resumed from {Path(ckpt.latest.directory) / str(resumed)} at step {resumed}.")
    start_step = int(host_state.step)
    logbook = Logbook(workdir)
    if lead:
        logbook.truncate_after(start_step)
    best = ckpt.best_record()
    state = dp.place_state(host_state)
    del host_state

    step_fn = dp.wrap_step(functools.partial(train_step, config=config))
    predict_fn = jax.jit(functools.partial(validation.predict_labels, model=make_model(config)))

    progress = tqdm(
        total=stop_step,
        initial=start_step,
        desc="train",
        unit="step",
        mininterval=2,
        disable=not lead,
    )
    val_samples = None
    skipped = {"total": 0, "in_a_row": 0}
    window = {"start": time.perf_counter(), "steps": 0}

    def kept_checkpoint() -> str:
        latest = ckpt.latest_step()
        if latest is None:
            return "There is no checkpoint yet."
        return f"The last good checkpoint (step {latest}) is kept in {ckpt.latest.directory}."

    def drain(step: int, device_metrics: dict) -> None:
        """Applies the non-finite policy to a step's metrics and logs them.

        Called one step late (or before a checkpoint), so the host never waits for the
        device in between.

        Raises:
          FloatingPointError: naming the step, under "stop" at the first non-finite step,
            under "skip" after ``max_skipped`` of them in a row.
        """
        m = dp.host_metrics(device_metrics)
        if not m["finite"]:
            what = (
                f"Loss is {m['loss']}"
                if not np.isfinite(m["loss"])
                else f"Gradients or updated parameters are not finite (loss {m['loss']})"
            )
            if policy == "stop":
                raise FloatingPointError(
                    f"{what} at step {step}; training stopped (config.train.nonfinite = "
                    f"'stop'; 'skip' would skip such steps). {kept_checkpoint()}"
                )
            skipped["total"] += 1
            skipped["in_a_row"] += 1
            if lead:
                logbook.write(
                    {
                        "step": step,
                        "epoch": step / steps_per_epoch,
                        "skipped_update": what,
                        "skipped_steps": skipped["total"],
                    }
                )
                progress.write(
                    f"step {step}: {what}; update skipped ({skipped['in_a_row']} in a row, "
                    f"{skipped['total']} in all)."
                )
            if skipped["in_a_row"] >= max_skipped:
                raise FloatingPointError(
                    f"{what} at step {step}: {skipped['in_a_row']} non-finite steps in a row "
                    f"(config.train.max_skipped_steps = {max_skipped}); training stopped. "
                    f"{kept_checkpoint()}"
                )
            return
        skipped["in_a_row"] = 0
        if lead and step % config.train.log_every_steps == 0:
            rate = (
                window["steps"] * config.optim.batch_size / (time.perf_counter() - window["start"])
            )
            row = {
                "step": step,
                "epoch": step / steps_per_epoch,
                **{k: float(m[k]) for k in ("ce", "dice_loss", "grad_norm")},
                "train_loss": float(m["loss"]),
                "samples_per_s": rate,
            }
            if policy == "skip":
                row["skipped_steps"] = skipped["total"]
            logbook.write(row)
            progress.set_postfix(loss=f"{float(m['loss']):.4f}", samples_s=f"{rate:.2f}")
            window["start"], window["steps"] = time.perf_counter(), 0

    final_step = start_step
    pending = None  # (step, device metrics): read one step late so the host never stalls
    with preemption_lib.Preemption() as preemption:
        try:
            for step in range(start_step + 1, stop_step + 1):
                batch = dp.place_batch(next(data_iter))
                state, step_metrics = step_fn(state, batch, step_rng)
                final_step = step
                if pending is not None:
                    drain(*pending)
                pending = (step, step_metrics)
                window["steps"] += 1
                progress.update(1)

                stop = preemption.requested(step)
                epoch_done = step % steps_per_epoch == 0
                epoch = step // steps_per_epoch
                save = (epoch_done and epoch % config.train.checkpoint_every_epochs == 0) or (
                    step == stop_step
                )
                # A preempted run saves at once; this epoch's validation is then skipped.
                validate = (
                    epoch_done
                    and (epoch % config.train.eval_every_epochs == 0 or step == total_steps)
                    and not stop
                )
                if save or validate or stop:
                    drain(*pending)  # never checkpoint or score a non-finite state
                    pending = None
                    host_state = dp.host_state(state)
                if save or stop:
                    ckpt.save_latest(step, host_state, data_iter)
                if stop:
                    break
                if validate:
                    if val_samples is None:  # read and resampled once, reused every validation
                        val_samples = validation.split_samples(
                            config, dataset, config.data.val_split
                        )
                    summary, _ = validation.evaluate_samples(
                        predict_fn, host_state.params, val_samples, config.data.num_classes
                    )
                    mean = (
                        float(np.nanmean(summary["mean"]))
                        if summary["count"].any()
                        else float("nan")
                    )
                    if not np.isnan(mean) and (best is None or mean > best["score"]):
                        best = {"step": step, "epoch": epoch, "score": mean}
                        ckpt.save_best(step, host_state.params, best)
                    if lead:
                        logbook.write(
                            {
                                "step": step,
                                "epoch": epoch,
                                "val_dice": validation.named(summary["mean"]),
                                "val_mean_dice": mean,
                            }
                        )
                        logbook.plot()
                        progress.write(
                            f"epoch {epoch}: validation mean Dice {mean:.4f} "
                            f"(best {best['score'] if best else float('nan'):.4f} at step "
                            f"{best['step'] if best else '-'})"
                        )
            if pending is not None:
                drain(*pending)
        finally:
            progress.close()
            ckpt.wait()
        if preemption.name is not None:
            seconds = preemption.seconds_since_request()
            if lead:
                print(
                    f"Preempted by {preemption.name}: checkpoint of step {final_step} saved in "
                    f"{Path(ckpt.latest.directory) / str(final_step)} {seconds:.2f} s after the "
                    "signal. Run the same command to resume.",
                    flush=True,
                )

    params = dp.host_state(state).params
    result: dict[str, Any] = {
        "step": final_step,
        "test": None,
        "params": params,
        "preempted": preemption.name,
        "skipped_steps": skipped["total"],
    }
    if final_step < total_steps:
        ckpt.close()
        return result
    if best is not None:
        params = ckpt.restore_best_params(params)
    test_samples = validation.split_samples(config, dataset, config.data.test_split)
    summary, dice_nc = validation.evaluate_samples(
        predict_fn, params, test_samples, config.data.num_classes
    )
    ckpt.close()
    result["test"] = summary
    if lead:
        validation.write_test_report(config, workdir, summary, dice_nc, best, final_step)
    return result
