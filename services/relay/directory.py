"""Which group talks to which task: the relay's live copy of ``contracts.bindings`` (the one fold).

At start it replays the BINDING stream through an ordered consumer, then follows it; lookups are
reads of an immutable ``Bindings`` value. A miss may only mean "not caught up yet", so before
answering "unbound" the directory waits until it has applied everything the stream held when
asked. A group that became a supergroup is found under its new id before the binder moves its
binding: a miss looks up the group's ``ChatMigrated`` (TELEGRAM stream) and answers with the old id's.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import msgspec
import structlog

from bridge_lib.followed_fold import FollowedFold
from bridge_lib.i18n import Translator, translator
from bridge_lib.last_event import last_event
from contracts.bindings import Binding, Bindings, GroupLanguage, evolve, touched_groups
from contracts.events import AnyEvent, ChatMigrated
from contracts.subjects import ALL_BINDING_EVENTS, BINDING_STREAM, TELEGRAM_STREAM, telegram_group_migrated

log = structlog.get_logger("relay.directory")


class BoundTask(msgspec.Struct, frozen=True, gc=False):
    """What the relay needs of a binding."""

    task_number: int
    task_title: str
    suspended: bool = False

    @classmethod
    def of(cls, binding: Binding) -> BoundTask:
        return cls(binding.task_number, binding.task_title, binding.suspended)


Group = tuple[int, int | None]  # (chat id, forum topic id or None)

# The relay reads of a binding its task and whether it is suspended, never who made it, when or
# by which event: its copy holds these as the same blank values (~1.8 MB less at 10,000 groups).
# No ``Binding`` leaves this module (lookups answer ``BoundTask``), so the blanks stay inside.
_BLANK_BOUND_AT = datetime(1970, 1, 1, tzinfo=UTC)


def _evolve_without_provenance(bindings: Bindings, event: AnyEvent) -> Bindings:
    """``contracts.bindings.evolve``, then the bindings it made or changed without their provenance."""
    after = evolve(bindings, event)
    if after is bindings:
        return after
    for chat_id, thread_id in touched_groups(event):
        binding = after.get(chat_id, thread_id)
        if binding is not None and binding.bound_event_id:
            after = after.with_binding(
                msgspec.structs.replace(
                    binding, bound_at=_BLANK_BOUND_AT, bound_by_user_id=None, bound_event_id=""
                )
            )
    return after


class BindingDirectory(FollowedFold[Bindings]):
    def __init__(self) -> None:
        super().__init__(
            stream=BINDING_STREAM,
            subject_filter=ALL_BINDING_EVENTS,
            initial=Bindings(),
            evolve=_evolve_without_provenance,
            on_change=self._changed,
        )
        # new chat id -> old chat id, learned from ChatMigrated events on a miss.
        self._migrated_from: dict[int, int] = {}
        self._listeners: list[Callable[[int, bool], None]] = []

    def on_change(self, listener: Callable[[int, bool], None]) -> None:
        """Call ``listener(chat_id, suspended)`` whenever a group's binding changes: the sender
        learns here, not by asking at each turn, whether the bot may write in the group."""
        self._listeners.append(listener)

    @property
    def _bindings(self) -> Bindings:
        return self.value

    def _changed(self, bindings: Bindings, event: AnyEvent) -> None:
        # The event's own chat: for a move, the new chat id (the last group touched).
        touched = touched_groups(event)
        if not touched:
            return  # a group's language: nothing waits on it
        chat_id = touched[-1][0]
        suspended = self.is_suspended(chat_id)
        for listener in self._listeners:
            listener(chat_id, suspended)

    def language_of(self, chat_id: int) -> GroupLanguage | None:
        """The language chosen for the group (/lang, or its first binder's); None: the default."""
        return self._bindings.languages.get(chat_id)

    def is_suspended(self, chat_id: int) -> bool:
        """The bot left this group: nothing may be sent there until the binding resumes."""
        return any(binding.suspended for binding in self._bindings.of_chat(chat_id).values())

    def suspended_groups(self) -> set[int]:
        return {chat_id for (chat_id, _), binding in self._bindings.by_group.items() if binding.suspended}

    def bindings_of(self, chat_id: int) -> dict[int | None, BoundTask]:
        """Every binding of a chat, by forum topic (None: the group as a whole)."""
        return {thread: BoundTask.of(binding) for thread, binding in self._bindings.of_chat(chat_id).items()}

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
        found = await last_event(self._js, TELEGRAM_STREAM.name, telegram_group_migrated(chat_id))
        if found is None or not isinstance(found.event, ChatMigrated):
            return None
        self._migrated_from[chat_id] = found.event.old_chat_id
        return found.event.old_chat_id

    async def groups_for(self, task_number: int) -> list[Group]:
        groups = self._bindings.groups_of(task_number)
        if not groups:
            await self.catch_up()
            groups = self._bindings.groups_of(task_number)
        return groups

    def _lookup_task(self, chat_id: int, thread_id: int | None) -> BoundTask | None:
        binding = self._bindings.for_message(chat_id, thread_id)
        return BoundTask.of(binding) if binding is not None else None


def group_texts(directory: BindingDirectory, default_language: str) -> Callable[[int], Translator]:
    """chat id -> the translator of the group's language (else ``default_language``)."""

    def texts(chat_id: int) -> Translator:
        chosen = directory.language_of(chat_id)
        return translator(chosen.language if chosen is not None else default_language)

    return texts
