"""Watching the steps: metrics read one step late, the non-finite policy, throughput."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

from lumbar_jax.training.schedule import Schedule

NONFINITE_POLICIES = ("stop", "skip")


def check_policy(policy: str) -> None:
    """Raises ValueError for a ``config.train.nonfinite`` that is not a policy."""
    if policy not in NONFINITE_POLICIES:
        raise ValueError(
            f"config.train.nonfinite is {policy!r}; choose one of {NONFINITE_POLICIES}."
        )


class StepMonitor:
    """Takes each step's device metrics and deals with them one step later.

    Reading a step's metrics waits for the device; reading them after the next step has been
    dispatched keeps the device busy meanwhile (nanodo's habit). Before a checkpoint or a
    validation the loop calls ``flush``, so a non-finite state is never saved or scored.

    Args:
      policy: "stop" raises at the first step whose update was not applied (loss, gradients
        or new parameters not finite); "skip" logs it and raises after ``max_skipped`` such
        steps in a row.
      max_skipped: see ``policy``.
      global_batch: samples per step, for the throughput.
      schedule: the run's schedule (when to log, epochs).
      writer: where rows and notes go.
      to_host: device metrics -> host values.
      kept_checkpoint: a sentence naming the last good checkpoint, for the error.
    """

    def __init__(
        self,
        policy: str,
        max_skipped: int,
        global_batch: int,
        schedule: Schedule,
        writer: Any,
        to_host: Callable[[dict], dict],
        kept_checkpoint: Callable[[], str],
    ):
        check_policy(policy)
        self.policy, self.max_skipped, self.global_batch = policy, max_skipped, global_batch
        self.schedule, self.writer = schedule, writer
        self.to_host, self.kept_checkpoint = to_host, kept_checkpoint
        self.skipped_total = 0
        self._skipped_in_a_row = 0
        self._pending: tuple[int, dict] | None = None
        self._window_start, self._window_steps = time.perf_counter(), 0

    def push(self, step: int, device_metrics: dict) -> None:
        """Records a dispatched step; deals with the previous one."""
        self.flush()
        self._pending = (step, device_metrics)
        self._window_steps += 1

    def flush(self) -> None:
        """Deals with the pending step now.

        Raises:
          FloatingPointError: naming the step, as the policy says.
        """
        if self._pending is not None:
            step, device_metrics = self._pending
            self._pending = None
            self._check(step, self.to_host(device_metrics))

    def _check(self, step: int, m: dict) -> None:
        if not m["finite"]:
            self._skip(step, m)
            return
        self._skipped_in_a_row = 0
        if step % self.schedule.log_every_steps == 0:
            self._log(step, m)

    def _skip(self, step: int, m: dict) -> None:
        what = (
            f"Loss is {m['loss']}"
            if not np.isfinite(m["loss"])
            else f"Gradients or updated parameters are not finite (loss {m['loss']})"
        )
        if self.policy == "stop":
            raise FloatingPointError(
                f"{what} at step {step}; training stopped (config.train.nonfinite = 'stop'; "
                f"'skip' would skip such steps). {self.kept_checkpoint()}"
            )
        self.skipped_total += 1
        self._skipped_in_a_row += 1
        self.writer.write(
            {
                "step": step,
                "epoch": self.schedule.epoch(step),
                "skipped_update": what,
                "skipped_steps": self.skipped_total,
            }
        )
        self.writer.note(
            f"step {step}: {what}; update skipped ({self._skipped_in_a_row} in a row, "
            f"{self.skipped_total} in all)."
        )
        if self._skipped_in_a_row >= self.max_skipped:
            raise FloatingPointError(
                f"{what} at step {step}: {self._skipped_in_a_row} non-finite steps in a row "
                f"(config.train.max_skipped_steps = {self.max_skipped}); training stopped. "
                f"{self.kept_checkpoint()}"
            )

    def _log(self, step: int, m: dict) -> None:
        now = time.perf_counter()
        rate = self._window_steps * self.global_batch / max(now - self._window_start, 1e-9)
        row = {
            "step": step,
            "epoch": self.schedule.epoch(step),
            **{k: float(v) for k, v in m.items() if k not in ("loss", "finite")},
            "train_loss": float(m["loss"]),
            "samples_per_s": rate,
        }
        if self.policy == "skip":
            row["skipped_steps"] = self.skipped_total
        self.writer.write(row)
        self.writer.advance(0, loss=f"{float(m['loss']):.4f}", samples_s=f"{rate:.2f}")
        self._window_start, self._window_steps = now, 0
