from __future__ import annotations

import itertools

import pytest

from scheduler.jobstate import ALLOWED_TRANSITIONS, IllegalTransition, JobState, check_transition


@pytest.mark.parametrize(
    ("current", "new"),
    [
        (JobState.PENDING, JobState.PLACED),
        (JobState.PLACED, JobState.RUNNING),
        (JobState.RUNNING, JobState.SUCCEEDED),
        (JobState.RUNNING, JobState.FAILED),
        (JobState.RUNNING, JobState.PENDING),
        (JobState.PLACED, JobState.PENDING),
        (JobState.PENDING, JobState.CANCELLED),
        (JobState.RUNNING, JobState.CANCELLED),
        (JobState.RUNNING, JobState.RECOVERING),  # a failure with restarts left
        (JobState.RECOVERING, JobState.PLACED),  # placed again, hot spares first
        (JobState.RECOVERING, JobState.PENDING),  # no room yet: back to the queue
        (JobState.RUNNING, JobState.CHECKPOINTING),  # asked to checkpoint before a move
        (JobState.CHECKPOINTING, JobState.PENDING),  # checkpoint in: requeued
        (JobState.CHECKPOINTING, JobState.RECOVERING),  # failed while writing it
    ],
)
def test_allowed(current: JobState, new: JobState) -> None:
    check_transition("j", current, new)


@pytest.mark.parametrize(
    ("current", "new"),
    [
        (JobState.PENDING, JobState.RUNNING),  # must be placed first
        (JobState.PENDING, JobState.SUCCEEDED),
        (JobState.SUCCEEDED, JobState.PENDING),  # terminal states are final
        (JobState.FAILED, JobState.RUNNING),
        (JobState.CANCELLED, JobState.PENDING),
        (JobState.RUNNING, JobState.PLACED),
        (JobState.RECOVERING, JobState.RUNNING),  # a recovering gang is placed first
        (JobState.PENDING, JobState.CHECKPOINTING),  # nothing runs to checkpoint
    ],
)
def test_refused_with_a_message_naming_both_states(current: JobState, new: JobState) -> None:
    with pytest.raises(IllegalTransition) as info:
        check_transition("j-1", current, new)
    assert "j-1" in str(info.value) and current.value in str(info.value) and new.value in str(info.value)


def test_terminal_states_have_no_exit_and_every_state_is_covered() -> None:
    assert set(ALLOWED_TRANSITIONS) == set(JobState)
    for state in JobState:
        assert state.terminal == (not ALLOWED_TRANSITIONS[state])
    for a, b in itertools.product(JobState, JobState):
        if a.terminal:
            with pytest.raises(IllegalTransition):
                check_transition("j", a, b)


def test_proto_round_trip() -> None:
    for state in JobState:
        assert JobState.from_proto(state.to_proto()) is state
