"""What is due after each step: a pure function, tested without training."""

import pytest

from lumbar_jax.training.schedule import Due, Schedule


@pytest.fixture
def schedule():
    # 3 steps an epoch, 4 epochs; stop early at 10; validate every 2 epochs; save every epoch.
    return Schedule(
        steps_per_epoch=3,
        total_steps=12,
        stop_step=10,
        log_every_steps=2,
        eval_every_epochs=2,
        checkpoint_every_epochs=1,
    )


def test_epochs_bring_saves_and_validations(schedule):
    due = {step: schedule.due(step) for step in range(1, 11)}
    assert [s for s, d in due.items() if d.save] == [3, 6, 9, 10]  # epochs, and the stop step
    assert [s for s, d in due.items() if d.validate] == [6]  # epoch 2 (epoch 4 is past 10)
    assert [s for s, d in due.items() if d.log] == [2, 4, 6, 8, 10]
    assert not any(d.stop for d in due.values())
    assert due[1] == Due() and not due[1].needs_host_state


def test_the_last_step_of_all_epochs_is_validated():
    schedule = Schedule(3, total_steps=9, stop_step=9, eval_every_epochs=2)
    assert schedule.due(9).validate and schedule.due(9).save  # epoch 3: not a multiple of 2


def test_preemption_saves_at_once_and_skips_validation(schedule):
    due = schedule.due(6, preempted=True)
    assert due.stop and due.save and not due.validate
    assert schedule.due(5, preempted=True).save  # mid-epoch too
    assert schedule.epoch(4) == pytest.approx(4 / 3)
