"""The binder's subscribers and handlers in memory: FastStream's ``TestNatsBroker`` instead of NATS,
a store that applies ``evolve`` to a ``Bindings`` value, a Planfix that knows a few tasks, and a
publisher that records. The same paths through real NATS and MongoDB: test_bridge_end_to_end.py,
test_outbound_end_to_end.py and test_ops.py."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import msgspec
from faststream.nats import NatsBroker, TestNatsBroker

from bridge_lib.planfix import PlanfixTask, TaskNotFound, TaskPeople
from contracts import subjects
from contracts.bindings import Binding, Bindings, evolve, fold
from contracts.events import (
    BindingEvent,
    BindingStoreRebuilt,
    BindingSuspended,
    BindRequested,
    BotMembershipChanged,
    Event,
    RebuildBindingStore,
    TaskBound,
    TaskUnbound,
    UnbindGroup,
    UnbindRejected,
    encode_event,
    event_id_for,
    root_envelope,
    telegram_bind_key,
)
from services.binder.app import bindings_router
from services.binder.bind_policy import BindPolicy
from services.binder.decide import BindOutcome, BindRules
from services.binder.group_life import GroupChange
from services.binder.handlers import BindAccess, Binder, GroupLife, StoreRebuilder
from tests.support import ANNA

CHAT = -1001


@dataclass
class MemoryStore:
    bindings: Bindings = field(default_factory=Bindings)
    outcomes: dict[str, BindOutcome] = field(default_factory=dict)
    changes: dict[str, GroupChange] = field(default_factory=dict)
    titles: dict[int, str] = field(default_factory=dict)

    async def binding_for(self, key: str) -> Binding | None:
        return next((b for b in self.bindings if b.key == key), None)

    async def bindings_of_chat(self, chat_id: int) -> list[Binding]:
        return list(self.bindings.of_chat(chat_id).values())

    async def bindings_of_task(self, task_number: int) -> list[Binding]:
        return [b for b in self.bindings if b.task_number == task_number]

    async def remember_title(self, chat_id: int, title: str) -> None:
        self.titles[chat_id] = title

    async def title_of(self, chat_id: int) -> str | None:
        return self.titles.get(chat_id)

    async def language_of(self, chat_id: int) -> str | None:
        return self.bindings.language_of(chat_id)

    async def all_bindings(self) -> list[Binding]:
        return list(self.bindings)

    async def apply(self, event: BindingEvent) -> None:
        self.bindings = evolve(self.bindings, event)

    async def bind(self, binding: Binding) -> None:
        self.bindings = self.bindings.with_binding(binding)

    async def unbind(self, key: str, *, task_number: int | None = None) -> bool:
        found = await self.binding_for(key)
        if found is None or task_number not in (None, found.task_number):
            return False
        self.bindings = self.bindings.without(found.group)
        return True

    async def outcome_for(self, request_key: str) -> BindOutcome | None:
        return self.outcomes.get(request_key)

    async def save_outcome(self, outcome: BindOutcome) -> None:
        self.outcomes[outcome.request_key] = outcome

    async def change_for(self, key: str) -> GroupChange | None:
        return self.changes.get(key)

    async def save_change(self, change: GroupChange) -> None:
        self.changes[change.key] = change


@dataclass
class Planfix:
    tasks: dict[int, str]
    created: list[str] = field(default_factory=list)
    assigners: list[str | None] = field(default_factory=list)
    people: dict[int, TaskPeople] = field(default_factory=dict)

    async def get_task(self, number: int) -> PlanfixTask:
        if number not in self.tasks:
            raise TaskNotFound("no such task", code=1000)
        return PlanfixTask(number=number, name=self.tasks[number])

    async def get_task_people(self, number: int) -> TaskPeople:
        if number not in self.tasks:
            raise TaskNotFound("no such task", code=1000)
        return self.people.get(number, TaskPeople(number=number))

    async def create_task(self, *, name: str, description: str = "", assigner: str | None = None) -> int:
        self.created.append(name)
        self.assigners.append(assigner)
        number = 500 + len(self.created)
        self.tasks[number] = name
        return number


@dataclass
class Published:
    events: list[tuple[Event, str, str]] = field(default_factory=list)

    async def publish(self, event: Event, *, subject: str, msg_id: str) -> bool:
        stored = all(msg_id != seen for _, _, seen in self.events)
        self.events.append((event, subject, msg_id))
        return stored

    def kinds(self) -> list[str]:
        return [type(event).__name__ for event, _, _ in self.events]


@dataclass
class Binderd:
    """The binder's router over in-memory collaborators."""

    store: MemoryStore = field(default_factory=MemoryStore)
    planfix: Planfix = field(default_factory=lambda: Planfix({42: "Printer", 43: "Scanner"}))
    published: Published = field(default_factory=Published)
    stream: list[BindingEvent] = field(default_factory=list)

    def broker(self) -> NatsBroker:
        rules = BindRules(account_url="https://acme.planfix.com", language="en")
        binder = Binder(
            store=self.store,
            planfix=self.planfix,
            publisher=self.published,
            rules=rules,
            access=BindAccess(policy=BindPolicy.ADMINS),
        )
        group_life = GroupLife(store=self.store, publisher=self.published)
        rebuilder = StoreRebuilder(store=self.store, read_stream=self._read_stream)
        broker = NatsBroker(apply_types=False)
        broker.include_router(bindings_router(binder, group_life, rebuilder))
        return broker

    async def _read_stream(self) -> tuple[Bindings, int]:
        return fold(self.stream), len(self.stream)


