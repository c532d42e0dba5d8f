"""Trains one stage of the cascade.

  python -m lumbar_jax.train --config=fine --workdir=runs/fine
  python -m lumbar_jax train --config=fine:cpu --workdir=runs/fine_cpu --config.optim.num_epochs=5

``--config`` takes a name in configs/ (or a path) with an optional ``:ARG`` size; any field can
be overridden with ``--config.a.b=value``. Running the same command again resumes.

SIGTERM or SIGINT (Ctrl-C) saves a checkpoint after the current step and exits with code 0;
a second signal stops at once. Errors (a dataset that fails the check, a non-finite loss, an
unwritable workdir or checkpoint) print ``error: ...`` naming the file and exit 1.
"""

from __future__ import annotations

from absl import app, flags

from lumbar_jax import config as config_lib
from lumbar_jax.cli import common
from lumbar_jax.training import distributed, loop

_CONFIG = flags.DEFINE_string(
    "config",
    None,
    f"Config NAME[:ARG] or path; names: {', '.join(config_lib.available_configs())}.",
)
_WORKDIR = flags.DEFINE_string("workdir", None, "Run folder: checkpoints, metrics, results.")
_COORDINATOR = flags.DEFINE_string(
    "coordinator_address", None, "host:port of process 0 in a multi-process run (not SLURM)."
)
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "Processes in the run.")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "This process's index.")
_MAX_STEPS = flags.DEFINE_integer(
    "max_steps", None, "Stop after this global step with a checkpoint; the same command resumes."
)
_HEARTBEAT = flags.DEFINE_integer(
    "heartbeat_timeout", 30, "Seconds without a peer's heartbeat before the run fails."
)
_OVERRIDES: dict[str, str] = {}


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    common.require("config", "workdir")
    config = config_lib.load_config(_CONFIG.value, _OVERRIDES)
    distributed.initialize(
        _COORDINATOR.value,
        _NUM_PROCESSES.value,
        _PROCESS_ID.value,
        heartbeat_timeout_s=_HEARTBEAT.value,
    )
    # A preempted run (SIGTERM, SIGINT) returns normally with a checkpoint: exit code 0.
    loop.train_and_evaluate(config, _WORKDIR.value, max_steps=_MAX_STEPS.value)


cli = common.command(main, config_overrides=_OVERRIDES)

if __name__ == "__main__":
    cli()
