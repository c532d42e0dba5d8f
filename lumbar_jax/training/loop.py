"""The training loop: data -> jitted step -> schedule (log, validate, save, stop) -> test.

The pieces it calls each do one thing and are tested alone: ``schedule`` (what is due after a
step), ``monitor`` (metrics one step late, the non-finite policy, throughput), ``writer``
(reports on the lead process only), ``validation`` (the evaluator and the best checkpoint),
``checkpoint`` (latest and best apart), ``preemption`` (signals become a checkpoint).
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import jax
import ml_collections

from lumbar_jax import config as config_lib
from lumbar_jax.checkpoint import Checkpoints
from lumbar_jax.data import check, datasets, pipeline
from lumbar_jax.inference import jax_stage
from lumbar_jax.training import preemption as preemption_lib
from lumbar_jax.training.monitor import StepMonitor, check_policy
from lumbar_jax.training.parallel import DataParallel
from lumbar_jax.training.schedule import Schedule
from lumbar_jax.training.state import TrainState, create_train_state
from lumbar_jax.training.step import train_step
from lumbar_jax.training.validation import Validation
from lumbar_jax.training.writer import make_writer

# Fields that shape the parameters or their meaning: a workdir refuses a config changing them.
# (conv_impl, layer_impl, dtype and remat may change between runs: the parameters stay.)
ARCHITECTURE_FIELDS = (
    *[
        ("model", k)
        for k in ("base_filters", "pool_factors", "norm", "num_groups", "deep_supervision")
    ],
    ("data", "input_shape"),
    ("data", "num_classes"),
)
# What a field meant in configs saved before it existed.
_FIELD_DEFAULTS = {("model", "deep_supervision"): 0}


def architecture_mismatch(
    config: ml_collections.ConfigDict, other: ml_collections.ConfigDict
) -> str | None:
    """The first architecture field two configs disagree on, as a sentence; None if none."""
    ours, theirs = config_lib.to_dict(config), config_lib.to_dict(other)
    for section, key in ARCHITECTURE_FIELDS:
        default = _FIELD_DEFAULTS.get((section, key))
        old, new = theirs[section].get(key, default), ours[section].get(key, default)
        if old != new:
            return f"config.{section}.{key} = {old}, not {new}"
    return None


def check_resume_config(config: ml_collections.ConfigDict, workdir: Path) -> None:
    """Raises ValueError, naming the field, if the workdir was trained with another model."""
    path = workdir / "config.json"
    if not path.is_file():
        return
    mismatch = architecture_mismatch(config, config_lib.read_config(path))
    if mismatch:
        raise ValueError(
            f"{path}: this workdir was trained with {mismatch}; use a new --workdir or the "
            "same value."
        )


def initial_params(config: ml_collections.ConfigDict, params: Any) -> Any:
    """``params``, or those of the run ``config.init_from`` names (its best, else latest).

    Fine-tuning starts from another run's parameters with a fresh optimizer state.

    Raises:
      ValueError: naming the run and the field, when its model differs from this config's.
    """
    if not config.get("init_from"):
        return params
    source = jax_stage.load_stage(config.init_from)
    mismatch = architecture_mismatch(config, source.config)
    if mismatch:
        raise ValueError(
            f"{source.source}: config.init_from names a run trained with {mismatch}; "
            "its parameters do not fit this model."
        )
    if jax.process_index() == 0:
        print(f"Parameters from {source.source} (step {source.step}).", flush=True)
    return jax.device_get(source.params)


def checked_dataset(config: ml_collections.ConfigDict) -> datasets.Dataset:
    """The config's dataset, after the dataset check (a dataset with problems raises)."""
    dataset = datasets.from_config(config.data)
    report = check.check_dataset(dataset, config.data.min_slices)
    if report.problems:
        raise ValueError(
            f"{dataset.root} fails the dataset check (python -m lumbar_jax check):\n"
            + "\n".join(report.problems)
        )
    return dataset


def make_schedule(config, dataset: datasets.Dataset, max_steps: int | None) -> Schedule:
    steps_per_epoch = pipeline.steps_per_epoch(config, dataset)
    total = config.optim.num_epochs * steps_per_epoch
    return Schedule(
        steps_per_epoch=steps_per_epoch,
        total_steps=total,
        stop_step=total if max_steps is None else min(max_steps, total),
        log_every_steps=config.train.log_every_steps,
        eval_every_epochs=config.train.eval_every_epochs,
        checkpoint_every_epochs=config.train.checkpoint_every_epochs,
    )


def _data_from(config, dataset, step: int):
    """This process's share of the global batches from ``step`` on."""
    return iter(
        pipeline.train_iter_dataset(
            config,
            dataset,
            process_index=jax.process_index(),
            process_count=jax.process_count(),
            start_step=step,
        )
    )