def jetstream_reply(seq: int, consumer: str = "binder-bind-requests") -> str:
    """The reply subject JetStream gives a delivery: where ``consume`` reads stream, sequence and attempt."""
    return f"$JS.ACK.TELEGRAM.{consumer}.1.{seq}.{seq}.{time.time_ns()}.0"


async def deliver(
    broker: Any, event: Event, subject: str, seq: int, consumer: str = "binder-bind-requests"
) -> None:
    await broker.publish(encode_event(event), subject=subject, reply_to=jetstream_reply(seq, consumer))


def task_command(message_id: int, **named: Any) -> BindRequested:
    """Anna's /task as the gateway records it, naming ``task_number`` or ``task_title`` in ``named``."""
    key = telegram_bind_key(CHAT, message_id)
    return BindRequested(
        **root_envelope(key, caused_by=key),
        chat_id=CHAT,
        message_id=message_id,
        requested_by=ANNA,
        requester_is_admin=True,
        **named,
    )


def operator_unbind(task_number: int) -> UnbindGroup:
    return UnbindGroup(
        **root_envelope(f"ops:test:{task_number}", caused_by="bridge-cli:ops"),
        chat_id=CHAT,
        task_number=task_number,
        operator="bridge-cli:ops",
    )


async def test_a_task_command_binds_the_group_and_announces_it() -> None:
    binderd = Binderd()
    async with TestNatsBroker(binderd.broker()) as broker:
        await deliver(broker, task_command(1, task_number=42), subjects.telegram_bind_requested(CHAT), seq=1)

    [(event, subject, msg_id)] = binderd.published.events
    assert isinstance(event, TaskBound)
    assert (event.task_number, event.task_title, subject) == (42, "Printer", f"binding.bound.{CHAT}")
    binding = await binderd.store.binding_for(str(CHAT))
    assert binding is not None
    assert (binding.task_number, binding.bound_event_id) == (42, event_id_for(msg_id))


