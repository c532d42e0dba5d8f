"""orbax checkpoints of a run: "latest" (for resume) and "best" (by validation Dice), apart.

Training writes them; inference and export read the best (or a latest) one's parameters. The
data pipeline's position, saved beside the train state, is grain's: grain is imported only
where a data iterator is saved or restored, so reading parameters needs orbax alone.

They live in separate managers on purpose: a single manager with ``best_fn`` deletes the
latest checkpoint whenever it scores worse than the best, which breaks resume.

Surviving kills: orbax writes each checkpoint into ``<step>.orbax-checkpoint-tmp-*`` and
renames it to ``<step>`` only once every file is written, so a process killed mid-write leaves
a temporary folder that no listing counts (a training run removes it when it starts). Two
latest checkpoints are kept, so one is complete while the next is written. A complete-looking
checkpoint that still fails to restore (files truncated or deleted afterwards) is moved aside
to ``<step>.unreadable`` and the previous one restored, with a warning.
"""

from __future__ import annotations

import errno
import logging
from pathlib import Path
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

log = logging.getLogger(__name__)


class CheckpointError(OSError):
    """A checkpoint that cannot be written or restored; the message names the folder."""


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return (text.splitlines()[0] if text else type(e).__name__)[:300]


def _os_error_in(e: BaseException) -> OSError | None:
    """The OSError behind ``e`` (itself or a cause), if any: orbax wraps some of them."""
    seen = set()
    while e is not None and id(e) not in seen:
        if isinstance(e, OSError):
            return e
        seen.add(id(e))
        e = e.__cause__ or e.__context__
    return None


