"""Which group talks to which task, learned from the binder's events (never from its database).

An in-memory projection of the BINDING stream: at start it replays the stream from the first
message through an ordered consumer, then follows it live. Lookups are dictionary reads, so
carrying a message costs no database round trip. A miss may only mean "not caught up yet", so
before answering "unbound" the directory waits until it has applied everything the stream held
at the moment of the question.

A suspended binding (the bot was removed from the group) stays in the directory, marked: the
group's outgoing messages wait for it to resume. A group that became a supergroup is found
under its new id even before the binder has moved the binding: a miss looks for the group's
``ChatMigrated`` event (by subject, in the TELEGRAM stream) and answers with the old id's
binding, so no message of the new supergroup is dropped in between.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import msgspec
import nats.js.errors
import structlog
from nats.js.api import DeliverPolicy

from bridge_lib.eventbus import TransientFailure
from contracts.events import (
    BindingMoved,
    BindingResumed,
    BindingSuspended,
    ChatMigrated,
    TaskBound,
    TaskUnbound,
    decode_event,
)
from contracts.subjects import ALL_BINDING_EVENTS, BINDING_STREAM, TELEGRAM_STREAM, telegram_group_migrated

log = structlog.get_logger("relay.directory")


class BoundTask(msgspec.Struct, frozen=True, gc=False):
    # gc=False: only numbers and text inside, and 10,000 of them need not be walked by every
    # full garbage collection.
    task_number: int
    task_title: str
    suspended: bool = False


Group = tuple[int, int | None]  # (chat id, forum topic id or None)


class BindingDirectory:
    def __init__(self) -> None:
        self._task_by_group: dict[Group, BoundTask] = {}
        self._groups_by_task: dict[int, set[Group]] = {}
        # chat id -> its bindings by forum topic: per-chat questions read only that chat's entries.
        self._bindings_by_chat: dict[int, dict[int | None, BoundTask]] = {}
        self._applied_seq = 0
        self._progress = asyncio.Condition()
        self._subscription: Any = None
        self._js: Any = None
        # new chat id -> old chat id, learned from ChatMigrated events on a miss.
        self._migrated_from: dict[int, int] = {}
        self._listeners: list[Callable[[int], None]] = []

    def on_change(self, listener: Callable[[int], None]) -> None:
        """Call ``listener(chat_id)`` whenever a group's binding changes (e.g. to wake its sender)."""
        self._listeners.append(listener)

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

    def apply(self, event: Any) -> None:
        if isinstance(event, TaskBound):
            self._set((event.chat_id, event.thread_id), BoundTask(event.task_number, event.task_title))
        elif isinstance(event, TaskUnbound):
            self.remove(event)
        elif isinstance(event, BindingSuspended | BindingResumed):
            found = self._task_by_group.get((event.chat_id, event.thread_id))
            if found is not None:
                suspended = isinstance(event, BindingSuspended)
                self._set(
                    (event.chat_id, event.thread_id), msgspec.structs.replace(found, suspended=suspended)
                )
        elif isinstance(event, BindingMoved):
            self._remove((event.old_chat_id, event.thread_id))
            self._set((event.chat_id, event.thread_id), BoundTask(event.task_number, event.task_title))
        else:
            return
        for listener in self._listeners:
            listener(event.chat_id)

    def _set(self, group: Group, bound: BoundTask) -> None:
        self._remove(group)
        self._task_by_group[group] = bound
        self._groups_by_task.setdefault(bound.task_number, set()).add(group)
        self._bindings_by_chat.setdefault(group[0], {})[group[1]] = bound

    def _remove(self, group: Group) -> None:
        previous = self._task_by_group.pop(group, None)
        if previous is not None:
            self._groups_by_task.get(previous.task_number, set()).discard(group)
            threads = self._bindings_by_chat.get(group[0], {})
            threads.pop(group[1], None)
            if not threads:
                self._bindings_by_chat.pop(group[0], None)

    def is_suspended(self, chat_id: int) -> bool:
        """The bot left this group: nothing may be sent there until the binding resumes."""
        return any(bound.suspended for bound in self._bindings_by_chat.get(chat_id, {}).values())

    def bindings_of(self, chat_id: int) -> dict[int | None, BoundTask]:
        """Every binding of a chat, by forum topic (None: the group as a whole)."""
        return dict(self._bindings_by_chat.get(chat_id, {}))

    def remove(self, event: TaskUnbound) -> None:
        group = (event.chat_id, event.thread_id)
        current = self._task_by_group.get(group)
        # Only the binding that was removed: a later rebind to another task stands.
        if current is not None and current.task_number == event.task_number:
            self._remove(group)

    async def task_for(self, chat_id: int, thread_id: int | None = None) -> BoundTask | None:
        found = self._lookup_task(chat_id, thread_id)
        if found is None:
            await self.catch_up()
            found = self._lookup_task(chat_id, thread_id)
        if found is None and (old_chat_id := await self._migrated_from_chat(chat_id)) is not None:
            found = self._lookup_task(old_chat_id, thread_id)
        return found

    async def _migrated_from_chat(self, chat_id: int) -> int | None:
        """The group's old chat id if it became a supergroup; only ever asked on a miss."""
        if chat_id in self._migrated_from:
            return self._migrated_from[chat_id]
        try:
            raw = await self._js.get_last_msg(TELEGRAM_STREAM.name, telegram_group_migrated(chat_id))
        except nats.js.errors.NotFoundError:
            return None
        try:
            event = decode_event(raw.data or b"")
        except (msgspec.DecodeError, msgspec.ValidationError):
            return None
        if not isinstance(event, ChatMigrated):
            return None
        self._migrated_from[chat_id] = event.old_chat_id
        return event.old_chat_id

    async def groups_for(self, task_number: int) -> list[Group]:
        groups = self._groups_by_task.get(task_number)
        if not groups:
            await self.catch_up()
            groups = self._groups_by_task.get(task_number)
        return sorted(groups or (), key=lambda group: (group[0], group[1] or 0))

    async def catch_up(self, timeout_s: float = 10.0) -> None:
        """Wait until every binding event stored by now has been applied."""
        try:
            info = await self._js.stream_info(BINDING_STREAM.name)
            target = info.state.last_seq
            async with self._progress:
                await asyncio.wait_for(
                    self._progress.wait_for(lambda: self._applied_seq >= target), timeout_s
                )
        except Exception as error:
            # NATS slow or away: the caller's event is retried later rather than judged unbound.
            raise TransientFailure(f"binding directory could not catch up: {type(error).__name__}") from error

    def _lookup_task(self, chat_id: int, thread_id: int | None) -> BoundTask | None:
        # A forum topic without its own binding follows the group's binding.
        return self._task_by_group.get((chat_id, thread_id)) or self._task_by_group.get((chat_id, None))

    async def _on_message(self, msg: Any) -> None:
        try:
            event = decode_event(msg.data)
        except (msgspec.DecodeError, msgspec.ValidationError) as error:
            log.error("undecodable_binding_event_skipped", error=str(error))
            event = None
        if event is not None:
            self.apply(event)
        async with self._progress:
            self._applied_seq = msg.metadata.sequence.stream
            self._progress.notify_all()