async def test_a_redelivered_task_with_a_title_creates_one_task_and_announces_it_again() -> None:
    binderd = Binderd()
    command = task_command(2, task_title="Broken chair")
    async with TestNatsBroker(binderd.broker()) as broker:
        await deliver(broker, command, subjects.telegram_bind_requested(CHAT), seq=2)
        await deliver(broker, command, subjects.telegram_bind_requested(CHAT), seq=2)

    assert binderd.planfix.created == ["Broken chair"]
    first, again = binderd.published.events
    assert first[2] == again[2]  # the same Nats-Msg-Id: JetStream keeps one
    assert isinstance(first[0], TaskBound)
    assert first[0].created_task


async def test_an_operators_unbind_after_a_rebind_is_refused_and_the_new_binding_stands() -> None:
    # The operator looked at task 42 and said "Go ahead?"; an admin wrote /task 43 meanwhile.
    binderd = Binderd()
    async with TestNatsBroker(binderd.broker()) as broker:
        await deliver(broker, task_command(1, task_number=42), subjects.telegram_bind_requested(CHAT), seq=1)
        await deliver(broker, task_command(2, task_number=43), subjects.telegram_bind_requested(CHAT), seq=2)
        await deliver(broker, operator_unbind(42), subjects.telegram_bind_requested(CHAT), seq=3)
        await deliver(broker, operator_unbind(43), subjects.telegram_bind_requested(CHAT), seq=4)

    assert binderd.published.kinds() == ["TaskBound", "TaskBound", "UnbindRejected", "TaskUnbound"]
    refused, unbound = binderd.published.events[2][0], binderd.published.events[3][0]
    assert isinstance(refused, UnbindRejected)
    assert "task #43" in refused.detail
    assert isinstance(unbound, TaskUnbound)
    assert unbound.unbound_by == "bridge-cli:ops"
    assert list(binderd.store.bindings) == []


async def test_the_bot_removed_suspends_the_groups_binding() -> None:
    binderd = Binderd()
    removed = BotMembershipChanged(
        **root_envelope("tg:membership:test", caused_by="update"),
        chat_id=CHAT,
        status="kicked",
        is_member=False,
    )
    async with TestNatsBroker(binderd.broker()) as broker:
        await deliver(broker, task_command(1, task_number=42), subjects.telegram_bind_requested(CHAT), seq=1)
        await deliver(
            broker,
            removed,
            subjects.telegram_bot_membership_changed(CHAT),
            seq=2,
            consumer="binder-group-changes",
        )

    assert binderd.published.kinds() == ["TaskBound", "BindingSuspended"]
    suspended = binderd.published.events[1][0]
    assert isinstance(suspended, BindingSuspended)
    assert suspended.task_number == 42
    assert [b.suspended for b in binderd.store.bindings] == [True]


async def test_a_rebuild_restores_what_the_stream_says_and_answers_with_the_differences() -> None:
    binderd = Binderd()
    async with TestNatsBroker(binderd.broker()) as broker:
        await deliver(broker, task_command(1, task_number=42), subjects.telegram_bind_requested(CHAT), seq=1)
        binderd.stream = [event for event, _, _ in binderd.published.events if isinstance(event, TaskBound)]
        binderd.store.bindings = Bindings()  # the collection emptied

        async def rebuild(dry_run: bool) -> BindingStoreRebuilt:
            command = RebuildBindingStore(
                **root_envelope(f"ops:rebuild:{dry_run}", caused_by="ops"), operator="ops", dry_run=dry_run
            )
            reply = await broker.request(msgspec.json.encode(command), subject=subjects.BINDER_REBUILD_STORE)
            return msgspec.json.decode(reply.body, type=BindingStoreRebuilt)

        checked = await rebuild(dry_run=True)
        assert [(d.what, d.group_key) for d in checked.differences] == [("restored", str(CHAT))]
        assert list(binderd.store.bindings) == []
        rebuilt = await rebuild(dry_run=False)
        assert (rebuilt.bindings, rebuilt.events, len(rebuilt.differences)) == (1, 1, 1)
        assert [b.task_number for b in binderd.store.bindings] == [42]
        assert (await rebuild(dry_run=True)).differences == []
