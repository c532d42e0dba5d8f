"""``python -m lumbar_jax.train`` with hooks that make it easy to interrupt at a chosen moment.

  python tests/helpers/train_interruptible.py [--step-delay=S] [--slow-save=S] -- TRAIN_ARGS

--step-delay: sleep S seconds before each train step, so a tiny run lasts long enough to be
  signalled or killed mid-training (results do not change: only the host waits).
--slow-save: from the second checkpoint on, sleep S seconds inside the checkpoint write
  (after orbax has created its temporary folder), printing "SAVING <step folder>" first, so
  a test can kill the process mid-save.
"""

from __future__ import annotations

import sys
import time

from lumbar_jax.cli import train
from lumbar_jax.training import parallel


def _install_hooks(step_delay: float, slow_save: float) -> None:
    if step_delay:
        place_batch = parallel.DataParallel.place_batch

        def slow_place_batch(self, batch):
            time.sleep(step_delay)
            return place_batch(self, batch)

        parallel.DataParallel.place_batch = slow_place_batch
    if slow_save:
        from grain._src.python.checkpoint import handler

        save = handler.CheckpointHandler.save
        calls = []

        def slow(self, directory, *args, **kwargs):
            calls.append(directory)
            if len(calls) > 1:
                print(f"SAVING {directory.parent}", flush=True)
                time.sleep(slow_save)
            return save(self, directory, *args, **kwargs)

        handler.CheckpointHandler.save = slow


def main() -> None:
    split = sys.argv.index("--")
    options = dict(arg.lstrip("-").split("=") for arg in sys.argv[1:split])
    _install_hooks(float(options.get("step-delay", 0)), float(options.get("slow-save", 0)))
    sys.argv = [sys.argv[0], *sys.argv[split + 1 :]]
    train.cli()


if __name__ == "__main__":
    main()
