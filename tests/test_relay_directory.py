"""The relay's binding directory folds the BINDING stream as the binder does."""

from __future__ import annotations

import asyncio

from contracts.bindings import fold
from contracts.events import AnyEvent, BindingMoved, BindingResumed, BindingSuspended, TaskBound, TaskUnbound
from services.relay.directory import BindingDirectory, BoundTask
from tests.support import envelope, task_bound

CHAT = -1001234
SUPERGROUP, OTHER_CHAT = -1005678, -1009999


def bound(task_number: int, n: int) -> TaskBound:
    return task_bound(CHAT, task_number, envelope(f"e{n}"))


def unbound(task_number: int, n: int) -> TaskUnbound:
    return TaskUnbound(
        **envelope(f"e{n}"), chat_id=CHAT, task_number=task_number, unbound_by="bridge-cli:ops"
    )


def test_an_operators_late_unbind_of_the_old_task_leaves_the_new_binding() -> None:
    # `bridge bindings unbind` of task 1 stored after an admin's `/task 2`: the group keeps task 2,
    # as the binder and the CLI keep it.
    directory = BindingDirectory()
    for event in (bound(1, 1), bound(2, 2), unbound(1, 3)):
        directory.apply(event)
    assert {thread: b.task_number for thread, b in directory.bindings_of(CHAT).items()} == {None: 2}


def test_an_unbind_of_the_current_task_removes_it() -> None:
    directory = BindingDirectory()
    for event in (bound(1, 1), unbound(1, 2)):
        directory.apply(event)
    assert directory.bindings_of(CHAT) == {}


def test_a_change_wakes_its_chat_and_an_event_that_changes_nothing_wakes_nobody() -> None:
    directory = BindingDirectory()
    woken: list[tuple[int, bool]] = []
    directory.on_change(lambda chat_id, suspended: woken.append((chat_id, suspended)))
    for event in (bound(1, 1), unbound(2, 2), bound(2, 3)):
        directory.apply(event)
    assert woken == [(CHAT, False), (CHAT, False)]
    assert directory.bindings_of(CHAT)[None].task_number == 2


def test_the_sender_is_told_when_the_bot_leaves_a_group_and_when_it_is_back() -> None:
    directory = BindingDirectory()
    told: list[tuple[int, bool]] = []
    directory.apply(bound(1, 1))
    directory.on_change(lambda chat_id, suspended: told.append((chat_id, suspended)))
    directory.apply(BindingSuspended(**envelope("e2"), chat_id=CHAT, task_number=1))
    assert directory.suspended_groups() == {CHAT}
    directory.apply(BindingResumed(**envelope("e3"), chat_id=CHAT, task_number=1, task_title="T1"))
    assert told == [(CHAT, True), (CHAT, False)]
    assert directory.suspended_groups() == set()


def test_the_directory_answers_what_the_fold_of_the_same_events_holds() -> None:
    # Its copy keeps no provenance (who bound, when): tasks, titles and suspensions are the fold's.
    events: list[AnyEvent] = [
        bound(1, 1),
        task_bound(CHAT, 5, envelope("e2"), thread_id=42),
        task_bound(OTHER_CHAT, 1, envelope("e3")),
        BindingSuspended(**envelope("e4"), chat_id=CHAT, task_number=1),
        BindingMoved(**envelope("e5"), old_chat_id=CHAT, chat_id=SUPERGROUP, task_number=1, task_title="T1"),
        BindingMoved(
            **envelope("e6"),
            old_chat_id=CHAT,
            chat_id=SUPERGROUP,
            thread_id=42,
            task_number=5,
            task_title="T5",
        ),
        BindingResumed(**envelope("e7"), chat_id=OTHER_CHAT, task_number=1, task_title="T1"),
        unbound(1, 8),
    ]
    directory = BindingDirectory()
    for event in events:
        directory.apply(event)
    bindings = fold(events)
    for chat in (CHAT, SUPERGROUP, OTHER_CHAT):
        expected = {thread: BoundTask.of(binding) for thread, binding in bindings.of_chat(chat).items()}
        assert directory.bindings_of(chat) == expected
        assert directory.is_suspended(chat) == any(b.suspended for b in expected.values())
    for task in (1, 5):
        assert asyncio.run(directory.groups_for(task)) == bindings.groups_of(task)
    assert directory.suspended_groups() == {SUPERGROUP}
