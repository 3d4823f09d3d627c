"""The binder's group-life plans as tables: the bot leaves or comes back, the group migrates."""

from __future__ import annotations

from typing import Any

import pytest

from contracts.bindings import Binding
from contracts.events import (
    BindingMoved,
    BindingResumed,
    BindingSuspended,
    BotMembershipChanged,
    ChatMigrated,
    GroupCommand,
    GroupCommandReceived,
    TelegramUser,
)
from services.binder.group_life import GroupStep, StepKind, announcement, chats_to_read, plan
from tests.support import binding, envelope

OLD, NEW = -100, -200


def membership(is_member: bool) -> BotMembershipChanged:
    return BotMembershipChanged(
        **envelope("cause"), chat_id=OLD, status="member" if is_member else "kicked", is_member=is_member
    )


MIGRATED = ChatMigrated(**envelope("cause"), old_chat_id=OLD, chat_id=NEW)


def kinds(steps: list[GroupStep]) -> list[tuple[StepKind, int]]:
    return [(step.kind, step.binding.task_number) for step in steps]


@pytest.mark.parametrize(
    ("event", "bindings", "expected"),
    [
        pytest.param(
            membership(False),
            {OLD: [binding(OLD, 1), binding(OLD, 2, thread_id=5)]},
            [(StepKind.SUSPEND, 1), (StepKind.SUSPEND, 2)],
            id="removed: every binding suspended",
        ),
        pytest.param(
            membership(False), {OLD: [binding(OLD, 1, suspended=True)]}, [], id="removed again: nothing new"
        ),
        pytest.param(
            membership(True),
            {OLD: [binding(OLD, 1, suspended=True), binding(OLD, 2, thread_id=5)]},
            [(StepKind.RESUME, 1)],
            id="back: the suspended ones resume",
        ),
        pytest.param(membership(True), {OLD: []}, [], id="added to an unbound group"),
        pytest.param(MIGRATED, {OLD: [binding(OLD, 1)], NEW: []}, [(StepKind.MOVE, 1)], id="migrated"),
        pytest.param(
            MIGRATED,
            {OLD: [binding(OLD, 1), binding(OLD, 2, thread_id=5)], NEW: [binding(NEW, 9)]},
            [(StepKind.LEAVE_BEHIND, 1), (StepKind.MOVE, 2)],
            id="the supergroup's own binding wins",
        ),
    ],
)
def test_the_steps_for_a_change(event: Any, bindings: dict[int, list[Binding]], expected: list[Any]) -> None:
    assert chats_to_read(event) == sorted(bindings, reverse=True)
    assert kinds(plan(event, bindings)) == expected


def test_commands_are_not_the_binders_business() -> None:
    command = GroupCommandReceived(
        **envelope("cause"),
        chat_id=OLD,
        message_id=1,
        command=GroupCommand.STATUS,
        requested_by=TelegramUser(id=1, full_name="A"),
    )
    assert chats_to_read(command) == []
    assert plan(command, {}) == []


def test_each_step_is_announced_with_an_id_from_its_cause_and_a_left_behind_binding_is_not() -> None:
    suspended = announcement(
        membership(False), GroupStep(kind=StepKind.SUSPEND, binding=binding(OLD, 1, thread_id=5))
    )
    resumed = announcement(membership(True), GroupStep(kind=StepKind.RESUME, binding=binding(OLD, 1)))
    moved = announcement(MIGRATED, GroupStep(kind=StepKind.MOVE, binding=binding(OLD, 1)))
    assert suspended is not None
    assert resumed is not None
    assert moved is not None
    assert isinstance(suspended[0], BindingSuspended)
    assert (suspended[1], suspended[2]) == (f"binding.suspended.{OLD}", f"suspended:{OLD}/5:from:cause")
    assert isinstance(resumed[0], BindingResumed)
    assert resumed[0].task_title == "T1"
    assert isinstance(moved[0], BindingMoved)
    assert (moved[0].old_chat_id, moved[0].chat_id, moved[1]) == (OLD, NEW, f"binding.moved.{NEW}")
    assert announcement(MIGRATED, GroupStep(kind=StepKind.LEAVE_BEHIND, binding=binding(OLD, 1))) is None
