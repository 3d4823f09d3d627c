"""The one fold of the BINDING stream (``contracts.bindings``), as tables: given these events, then
these bindings. No NATS, no store."""

from __future__ import annotations

from typing import Any

import pytest

from contracts.bindings import Bindings, evolve, fold
from contracts.events import (
    AnyEvent,
    BindingMoved,
    BindingRejectionReason,
    BindingResumed,
    BindingSuspended,
    BindRejected,
    TaskBound,
    TaskUnbound,
)
from tests.support import ANNA, envelope, task_bound

CHAT, OTHER_CHAT, SUPERGROUP = -1001, -1002, -1003


def bound(task: int, chat: int = CHAT, thread: int | None = None) -> TaskBound:
    return task_bound(chat, task, thread_id=thread)


def unbound(task: int, chat: int = CHAT, thread: int | None = None) -> TaskUnbound:
    return TaskUnbound(**envelope(), chat_id=chat, thread_id=thread, task_number=task, unbound_by="x")


def suspended(task: int, chat: int = CHAT) -> BindingSuspended:
    return BindingSuspended(**envelope(), chat_id=chat, task_number=task)


def resumed(task: int, chat: int = CHAT) -> BindingResumed:
    return BindingResumed(**envelope(), chat_id=chat, task_number=task, task_title=f"T{task}")


def moved(task: int, old: int = CHAT, new: int = SUPERGROUP) -> BindingMoved:
    return BindingMoved(**envelope(), old_chat_id=old, chat_id=new, task_number=task, task_title=f"T{task}")


def rejected() -> BindRejected:
    return BindRejected(**envelope(), chat_id=CHAT, reason=BindingRejectionReason.NOT_ALLOWED, detail="")


def shape(bindings: Bindings) -> dict[tuple[int, int | None], tuple[int, bool]]:
    return {b.group: (b.task_number, b.suspended) for b in bindings}


@pytest.mark.parametrize(
    ("events", "expected"),
    [
        pytest.param([bound(1)], {(CHAT, None): (1, False)}, id="bind"),
        pytest.param([bound(1), bound(2)], {(CHAT, None): (2, False)}, id="rebind replaces"),
        pytest.param([bound(1), unbound(1)], {}, id="unbind"),
        pytest.param(
            [bound(1), bound(2), unbound(1)], {(CHAT, None): (2, False)}, id="late unbind of the old task"
        ),
        pytest.param([unbound(1)], {}, id="unbind of nothing"),
        pytest.param([bound(1), suspended(1)], {(CHAT, None): (1, True)}, id="suspend keeps it"),
        pytest.param([bound(1), suspended(1), resumed(1)], {(CHAT, None): (1, False)}, id="resume"),
        pytest.param([suspended(1)], {}, id="suspend of nothing"),
        pytest.param([bound(1), moved(1)], {(SUPERGROUP, None): (1, False)}, id="moved to a supergroup"),
        pytest.param(
            [bound(1), bound(5, thread=42)],
            {(CHAT, None): (1, False), (CHAT, 42): (5, False)},
            id="forum topic",
        ),
        pytest.param([bound(1), rejected()], {(CHAT, None): (1, False)}, id="a rejection changes nothing"),
    ],
)
def test_the_bindings_after_the_events(events: list[AnyEvent], expected: dict[Any, Any]) -> None:
    assert shape(fold(events)) == expected


def test_lookups_follow_the_fold() -> None:
    bindings = fold([bound(1), bound(5, thread=42), bound(1, chat=OTHER_CHAT)])
    assert bindings.groups_of(1) == [(OTHER_CHAT, None), (CHAT, None)]
    assert set(bindings.of_chat(CHAT)) == {None, 42}
    # A topic without its own binding follows the group's.
    assert bindings.for_message(CHAT, 99) == bindings.get(CHAT)
    assert bindings.for_message(CHAT, 42).task_number == 5  # type: ignore[union-attr]
    after = evolve(bindings, unbound(1))
    assert after.groups_of(1) == [(OTHER_CHAT, None)]
    assert bindings.groups_of(1) == [(OTHER_CHAT, None), (CHAT, None)]  # the old value stands


def test_a_chats_topics_and_a_tasks_groups_follow_binds_and_unbinds() -> None:
    bindings = fold([bound(5, thread=42), bound(1), bound(1), bound(5, chat=OTHER_CHAT)])
    assert set(bindings.of_chat(CHAT)) == {42, None}
    assert (bindings.groups_of(1), bindings.groups_of(5)) == (
        [(CHAT, None)],
        [(OTHER_CHAT, None), (CHAT, 42)],
    )
    bindings = fold([unbound(5, thread=42)], bindings)
    assert (set(bindings.of_chat(CHAT)), bindings.groups_of(5)) == ({None}, [(OTHER_CHAT, None)])
    bindings = fold([unbound(1), unbound(5, chat=OTHER_CHAT)], bindings)
    assert (bindings.of_chat(CHAT), bindings.groups_of(1), bindings.groups_of(5)) == ({}, [], [])


def test_a_move_keeps_who_bound_it_and_when() -> None:
    first = bound(1)
    bindings = fold([first, moved(1)])
    binding = bindings.get(SUPERGROUP)
    assert binding is not None
    assert (binding.bound_event_id, binding.bound_by_user_id) == (first.event_id, ANNA.id)
