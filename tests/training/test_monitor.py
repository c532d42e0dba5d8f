"""The step monitor: metrics one step late, the non-finite policies, throughput rows."""

import math

import pytest

from lumbar_jax.training.monitor import StepMonitor
from lumbar_jax.training.schedule import Schedule


class RecordingWriter:
    def __init__(self):
        self.rows, self.notes = [], []

    def write(self, row):
        self.rows.append(row)

    def note(self, text):
        self.notes.append(text)

    def advance(self, steps=1, **postfix):
        pass


def _monitor(policy="stop", max_skipped=2):
    writer, read = RecordingWriter(), []

    def to_host(m):
        read.append(m["step_id"])
        return m

    monitor = StepMonitor(
        policy,
        max_skipped,
        4,
        Schedule(5, 100, 100, log_every_steps=1),
        writer,
        to_host,
        lambda: "K",
    )
    return monitor, writer, read


def _metrics(step, loss=0.5, finite=True):
    return {"step_id": step, "loss": loss, "ce": 0.2, "grad_norm": 1.0, "finite": finite}


def test_metrics_are_read_one_step_late():
    monitor, writer, read = _monitor()
    monitor.push(1, _metrics(1))
    assert read == []  # step 1 is read only once step 2 has been dispatched
    monitor.push(2, _metrics(2))
    assert read == [1]
    monitor.flush()
    assert read == [1, 2]
    assert [r["step"] for r in writer.rows] == [1, 2]
    row = writer.rows[0]
    assert row["train_loss"] == 0.5 and row["ce"] == 0.2 and "finite" not in row
    assert row["samples_per_s"] > 0 and row["epoch"] == pytest.approx(0.2)


def test_stop_policy_raises_naming_the_step_and_the_checkpoint():
    monitor, _, _ = _monitor("stop")
    monitor.push(7, _metrics(7, loss=math.nan, finite=False))
    with pytest.raises(FloatingPointError, match=r"Loss is nan at step 7.*K"):
        monitor.flush()


def test_skip_policy_counts_and_stops_after_too_many_in_a_row():
    monitor, writer, _ = _monitor("skip", max_skipped=2)
    monitor.push(1, _metrics(1, finite=False))
    monitor.push(2, _metrics(2))  # resets the run of skipped steps
    monitor.push(3, _metrics(3, finite=False))
    monitor.flush()
    assert monitor.skipped_total == 2
    assert "Gradients or updated parameters are not finite" in writer.rows[0]["skipped_update"]
    monitor.push(4, _metrics(4, finite=False))
    with pytest.raises(FloatingPointError, match="2 non-finite steps in a row"):
        monitor.flush()


def test_unknown_policy_is_refused():
    with pytest.raises(ValueError, match=r"config\.train\.nonfinite is 'ignore'"):
        _monitor("ignore")
