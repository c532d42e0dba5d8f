"""What is due after a step (log, validate, save, stop): a pure function of the step."""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class Due:
    """What to do after one step."""

    log: bool = False
    validate: bool = False
    save: bool = False
    stop: bool = False

    @property
    def needs_host_state(self) -> bool:
        """Whether the state must be read back (and its metrics checked) first."""
        return self.validate or self.save or self.stop


@dataclasses.dataclass(frozen=True)
class Schedule:
    """A run's steps: epochs of ``steps_per_epoch``, until ``stop_step``.

    Attributes:
      steps_per_epoch: optimizer steps per pass over the training split.
      total_steps: the run's last step (all epochs).
      stop_step: where this call stops (``total_steps``, or earlier with ``max_steps``).
      log_every_steps: training metrics are logged every this many steps.
      eval_every_epochs: validation every this many epochs, and after the last one.
      checkpoint_every_epochs: a latest checkpoint every this many epochs, and at
        ``stop_step``.
    """

    steps_per_epoch: int
    total_steps: int
    stop_step: int
    log_every_steps: int = 10
    eval_every_epochs: int = 10
    checkpoint_every_epochs: int = 1

    def epoch(self, step: int) -> float:
        return step / self.steps_per_epoch

    def due(self, step: int, preempted: bool = False) -> Due:
        """What is due after ``step``; a preempted run saves at once and skips validation."""
        epoch, into_epoch = divmod(step, self.steps_per_epoch)
        epoch_done = into_epoch == 0
        save = (epoch_done and epoch % self.checkpoint_every_epochs == 0) or step == self.stop_step
        validate = (
            epoch_done
            and (epoch % self.eval_every_epochs == 0 or step == self.total_steps)
            and not preempted
        )
        return Due(
            log=step % self.log_every_steps == 0,
            validate=validate,
            save=save or preempted,
            stop=preempted,
        )
