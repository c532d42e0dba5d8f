"""Preemption: SIGTERM or SIGINT during training becomes "checkpoint and stop"."""

from __future__ import annotations

import signal
import threading
import time
from typing import Any

import jax


class Preemption:
    """SIGTERM or SIGINT during training: a request to checkpoint and stop, not a crash.

    A context manager: inside it, the first SIGTERM or SIGINT only records the request
    (``requested`` then returns True after the step in flight); a second one restores the
    previous handler and hands the signal to it, so an impatient Ctrl-C or the scheduler's
    follow-up signal still ends the process (the last complete checkpoint stays valid). The
    previous handlers are restored on exit.

    Single process: the handlers are Python's. Multi-process: a signal reaches each process
    at a slightly different step, but orbax saves are collective, so every process must stop
    at the same step. There JAX's preemption service (started by ``jax.distributed``, which
    catches SIGTERM itself) agrees on the step through the coordinator, and ``requested`` asks
    it; SIGINT is not caught, so Ctrl-C ends such a run without a new checkpoint.
    Signal handlers can only be set in the main thread; elsewhere signals keep their default
    effect.
    """

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self):
        self.name: str | None = None  # the signal that asked to stop
        self._time: float | None = None
        self._previous: dict[int, Any] = {}
        self._multi_process = jax.process_count() > 1

    def __enter__(self) -> Preemption:
        if not self._multi_process and threading.current_thread() is threading.main_thread():
            for signum in self.SIGNALS:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        self._restore()

    def _restore(self) -> None:
        for signum, previous in self._previous.items():
            # None: the previous handler was not set from Python; the default is the best guess.
            signal.signal(signum, previous if previous is not None else signal.SIG_DFL)
        self._previous = {}

    def _handle(self, signum: int, frame) -> None:
        if self.name is not None:
            # Asked twice: stop now, as the process would have without us. The previous Python
            # handler (Ctrl-C's KeyboardInterrupt) runs right here, in the interrupted frame;
            # a default one gets the signal raised in this thread. (os.kill signalled the
            # process: the signal could land in another thread and the KeyboardInterrupt
            # surface later, elsewhere, where a library might swallow it.)
            previous = self._previous.get(signum)
            self._restore()
            if callable(previous):
                previous(signum, frame)
            else:
                signal.raise_signal(signum)
            return
        # Only records: printing or saving from a signal handler can deadlock on locks the
        # interrupted code holds.
        self.name = signal.Signals(signum).name
        self._time = time.perf_counter()

    def requested(self, step: int) -> bool:
        """Whether to checkpoint and stop after ``step`` (the same step on every process)."""
        if self.name is not None:
            return True
        if self._multi_process:
            from jax.experimental import multihost_utils

            if multihost_utils.reached_preemption_sync_point(step):
                self.name = "SIGTERM"  # JAX's preemption service only listens to SIGTERM
                self._time = time.perf_counter()
                return True
        return False

    def seconds_since_request(self) -> float:
        return time.perf_counter() - self._time if self._time is not None else float("nan")
