"""orbax checkpoints of a run: "latest" (for resume) and "best" (by validation Dice), apart.

They live in separate managers on purpose: a single manager with ``best_fn`` deletes the
latest checkpoint whenever it scores worse than the best, which breaks resume.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import grain
import jax
import orbax.checkpoint as ocp


class Checkpoints:
    """The two checkpoint series of one workdir."""

    def __init__(self, workdir: str | Path):
        root = Path(workdir).resolve() / "checkpoints"
        # Two latest checkpoints: one is complete even while the next is being written.
        self.latest = ocp.CheckpointManager(
            root / "latest", options=ocp.CheckpointManagerOptions(max_to_keep=2, create=True)
        )
        self.best = ocp.CheckpointManager(
            root / "best", options=ocp.CheckpointManagerOptions(max_to_keep=1, create=True)
        )

    def latest_step(self) -> int | None:
        return self.latest.latest_step()

    def save_latest(self, step: int, state: Any, data_iter: Any) -> None:
        """Saves the train state and the data iterator position (asynchronously)."""
        self.latest.save(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardSave(state),
                data_iter=grain.checkpoint.CheckpointSave(data_iter),
            ),
            force=True,
        )

    def restore_latest(self, abstract_state: Any, data_iter: Any | None = None) -> Any:
        """Restores the newest complete checkpoint; returns the state.

        Args:
          abstract_state: a state of the same structure (numpy arrays are fine).
          data_iter: when given, its position is restored too.
        """
        step = self.latest.latest_step()
        items = {"state": ocp.args.StandardRestore(abstract_state)}
        if data_iter is not None:
            items["data_iter"] = grain.checkpoint.CheckpointRestore(data_iter)
        return self.latest.restore(step, args=ocp.args.Composite(**items)).state

    def has_iterator_state(self, step: int) -> bool:
        """Whether ``step`` holds a data-iterator position for this process layout.

        A run restarted with another number of processes finds none (grain saves one file
        per process).
        """
        name = f"process_{jax.process_index()}-of-{jax.process_count()}.json"
        return (Path(self.latest.directory) / str(step) / "data_iter" / name).is_file()

    def best_record(self) -> dict | None:
        """{"step", "score", ...} of the best checkpoint, or None."""
        step = self.best.latest_step()
        if step is None:
            return None
        restored = self.best.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))
        return dict(restored.meta)

    def save_best(self, step: int, params: Any, record: dict) -> None:
        self.best.save(
            step,
            args=ocp.args.Composite(
                params=ocp.args.StandardSave(params), meta=ocp.args.JsonSave(record)
            ),
            force=True,
        )

    def restore_best_params(self, abstract_params: Any) -> Any:
        step = self.best.latest_step()
        if step is None:
            raise FileNotFoundError(f"No best checkpoint in {self.best.directory}.")
        restored = self.best.restore(
            step, args=ocp.args.Composite(params=ocp.args.StandardRestore(abstract_params))
        )
        return restored.params

    def wait(self) -> None:
        self.latest.wait_until_finished()
        self.best.wait_until_finished()

    def close(self) -> None:
        self.latest.close()
        self.best.close()
