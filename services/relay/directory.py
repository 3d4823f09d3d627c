"""Which group talks to which task, learned from the binder's events (never from its database).

An in-memory projection of the BINDING stream: at start it replays the stream from the first
message through an ordered consumer, then follows it live. Lookups are dictionary reads, so
carrying a message costs no database round trip. A miss may only mean "not caught up yet", so
before answering "unbound" the directory waits until it has applied everything the stream held
at the moment of the question.
"""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec
import structlog
from nats.js.api import DeliverPolicy

from contracts.events import TaskBound, TaskUnbound, decode_event
from contracts.subjects import ALL_BINDING_EVENTS, BINDING_STREAM

log = structlog.get_logger("relay.directory")


class BoundTask(msgspec.Struct, frozen=True):
    task_number: int
    task_title: str


Group = tuple[int, int | None]  # (chat id, forum topic id or None)


class BindingDirectory:
    def __init__(self) -> None:
        self._task_by_group: dict[Group, BoundTask] = {}
        self._groups_by_task: dict[int, set[Group]] = {}
        self._applied_seq = 0
        self._progress = asyncio.Condition()
        self._subscription: Any = None
        self._js: Any = None

    async def start(self, js: Any) -> None:
        self._js = js
        self._subscription = await js.subscribe(
            ALL_BINDING_EVENTS, ordered_consumer=True, deliver_policy=DeliverPolicy.ALL, cb=self._on_message
        )
        await self.catch_up()
        log.info("binding_directory_ready", groups=len(self._task_by_group))

    async def stop(self) -> None:
        if self._subscription is not None:
            await self._subscription.unsubscribe()

    def apply(self, event: TaskBound) -> None:
        group = (event.chat_id, event.thread_id)
        previous = self._task_by_group.get(group)
        if previous is not None:
            self._groups_by_task.get(previous.task_number, set()).discard(group)
        self._task_by_group[group] = BoundTask(event.task_number, event.task_title)
        self._groups_by_task.setdefault(event.task_number, set()).add(group)

    def remove(self, event: TaskUnbound) -> None:
        group = (event.chat_id, event.thread_id)
        current = self._task_by_group.get(group)
        # Only the binding that was removed: a later rebind to another task stands.
        if current is not None and current.task_number == event.task_number:
            del self._task_by_group[group]
            self._groups_by_task.get(current.task_number, set()).discard(group)

    async def task_for(self, chat_id: int, thread_id: int | None = None) -> BoundTask | None:
        found = self._lookup_task(chat_id, thread_id)
        if found is None:
            await self.catch_up()
            found = self._lookup_task(chat_id, thread_id)
        return found

    async def groups_for(self, task_number: int) -> list[Group]:
        groups = self._groups_by_task.get(task_number)
        if not groups:
            await self.catch_up()
            groups = self._groups_by_task.get(task_number)
        return sorted(groups or (), key=lambda group: (group[0], group[1] or 0))

    async def catch_up(self, timeout_s: float = 10.0) -> None:
        """Wait until every binding event stored by now has been applied."""
        info = await self._js.stream_info(BINDING_STREAM.name)
        target = info.state.last_seq
        async with self._progress:
            await asyncio.wait_for(self._progress.wait_for(lambda: self._applied_seq >= target), timeout_s)

    def _lookup_task(self, chat_id: int, thread_id: int | None) -> BoundTask | None:
        # A forum topic without its own binding follows the group's binding.
        return self._task_by_group.get((chat_id, thread_id)) or self._task_by_group.get((chat_id, None))

    async def _on_message(self, msg: Any) -> None:
        try:
            event = decode_event(msg.data)
        except (msgspec.DecodeError, msgspec.ValidationError) as error:
            log.error("undecodable_binding_event_skipped", error=str(error))
            event = None
        if isinstance(event, TaskBound):
            self.apply(event)
        elif isinstance(event, TaskUnbound):
            self.remove(event)
        async with self._progress:
            self._applied_seq = msg.metadata.sequence.stream
            self._progress.notify_all()
