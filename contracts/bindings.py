"""The bindings in force: one fold of the BINDING stream, shared by everyone who reads it.

The binder writes ``binding.*``; the relay's directory, the CLI's listing and ``binder rebuild``
all read the stream through ``evolve``, so "which group talks to which task" is decided in one
place. ``Bindings`` is immutable (persistent maps: an event costs O(log n), not a copy of
10,000 groups), so a reader can keep an old value while the fold moves on.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TypeVar

import immutables
import msgspec

from contracts.events import (
    AnyEvent,
    BindingMoved,
    BindingResumed,
    BindingSuspended,
    GroupLanguageChosen,
    TaskBound,
    TaskUnbound,
)

K = TypeVar("K")
V = TypeVar("V")
Group = tuple[int, int | None]  # (chat id, forum topic id or None for the group as a whole)


def group_key(chat_id: int, thread_id: int | None) -> str:
    """A group as one string: "<chat id>", or "<chat id>/<topic id>" for a forum topic."""
    return f"{chat_id}" if thread_id is None else f"{chat_id}/{thread_id}"


class Binding(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    # gc=False: numbers, text and a time only; 10,000 of them need not be walked by every full
    # garbage collection.
    chat_id: int
    thread_id: int | None
    task_number: int
    task_title: str
    bound_at: datetime
    bound_by_user_id: int | None
    # The id of the TaskBound that made it (kept through suspensions and moves).
    bound_event_id: str
    # The bot left the group: kept, but nothing is carried until it is back.
    suspended: bool = False

    @property
    def group(self) -> Group:
        return (self.chat_id, self.thread_id)

    @property
    def key(self) -> str:
        return group_key(self.chat_id, self.thread_id)


class GroupLanguage(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """The language the bridge speaks in a group (a whole chat, its topics alike)."""

    language: str
    # True: chosen with /lang; False: taken from the Telegram language of whoever bound it first.
    chosen: bool = False


def language_after(current: GroupLanguage | None, event: AnyEvent) -> GroupLanguage | None:
    """A group's language after one BINDING event: /lang decides; until then the first binder's
    Telegram language (when it is one the bridge speaks; ``None`` leaves the default)."""
    match event:
        case GroupLanguageChosen():
            return GroupLanguage(language=event.language, chosen=True)
        case TaskBound() if current is None:
            code = (event.requested_by.language_code or "").split("-", 1)[0].lower()
            return GroupLanguage(language=code) if code in SPOKEN_LANGUAGES else None
        case _:
            return current


# What the bridge has catalogues for (bridge_lib.i18n.LANGUAGES; contracts import no library).
SPOKEN_LANGUAGES = ("ru", "en")


@dataclass(frozen=True, slots=True)
class Bindings:
    by_group: immutables.Map[Group, Binding] = field(default_factory=immutables.Map)
    # Indexes kept beside it, so a task's groups and a chat's topics are read, not searched.
    # Tuples, not frozensets: nearly always one member (a frozenset costs 216 bytes, a 1-tuple
    # 48), and the chats bound as a whole share one; 10,000 groups, ~4 MB less.
    _groups_by_task: immutables.Map[int, tuple[Group, ...]] = field(default_factory=immutables.Map)
    _threads_by_chat: immutables.Map[int, tuple[int | None, ...]] = field(default_factory=immutables.Map)
    # chat id -> the language the bridge speaks there (absent: the deployment's BRIDGE_LANGUAGE).
    languages: immutables.Map[int, GroupLanguage] = field(default_factory=immutables.Map)

    def __len__(self) -> int:
        return len(self.by_group)

    def __iter__(self) -> Iterator[Binding]:
        return iter(self.by_group.values())

    def get(self, chat_id: int, thread_id: int | None = None) -> Binding | None:
        return self.by_group.get((chat_id, thread_id))

    def for_message(self, chat_id: int, thread_id: int | None) -> Binding | None:
        """The binding a message follows: its forum topic's own, else the group's."""
        return self.by_group.get((chat_id, thread_id)) or self.by_group.get((chat_id, None))

    def groups_of(self, task_number: int) -> list[Group]:
        groups = self._groups_by_task.get(task_number, ())
        return sorted(groups, key=lambda group: (group[0], group[1] or 0))

    def of_chat(self, chat_id: int) -> dict[int | None, Binding]:
        threads = self._threads_by_chat.get(chat_id, ())
        return {thread: self.by_group[(chat_id, thread)] for thread in threads}

    def language_of(self, chat_id: int) -> str | None:
        found = self.languages.get(chat_id)
        return found.language if found is not None else None

    def with_language(self, chat_id: int, language: GroupLanguage | None) -> Bindings:
        if language is None or self.languages.get(chat_id) == language:
            return self
        return Bindings(
            self.by_group, self._groups_by_task, self._threads_by_chat, self.languages.set(chat_id, language)
        )

    def with_binding(self, binding: Binding) -> Bindings:
        return self.without(binding.group)._put(binding)

    def without(self, group: Group) -> Bindings:
        previous = self.by_group.get(group)
        if previous is None:
            return self
        return Bindings(
            self.by_group.delete(group),
            _remove_member(self._groups_by_task, previous.task_number, group),
            _remove_member(self._threads_by_chat, group[0], group[1], SHARED_THREADS),
            self.languages,
        )

    def _put(self, binding: Binding) -> Bindings:
        group = binding.group
        return Bindings(
            self.by_group.set(group, binding),
            _add_member(self._groups_by_task, binding.task_number, group),
            _add_member(self._threads_by_chat, group[0], group[1], SHARED_THREADS),
            self.languages,
        )


# The topics of a chat bound as a whole (nearly every chat): one tuple shared by all of them.
WHOLE_CHAT: tuple[int | None, ...] = (None,)
SHARED_THREADS = {WHOLE_CHAT: WHOLE_CHAT}


def _add_member(
    index: immutables.Map[K, tuple[V, ...]],
    key: K,
    member: V,
    shared: Mapping[tuple[V, ...], tuple[V, ...]] | None = None,
) -> immutables.Map[K, tuple[V, ...]]:
    """``member`` added to ``key``'s members (``shared``: equal tuples to use instead of a new one)."""
    members = index.get(key, ())
    if member in members:
        return index
    added = (*members, member)
    return index.set(key, shared.get(added, added) if shared else added)


