"""Multi-process start-up: one process per host (or per GPU), joined by jax.distributed."""

from __future__ import annotations

import os

import jax


def initialize(
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    *,
    heartbeat_timeout_s: int = 30,
    shutdown_timeout_s: int = 30,
    init_timeout_s: int = 300,
) -> bool:
    """Joins a multi-process run when one is asked for or detected; returns whether it did.

    With explicit arguments, every process passes the same coordinator address (host:port of
    process 0) and process count and its own id. With none, a cluster that JAX detects
    (SLURM with ``srun``, Open MPI, ...) provides them. Single-process runs skip this.

    The coordinator binds only the address it is given (by default JAX binds every
    interface). JAX's heartbeat and shutdown time-outs are lowered from 100 s and 300 s, so
    a dead peer ends the other processes with an error in about ``heartbeat_timeout_s``.
    """
    explicit = coordinator_address is not None
    detected = "SLURM_NTASKS" in os.environ and int(os.environ["SLURM_NTASKS"]) > 1
    if not explicit and not detected:
        return False
    kwargs = {}
    if explicit:
        if num_processes is None or process_id is None:
            raise ValueError("--coordinator_address needs --num_processes and --process_id.")
        kwargs = dict(
            coordinator_address=coordinator_address,
            num_processes=num_processes,
            process_id=process_id,
            coordinator_bind_address=coordinator_address if process_id == 0 else None,
        )
    jax.distributed.initialize(
        **kwargs,
        initialization_timeout=init_timeout_s,
        heartbeat_timeout_seconds=heartbeat_timeout_s,
        shutdown_timeout_seconds=shutdown_timeout_s,
    )
    return True