def restore_or_init(
    config, dataset, ckpt: Checkpoints, init_rng, steps_per_epoch: int
) -> tuple[TrainState, Any]:
    """(host state, data iterator): from the latest checkpoint that restores, else fresh
    (with ``config.init_from``'s parameters, when it names a run)."""
    host_state = jax.device_get(create_train_state(config, init_rng, steps_per_epoch))
    data_iter = _data_from(config, dataset, 0)
    if ckpt.latest_step() is None:
        return host_state.replace(params=initial_params(config, host_state.params)), data_iter
    # Falls back to the previous checkpoint when the newest one does not restore.
    host_state, resumed, with_iter = ckpt.restore_for_resume(host_state, data_iter)
    if not with_iter:
        # Saved by a run with another number of processes: the global stream of batches is
        # the same, so start this process's share at the restored step.
        data_iter = _data_from(config, dataset, resumed)
    if jax.process_index() == 0:
        print(f"Resumed from {Path(ckpt.latest.directory) / str(resumed)} at step {resumed}.")
    return host_state, data_iter


def _preempted(preemption: preemption_lib.Preemption, ckpt: Checkpoints, step: int) -> str:
    return (
        f"Preempted by {preemption.name}: checkpoint of step {step} saved in "
        f"{Path(ckpt.latest.directory) / str(step)} {preemption.seconds_since_request():.2f} s "
        "after the signal. Run the same command to resume."
    )


def _kept_checkpoint(ckpt: Checkpoints) -> str:
    latest = ckpt.latest_step()
    if latest is None:
        return "There is no checkpoint yet."
    return f"The last good checkpoint (step {latest}) is kept in {ckpt.latest.directory}."


def _set_up(
    config: ml_collections.ConfigDict, workdir: Path, max_steps: int | None
) -> tuple[DataParallel, datasets.Dataset, Schedule, Checkpoints]:
    """Checks the config, the workdir and the dataset before anything is trained."""
    check_policy(config.train.nonfinite)
    dp = DataParallel(config.parallel, config.optim.batch_size)
    if jax.process_index() == 0:
        workdir.mkdir(parents=True, exist_ok=True)
        check_resume_config(config, workdir)
        config_lib.save_config(config, workdir)
    dataset = checked_dataset(config)
    schedule = make_schedule(config, dataset, max_steps)
    # Only the run that owns the workdir may delete the temporary folders of killed saves.
    return dp, dataset, schedule, Checkpoints(workdir, cleanup_tmp=True)


def train_and_evaluate(
    config: ml_collections.ConfigDict, workdir: str | Path, *, max_steps: int | None = None
) -> dict[str, Any]:
    """Trains (resuming from the workdir's latest checkpoint), validates and tests.

    Runs data-parallel over all devices of all processes (``config.parallel``). Every process
    calls this; only process 0 writes logs, curves and tables, all take part in checkpoints.
    SIGTERM or SIGINT saves a latest checkpoint after the step in flight and returns; the same
    call resumes with the same parameters and data order as a run never interrupted.

    Args:
      config: a config from ``configs/``.
      workdir: where checkpoints, metrics.jsonl, TensorBoard events and results go.
      max_steps: stop after this global step with a latest checkpoint, as a preempted job
        would (the same call resumes).

    Returns:
      {"step": final step, "test": test Dice summary (``metrics.summarize``; None until the
      last step), "params": final parameters (numpy), "preempted": the signal's name or None,
      "skipped_steps": updates skipped for non-finite values}.

    Raises:
      FloatingPointError: for non-finite updates (``config.train.nonfinite``).
      ValueError: for a dataset that fails the check or a config that does not fit the workdir.
      OSError: for a workdir or checkpoint that cannot be written, or none that restores.
    """
    workdir = Path(workdir)
    dp, dataset, schedule, ckpt = _set_up(config, workdir, max_steps)
    init_rng, step_rng = jax.random.split(jax.random.key(config.seed))
    host_state, data_iter = restore_or_init(
        config, dataset, ckpt, init_rng, schedule.steps_per_epoch
    )
    start_step = final_step = int(host_state.step)
    state = dp.place_state(host_state)
    del host_state
    step_fn = dp.wrap_step(functools.partial(train_step, config=config))
    writer = make_writer(workdir, jax.process_index() == 0, start_step, schedule.stop_step)
    monitor = StepMonitor(
        config.train.nonfinite, config.train.max_skipped_steps, config.optim.batch_size,
        schedule, writer, dp.host_metrics, lambda: _kept_checkpoint(ckpt),
    )  # fmt: skip
    validation = Validation(config, dataset, ckpt, writer)

    with preemption_lib.Preemption() as preemption:
        try:
            for step in range(start_step + 1, schedule.stop_step + 1):
                batch = dp.place_batch(next(data_iter))
                state, step_metrics = step_fn(state, batch, step_rng)
                final_step = step
                monitor.push(step, step_metrics)
                writer.advance()
                due = schedule.due(step, preempted=preemption.requested(step))
                if not due.needs_host_state:
                    continue
                monitor.flush()  # never checkpoint or score a non-finite state
                host_state = dp.host_state(state)
                if due.save:
                    ckpt.save_latest(step, host_state, data_iter)
                if due.stop:
                    break
                if due.validate:
                    validation(step, step // schedule.steps_per_epoch, host_state.params)
            monitor.flush()
        finally:
            writer.close()
            ckpt.wait()
        if preemption.name is not None:
            writer.print(_preempted(preemption, ckpt, final_step))
    params = dp.host_state(state).params
    test = None
    if final_step == schedule.total_steps:
        test = validation.test(params, final_step).dice_summary("network")
    ckpt.close()
    return {
        "step": final_step,
        "test": test,
        "params": params,
        "preempted": preemption.name,
        "skipped_steps": monitor.skipped_total,
    }