def _remove_member(
    index: immutables.Map[K, tuple[V, ...]],
    key: K,
    member: V,
    shared: Mapping[tuple[V, ...], tuple[V, ...]] | None = None,
) -> immutables.Map[K, tuple[V, ...]]:
    rest = tuple(m for m in index.get(key, ()) if m != member)
    if not rest:
        return index.delete(key)
    return index.set(key, shared.get(rest, rest) if shared else rest)


def evolve(bindings: Bindings, event: AnyEvent) -> Bindings:
    """The bindings after one BINDING event (anything else leaves them as they are)."""
    if isinstance(event, GroupLanguageChosen | TaskBound):
        chat_id = event.chat_id
        bindings = bindings.with_language(chat_id, language_after(bindings.languages.get(chat_id), event))
    if isinstance(event, BindingMoved) and (moved := bindings.languages.get(event.old_chat_id)) is not None:
        bindings = bindings.with_language(event.chat_id, moved)
    match event:
        case TaskBound():
            return bindings.with_binding(_binding_made_by(event, bound_by_user_id=event.requested_by.id))
        case TaskUnbound():
            current = bindings.get(event.chat_id, event.thread_id)
            # Only the binding that was removed: an unbind of task A stored after a rebind to
            # task B (an operator racing an admin's /task B) leaves B in force.
            if current is None or current.task_number != event.task_number:
                return bindings
            return bindings.without(current.group)
        case BindingSuspended() | BindingResumed():
            current = bindings.get(event.chat_id, event.thread_id)
            if current is None:
                return bindings
            suspended = isinstance(event, BindingSuspended)
            return bindings.with_binding(msgspec.structs.replace(current, suspended=suspended))
        case BindingMoved():
            current = bindings.get(event.old_chat_id, event.thread_id)
            # A move of a binding this fold does not hold makes it, in the new chat.
            binding = (
                _binding_made_by(event, bound_by_user_id=None)
                if current is None
                else msgspec.structs.replace(
                    current, chat_id=event.chat_id, task_number=event.task_number, task_title=event.task_title
                )
            )
            return bindings.without((event.old_chat_id, event.thread_id)).with_binding(binding)
        case _:
            return bindings


def _binding_made_by(event: TaskBound | BindingMoved, *, bound_by_user_id: int | None) -> Binding:
    """The binding an event makes in its group (the new chat, for a move)."""
    return Binding(
        chat_id=event.chat_id,
        thread_id=event.thread_id,
        task_number=event.task_number,
        task_title=event.task_title,
        bound_at=event.occurred_at,
        bound_by_user_id=bound_by_user_id,
        bound_event_id=event.event_id,
    )


def touched_groups(event: AnyEvent) -> list[Group]:
    """The groups whose binding ``evolve`` may change for this event (a store reads only these)."""
    match event:
        case TaskBound() | TaskUnbound() | BindingSuspended() | BindingResumed():
            return [(event.chat_id, event.thread_id)]
        case BindingMoved():
            return [(event.old_chat_id, event.thread_id), (event.chat_id, event.thread_id)]
        case _:
            return []


def fold(events: Iterable[AnyEvent], bindings: Bindings | None = None) -> Bindings:
    """The bindings after ``events``, in stream order."""
    current = bindings if bindings is not None else Bindings()
    for event in events:
        current = evolve(current, event)
    return current
