"""The binder's store against the embedded nx-27017, or real MongoDB when MONGODB_URL is set."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from motor.motor_asyncio import AsyncIOMotorClient
from pymongo.errors import DuplicateKeyError

from contracts.bindings import fold
from contracts.events import (
    BindingEvent,
    BindingMoved,
    BindingSuspended,
    GroupLanguageChosen,
    TaskBound,
    TaskUnbound,
    TelegramUser,
    root_envelope,
)
from services.binder.store import BindingStore, BindOutcome, group_key
from tests.support import LoopThread, binding, task_bound


@pytest.fixture
def store(loop: LoopThread, mongo_url: str) -> Iterator[tuple[BindingStore, Any]]:
    client: AsyncIOMotorClient[dict[str, Any]] = AsyncIOMotorClient(
        mongo_url, tz_aware=True, io_loop=loop.loop
    )
    name = f"test_binder_{uuid.uuid4().hex[:8]}"
    database = client[name]
    binding_store = BindingStore(database)
    loop.run(binding_store.create_indexes())
    try:
        yield binding_store, database
    finally:
        loop.run(client.drop_database(name))
        client.close()


def test_binding_again_replaces_the_groups_task(loop: LoopThread, store: tuple[BindingStore, Any]) -> None:
    binding_store, database = store
    loop.run(binding_store.bind(binding(-100, 1)))
    loop.run(binding_store.bind(binding(-100, 2)))

    found = loop.run(binding_store.binding_for(group_key(-100, None)))
    assert found is not None
    assert found.task_number == 2
    assert loop.run(database["bindings"].count_documents({})) == 1


def test_one_task_per_group_is_enforced_by_a_unique_index(
    loop: LoopThread, store: tuple[BindingStore, Any]
) -> None:
    binding_store, database = store
    loop.run(binding_store.bind(binding(-100, 1)))
    with pytest.raises(DuplicateKeyError):
        loop.run(database["bindings"].insert_one({"group_key": group_key(-100, None), "task_number": 9}))


def test_an_outcome_is_remembered_per_request(loop: LoopThread, store: tuple[BindingStore, Any]) -> None:
    binding_store, _ = store
    loop.run(binding_store.save_outcome(BindOutcome(request_key="tg:bind:-1:5", created_task_number=77)))
    loop.run(
        binding_store.save_outcome(
            BindOutcome(
                request_key="tg:bind:-1:5",
                created_task_number=77,
                decided="bound",
                task_number=77,
                task_title="t",
            )
        )
    )
    outcome = loop.run(binding_store.outcome_for("tg:bind:-1:5"))
    assert outcome == BindOutcome(
        request_key="tg:bind:-1:5", created_task_number=77, decided="bound", task_number=77, task_title="t"
    )
    assert loop.run(binding_store.outcome_for("tg:bind:-1:6")) is None


def _bound(chat_id: int, task_number: int) -> TaskBound:
    return task_bound(
        chat_id, task_number, root_envelope(f"test:bound:{chat_id}:{task_number}", caused_by="test")
    )


def _unbound(chat_id: int, task_number: int) -> TaskUnbound:
    return TaskUnbound(
        **root_envelope(f"test:unbound:{chat_id}:{task_number}", caused_by="test"),
        chat_id=chat_id,
        task_number=task_number,
        unbound_by="test",
    )


def test_the_store_applies_binding_events_as_the_fold_does(
    loop: LoopThread, store: tuple[BindingStore, Any]
) -> None:
    binding_store, _ = store
    events: list[BindingEvent] = [
        _bound(-100, 1),
        _bound(-100, 2),
        _unbound(-100, 1),  # late: the group is bound to task 2 now
        _bound(-200, 3),
        BindingSuspended(**root_envelope("test:suspended", caused_by="test"), chat_id=-200, task_number=3),
        _bound(-300, 4),
        BindingMoved(
            **root_envelope("test:moved", caused_by="test"),
            old_chat_id=-300,
            chat_id=-400,
            task_number=4,
            task_title="t",
        ),
        _bound(-500, 5),
        _unbound(-500, 5),
    ]
    for event in events:
        loop.run(binding_store.apply(event))

    stored = loop.run(binding_store.all_bindings())
    folded = fold(events)
    assert {(b.group, b.task_number, b.suspended) for b in stored} == {
        (b.group, b.task_number, b.suspended) for b in folded
    }
    assert {(b.group, b.task_number, b.suspended) for b in stored} == {
        ((-100, None), 2, False),
        ((-200, None), 3, True),
        ((-400, None), 4, False),
    }
    assert loop.run(binding_store.bindings_of_chat(-200))[0].suspended is True


def test_the_store_keeps_each_groups_language_as_the_fold_does(
    loop: LoopThread, store: tuple[BindingStore, Any]
) -> None:
    binding_store, _ = store

    def bound_by(chat_id: int, language_code: str | None, key: str) -> TaskBound:
        return TaskBound(
            **root_envelope(f"test:{key}", caused_by="test"), chat_id=chat_id, task_number=7, task_title="t",
            created_task=False, requested_by=TelegramUser(id=1, full_name="A", language_code=language_code),
        )  # fmt: skip

    events: list[BindingEvent] = [
        bound_by(-100, "en-GB", "a"),
        bound_by(-100, "ru", "b"),  # the first binder's language stays
        bound_by(-200, None, "c"),  # none known: the default
        bound_by(-300, "ru", "d"),
        GroupLanguageChosen(**root_envelope("test:lang", caused_by="test"), chat_id=-300, language="en"),
        BindingMoved(
            **root_envelope("test:moved", caused_by="test"),
            old_chat_id=-300,
            chat_id=-400,
            task_number=7,
            task_title="t",
        ),
    ]
    for event in events:
        loop.run(binding_store.apply(event))

    folded = fold(events)
    for chat_id, language in ((-100, "en"), (-200, None), (-300, "en"), (-400, "en")):
        assert loop.run(binding_store.language_of(chat_id)) == language == folded.language_of(chat_id)
