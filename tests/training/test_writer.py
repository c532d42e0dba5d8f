"""Run reports: metrics.jsonl, TensorBoard events, curves; silent on non-lead processes."""

import json
import struct

import pytest
from tensorboardX.proto import event_pb2

from lumbar_jax.training import writer as writer_lib


def _scalars(folder) -> dict[str, list[tuple[int, float]]]:
    """Every scalar in the TensorBoard event files of ``folder``: {tag: [(step, value)]}."""
    found: dict[str, list] = {}
    for path in sorted(folder.glob("events.out.tfevents.*")):
        data, offset = path.read_bytes(), 0
        while offset < len(data):  # TFRecord: length (8), its CRC (4), payload, CRC (4)
            (length,) = struct.unpack("<Q", data[offset : offset + 8])
            event = event_pb2.Event.FromString(data[offset + 12 : offset + 12 + length])
            offset += 16 + length
            for value in event.summary.value:
                found.setdefault(value.tag, []).append((event.step, value.simple_value))
    return found


def test_lead_writer_writes_jsonl_tensorboard_curves_and_files(tmp_path):
    w = writer_lib.make_writer(tmp_path, True, 0, 10)
    w.write({"step": 2, "epoch": 0.5, "train_loss": 1.5, "samples_per_s": 3.0})
    w.write({"step": 4, "epoch": 1, "val_dice": {"vertebral_body": 0.7, "cord": None}})
    w.plot()
    w.write_files({"test_dice.md": "table\n"})
    w.close()
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").open()]
    assert [r["step"] for r in rows] == [2, 4]
    assert (tmp_path / "training_curves.png").stat().st_size > 1000
    assert (tmp_path / "test_dice.md").read_text() == "table\n"
    scalars = _scalars(tmp_path / "tensorboard")
    assert scalars["train_loss"] == [(2, 1.5)] and scalars["samples_per_s"] == [(2, 3.0)]
    assert scalars["val_dice/vertebral_body"] == [(4, pytest.approx(0.7))]


def test_resumed_writer_drops_rows_past_its_start(tmp_path):
    w = writer_lib.make_writer(tmp_path, True, 0, 10)
    for step in (1, 2, 3):
        w.write({"step": step, "train_loss": 1.0})
    w.close()
    writer_lib.make_writer(tmp_path, True, 2, 10).close()
    assert [r["step"] for r in writer_lib.Logbook(tmp_path).rows()] == [1, 2]


def test_other_processes_write_nothing(tmp_path):
    w = writer_lib.make_writer(tmp_path / "run", False, 0, 10)
    assert isinstance(w, writer_lib.SilentWriter)
    w.write({"step": 1, "train_loss": 1.0})
    w.plot()
    w.write_files({"x.md": "x"})
    w.note("x")
    w.print("x")
    w.close()
    assert not (tmp_path / "run").exists()


def test_scalars_are_flattened_for_tensorboard():
    flat = writer_lib._flat_scalars(
        {"step": 1, "val_dice": {"a": 0.5, "b": None}, "loss": float("nan"), "skipped_update": "x"}
    )
    assert flat == {"val_dice/a": 0.5}