class Checkpoints:
    """The two checkpoint series of one workdir."""

    def __init__(self, workdir: str | Path, *, cleanup_tmp: bool = False):
        """
        Args:
          workdir: the run folder; checkpoints go to ``workdir/checkpoints``.
          cleanup_tmp: delete temporary folders left by killed saves. Only the training run
            that owns the workdir may do this: a reader (inference) could otherwise delete
            the checkpoint a running training job is writing.
        """
        root = Path(workdir).resolve() / "checkpoints"
        # Two latest checkpoints: one is complete even while the next is being written.
        self.latest = ocp.CheckpointManager(
            root / "latest",
            options=ocp.CheckpointManagerOptions(
                max_to_keep=2, create=True, cleanup_tmp_directories=cleanup_tmp
            ),
        )
        self.best = ocp.CheckpointManager(
            root / "best",
            options=ocp.CheckpointManagerOptions(
                max_to_keep=1, create=True, cleanup_tmp_directories=cleanup_tmp
            ),
        )

    def latest_step(self) -> int | None:
        return self.latest.latest_step()

    def save_latest(self, step: int, state: Any, data_iter: Any) -> None:
        """Saves the train state and the data iterator position (asynchronously).

        Raises:
          CheckpointError: when the checkpoint cannot be written (a full disk, say); the
            previous checkpoints stay as they were. Errors of the asynchronous part of a save
            surface here at the next save, or in ``wait``.
        """
        import grain

        try:
            # A step saved before a fall-back to an older checkpoint is written again.
            if step in self.latest.all_steps():
                self.latest.delete(step)
            self.latest.save(
                step,
                args=ocp.args.Composite(
                    state=ocp.args.StandardSave(state),
                    data_iter=grain.checkpoint.CheckpointSave(data_iter),
                ),
                force=True,
            )
        except Exception as e:
            self._raise_write_error(self.latest, step, e)
            raise

    def _raise_write_error(self, manager, step: int | None, e: BaseException) -> None:
        """Raises a CheckpointError naming the folder when ``e`` comes from an OSError."""
        os_error = _os_error_in(e)
        if os_error is None:
            return
        what = f"checkpoint {step}" if step is not None else "a checkpoint"
        reason = "the disk is full" if os_error.errno == errno.ENOSPC else _first_line(os_error)
        kept = [s for s in manager.all_steps() if s != step]
        keep = f"; checkpoint {max(kept)} is kept" if kept else ""
        error = CheckpointError(f"{manager.directory}: cannot write {what}: {reason}{keep}.")
        error.errno = os_error.errno
        raise error from e

    def restore_latest(
        self, abstract_state: Any, data_iter: Any | None = None, step: int | None = None
    ) -> Any:
        """Restores the newest complete checkpoint (or ``step``); returns the state.

        Args:
          abstract_state: a state of the same structure (numpy arrays are fine).
          data_iter: when given, its position is restored too.
          step: a step to restore instead of the newest.
        """
        if step is None:
            step = self.latest.latest_step()
        items = {"state": ocp.args.StandardRestore(abstract_state)}
        if data_iter is not None:
            import grain

            items["data_iter"] = grain.checkpoint.CheckpointRestore(data_iter)
        return self.latest.restore(step, args=ocp.args.Composite(**items)).state

    def restore_for_resume(self, abstract_state: Any, data_iter: Any) -> tuple[Any, int, bool]:
        """Restores the newest checkpoint that restores, falling back to older ones.

        A checkpoint that fails (truncated or missing files) is moved aside to
        ``<step>.unreadable`` with a warning, but only once an older one has restored with
        the same template: when none restores, the template (the config) is the likelier
        culprit and nothing is moved.

        Args:
          abstract_state: a state of the same structure (numpy arrays are fine).
          data_iter: the data iterator whose position is restored where the checkpoint holds
            one for this process layout.

        Returns:
          (state, step, whether ``data_iter``'s position was restored).

        Raises:
          FileNotFoundError: when there is no checkpoint.
          CheckpointError: when no checkpoint restores; names each and why.
        """
        steps = sorted(self.latest.all_steps(), reverse=True)
        if not steps:
            raise FileNotFoundError(f"No checkpoint in {self.latest.directory}.")
        failed: list[tuple[int, BaseException]] = []
        for step in steps:
            with_iter = self.has_iterator_state(step)
            try:
                state = self.restore_latest(abstract_state, data_iter if with_iter else None, step)
                # orbax restores arrays with their saved shapes, whatever the template says.
                if jax.tree.map(np.shape, state) != jax.tree.map(np.shape, abstract_state):
                    raise ValueError("its arrays do not fit the model of this config")
            # Any failure to read one checkpoint is a reason to try the previous one; the
            # errors tensorstore, json and orbax raise for damaged files have no common type.
            except Exception as e:
                log.warning(
                    "Checkpoint %s is unreadable (%s); trying the previous one.",
                    Path(self.latest.directory) / str(step),
                    _first_line(e),
                )
                failed.append((step, e))
                continue
            if failed:
                self._move_aside([s for s, _ in failed])
                print(
                    f"warning: checkpoint(s) {', '.join(str(s) for s, _ in failed)} in "
                    f"{self.latest.directory} could not be restored and were moved aside "
                    f"(*.unreadable); resuming from step {step}.",
                    flush=True,
                )
            return state, step, with_iter
        details = "; ".join(f"step {s}: {_first_line(e)}" for s, e in failed)
        raise CheckpointError(
            f"{self.latest.directory}: no checkpoint could be restored ({details}). Are they "
            "damaged, or was the run trained with another config?"
        ) from failed[0][1]

    def _move_aside(self, steps: list[int]) -> None:
        if jax.process_index() == 0:
            for step in steps:
                path = Path(self.latest.directory) / str(step)
                target = path.with_name(f"{step}.unreadable")
                n = 1
                while target.exists():
                    target, n = path.with_name(f"{step}.unreadable{n}"), n + 1
                path.rename(target)
        self.latest.reload()

    def has_iterator_state(self, step: int) -> bool:
        """Whether ``step`` holds a data-iterator position for this process layout.

        A run restarted with another number of processes finds none (grain saves one file
        per process).
        """
        name = f"process_{jax.process_index()}-of-{jax.process_count()}.json"
        return (Path(self.latest.directory) / str(step) / "data_iter" / name).is_file()

    def best_record(self) -> dict | None:
        """{"step", "score", ...} of the best checkpoint, or None (also when it is unreadable)."""
        step = self.best.latest_step()
        if step is None:
            return None
        try:
            restored = self.best.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))
        except Exception as e:  # a damaged best checkpoint must not stop a resume
            log.warning(
                "Best checkpoint %s is unreadable (%s); the next validation replaces it.",
                Path(self.best.directory) / str(step),
                _first_line(e),
            )
            return None
        return dict(restored.meta)

    def save_best(self, step: int, params: Any, record: dict) -> None:
        """Saves the best parameters and their record (asynchronously).

        Raises:
          CheckpointError: when the checkpoint cannot be written.
        """
        try:
            if step in self.best.all_steps():
                self.best.delete(step)
            self.best.save(
                step,
                args=ocp.args.Composite(
                    params=ocp.args.StandardSave(params), meta=ocp.args.JsonSave(record)
                ),
                force=True,
            )
        except Exception as e:
            self._raise_write_error(self.best, step, e)
            raise

    def restore_best_params(self, abstract_params: Any, step: int | None = None) -> Any:
        if step is None:
            step = self.best.latest_step()
        if step is None:
            raise FileNotFoundError(f"No best checkpoint in {self.best.directory}.")
        restored = self.best.restore(
            step, args=ocp.args.Composite(params=ocp.args.StandardRestore(abstract_params))
        )
        return restored.params

    def restore_params(self, series: str, step: int, abstract_params: Any) -> Any:
        """The parameters of checkpoint ``step`` of ``series`` ("best" or "latest").

        Only the parameters are read: a latest checkpoint's optimizer state and data position
        are skipped, so inference needs neither the optimizer nor the data pipeline.
        """
        if series == "best":
            return self.restore_best_params(abstract_params, step)
        restored = self.latest.restore(
            step,
            args=ocp.args.Composite(
                state=ocp.args.PyTreeRestore(
                    {"params": abstract_params},
                    restore_args=jax.tree.map(
                        lambda _: ocp.ArrayRestoreArgs(), {"params": abstract_params}
                    ),
                    partial_restore=True,
                )
            ),
        )
        return restored.state["params"]

    def wait(self) -> None:
        """Waits for pending saves.

        Raises:
          CheckpointError: when a pending save failed to write.
        """
        for manager in (self.latest, self.best):
            try:
                manager.wait_until_finished()
            except Exception as e:
                self._raise_write_error(manager, None, e)
                raise

    def close(self) -> None:
        self.latest.close()
        self.best.close()
