"""The binder's MongoDB collections; only the binder reads or writes them.

``bindings``: one document per group (unique ``group_key``), changed only by ``apply``-ing the
binder's own binding events with ``contracts.bindings.evolve``, so it holds what the BINDING
stream adds up to. ``bind_requests``: the outcome per request (``_id``: its source key) and the
task it created. ``group_changes``: the steps per membership change or migration (``_id``: the
cause's event id). Both let a redelivery publish the same events.

Only what both MongoDB and nx-27017 serve (CRUD, unique indexes, upserts). nx-27017 hands a
boolean written with ``$set`` back as 1/0, so documents are read in msgspec's lax mode.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec
from motor.motor_asyncio import AsyncIOMotorDatabase

from bridge_lib.documents import load_keyed, store_keyed
from contracts.bindings import (
    Binding,
    Bindings,
    GroupLanguage,
    evolve,
    group_key,
    language_after,
    touched_groups,
)
from contracts.events import BindingEvent, BindingMoved
from services.binder.decide import BindOutcome
from services.binder.group_life import GroupChange

__all__ = ["BindOutcome", "Binding", "BindingStore", "GroupChange", "TaskNotice", "group_key"]

_WITHOUT_IDS = {"_id": 0, "group_key": 0}


def _binding(document: dict[str, Any]) -> Binding:
    return msgspec.convert(document, Binding, strict=False)


class TaskNotice(msgspec.Struct, frozen=True, kw_only=True):
    """The comment announcing a bind or unbind in the task: posting, then posted."""

    key: str
    task_number: int
    posted: bool = False
    comment_id: int | None = None


class BindingStore:
    def __init__(self, database: AsyncIOMotorDatabase[Any]) -> None:
        self._bindings = database["bindings"]
        self._requests = database["bind_requests"]
        self._changes = database["group_changes"]
        self._notices = database["task_notices"]
        self._titles = database["group_titles"]
        # chat id -> the language the bridge speaks there (``contracts.bindings.language_after``).
        self._languages = database["group_languages"]

    async def create_indexes(self) -> None:
        await self._bindings.create_index("group_key", unique=True, name="one_task_per_group")
        await self._bindings.create_index("task_number", name="by_task")
        await self._bindings.create_index("chat_id", name="by_chat")

    async def binding_for(self, key: str) -> Binding | None:
        document = await self._bindings.find_one({"group_key": key}, _WITHOUT_IDS)
        return _binding(document) if document else None

    async def bindings_of_chat(self, chat_id: int) -> list[Binding]:
        cursor = self._bindings.find({"chat_id": chat_id}, _WITHOUT_IDS)
        return [_binding(document) async for document in cursor]

    async def bindings_of_task(self, task_number: int) -> list[Binding]:
        cursor = self._bindings.find({"task_number": task_number}, _WITHOUT_IDS)
        return [_binding(document) async for document in cursor]

    async def all_bindings(self) -> list[Binding]:
        return [_binding(document) async for document in self._bindings.find({}, _WITHOUT_IDS)]

    async def apply(self, event: BindingEvent) -> None:
        """Bring the bindings an event touches to what ``evolve`` makes of them."""
        await self._apply_language(event)
        groups = touched_groups(event)
        before = Bindings()
        for chat_id, thread_id in groups:
            if (found := await self.binding_for(group_key(chat_id, thread_id))) is not None:
                before = before.with_binding(found)
        after = evolve(before, event)
        for chat_id, thread_id in groups:
            old, new = before.get(chat_id, thread_id), after.get(chat_id, thread_id)
            if new is None and old is not None:
                await self.unbind(group_key(chat_id, thread_id), task_number=old.task_number)
            elif new is not None and new != old:
                await self.bind(new)

    async def _apply_language(self, event: BindingEvent) -> None:
        chat_id = event.chat_id
        current = await self._language(chat_id)
        after = language_after(current, event)
        if isinstance(event, BindingMoved) and current is None:
            after = await self._language(event.old_chat_id)  # the language follows the group
        if after is not None and after != current:
            fields = msgspec.to_builtins(after)
            await self._languages.replace_one({"_id": chat_id}, {"_id": chat_id, **fields}, upsert=True)

    async def _language(self, chat_id: int) -> GroupLanguage | None:
        document = await self._languages.find_one({"_id": chat_id})
        if not document:
            return None
        document.pop("_id", None)
        return msgspec.convert(document, GroupLanguage, strict=False)

    async def language_of(self, chat_id: int) -> str | None:
        """The group's language as the binder's own events made it; None: the default."""
        document = await self._languages.find_one({"_id": chat_id})
        return str(document["language"]) if document else None

    async def bind(self, binding: Binding) -> None:
        """Store the binding, replacing the group's previous one (a group talks to one task)."""
        key = binding.key
        document = msgspec.to_builtins(binding, builtin_types=(datetime,))
        await self._bindings.update_one(
            {"group_key": key}, {"$set": {"group_key": key, **document}}, upsert=True
        )

    async def unbind(self, key: str, *, task_number: int | None = None) -> bool:
        """Remove the group's binding (only while it points at ``task_number``, when given);
        True when one was removed."""
        query: dict[str, object] = {"group_key": key}
        if task_number is not None:
            query["task_number"] = task_number
        result = await self._bindings.delete_one(query)
        return bool(result.deleted_count)

    async def outcome_for(self, request_key: str) -> BindOutcome | None:
        document = await self._requests.find_one({"_id": request_key})
        if not document:
            return None
        document["request_key"] = document.pop("_id")
        return msgspec.convert(document, BindOutcome)

    async def save_outcome(self, outcome: BindOutcome) -> None:
        fields = msgspec.to_builtins(outcome)
        request_key = fields.pop("request_key")
        await self._requests.update_one({"_id": request_key}, {"$set": fields}, upsert=True)

    async def change_for(self, key: str) -> GroupChange | None:
        return await load_keyed(self._changes, key, GroupChange)

    async def save_change(self, change: GroupChange) -> None:
        await store_keyed(self._changes, change)

    async def notice_for(self, key: str) -> TaskNotice | None:
        """What became of the bind/unbind comment ``key`` (``task_notices``)."""
        return await load_keyed(self._notices, key, TaskNotice)

    async def save_notice(self, notice: TaskNotice) -> None:
        await store_keyed(self._notices, notice)

    async def remember_title(self, chat_id: int, title: str) -> None:
        """The group's title as its last /task gave it, for the unbind comment's wording."""
        await self._titles.replace_one({"_id": chat_id}, {"_id": chat_id, "title": title}, upsert=True)

    async def title_of(self, chat_id: int) -> str | None:
        document = await self._titles.find_one({"_id": chat_id})
        return str(document["title"]) if document else None
