"""The binder's MongoDB collections; only the binder reads or writes them.

``bindings``: one document per group (unique ``group_key``): which task the group talks to.
``bind_requests``: one document per ``/task`` or ``/unbind`` message (``_id`` = its source
key): what the binder decided, and the task it created, so a redelivered request never creates
a second task.
``group_changes``: one document per bot membership change or migration (``_id`` = its source
key): the bindings it suspended, resumed or moved, so a redelivery publishes the same events.
Only operations that both MongoDB and nx-27017 serve are used (CRUD, unique indexes, upserts).
nx-27017 hands back a boolean written with ``$set`` as 1/0, so documents are read in msgspec's
lax mode (``strict=False``), which takes 1/0 for a bool.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec
from motor.motor_asyncio import AsyncIOMotorDatabase


def group_key(chat_id: int, thread_id: int | None) -> str:
    # A forum topic is its own group for binding purposes; a plain group has no thread.
    return f"{chat_id}" if thread_id is None else f"{chat_id}/{thread_id}"


class Binding(msgspec.Struct, frozen=True, kw_only=True):
    group_key: str
    chat_id: int
    thread_id: int | None
    task_number: int
    task_title: str
    bound_at: datetime
    bound_by_user_id: int
    request_key: str
    # The bot was removed from the group: kept, but nothing is carried until it is back.
    suspended: bool = False


class BindOutcome(msgspec.Struct, frozen=True, kw_only=True):
    """What the binder decided for one request; enough to publish the same event again."""

    request_key: str
    created_task_number: int | None = None
    decided: str | None = None  # "bound" | "rejected"
    task_number: int | None = None
    task_title: str | None = None
    previous_task_number: int | None = None
    reason: str | None = None
    detail: str | None = None


class GroupChange(msgspec.Struct, frozen=True, kw_only=True):
    """What the binder did for one membership change or migration: the bindings it touched."""

    key: str
    bindings: list[Binding]


class BindingStore:
    def __init__(self, database: AsyncIOMotorDatabase[Any]) -> None:
        self._bindings = database["bindings"]
        self._requests = database["bind_requests"]
        self._changes = database["group_changes"]

    async def create_indexes(self) -> None:
        await self._bindings.create_index("group_key", unique=True, name="one_task_per_group")
        await self._bindings.create_index("task_number", name="by_task")

    async def binding_for(self, key: str) -> Binding | None:
        document = await self._bindings.find_one({"group_key": key}, {"_id": 0})
        return msgspec.convert(document, Binding, strict=False) if document else None

    async def bind(self, binding: Binding) -> None:
        """Store the binding, replacing the group's previous one (a group talks to one task)."""
        await self._bindings.update_one(
            {"group_key": binding.group_key},
            {"$set": msgspec.to_builtins(binding, builtin_types=(datetime,))},
            upsert=True,
        )

    async def all_bindings(self) -> list[Binding]:
        """Every stored binding (for `bridge binder rebuild` and `bridge bindings`)."""
        documents = await self._bindings.find({}, {"_id": 0}).to_list(None)
        return [msgspec.convert(document, Binding) for document in documents]

    async def unbind(self, key: str, *, task_number: int | None = None) -> bool:
        """Remove the group's binding (only if it still points at ``task_number``, when given);
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

    async def bindings_of_chat(self, chat_id: int) -> list[Binding]:
        cursor = self._bindings.find({"chat_id": chat_id}, {"_id": 0})
        return [msgspec.convert(document, Binding, strict=False) async for document in cursor]

    async def set_suspended(self, key: str, suspended: bool) -> None:
        await self._bindings.update_one({"group_key": key}, {"$set": {"suspended": suspended}})

    async def move(self, binding: Binding, new_chat_id: int) -> Binding:
        """The same binding under a new chat id (the group became a supergroup)."""
        moved = msgspec.structs.replace(
            binding, chat_id=new_chat_id, group_key=group_key(new_chat_id, binding.thread_id)
        )
        await self.bind(moved)
        await self._bindings.delete_one({"group_key": binding.group_key})
        return moved

    async def change_for(self, key: str) -> GroupChange | None:
        document = await self._changes.find_one({"_id": key})
        if not document:
            return None
        document["key"] = document.pop("_id")
        return msgspec.convert(document, GroupChange, strict=False)

    async def save_change(self, change: GroupChange) -> None:
        fields = msgspec.to_builtins(change, builtin_types=(datetime,))
        key = fields.pop("key")
        # _id in the document too: nx-27017 does not take it from the filter on an upsert.
        await self._changes.replace_one({"_id": key}, {"_id": key, **fields}, upsert=True)
