"""The relay's Telegram outbox in MongoDB: every message, edit and deletion bound for a group.

A handler stores an item (its ``_id`` is the effect key, so a redelivered event stores nothing
new) and returns; the group's sender drains the items in order, at the group's pace, combining
what waits. ``telegram_outbox``: the items waiting, ordered by ``seq`` (from ``counters``, so the
order survives a group's move to a new chat id); ``progress`` records each finished step of a
multi-message item so a retry resumes where it stopped. ``telegram_outbox_finished``: items sent
or refused for good (dead, with the reason), kept to recognise a redelivered event (for
RETENTION_DAYS). A sent item keeps no text there: what was delivered needs no copy (a dead one
keeps its text, for an operator to resend). Moving an item is an insert there, then a delete
here: one found in both (a crash between) is finished.
"""

from __future__ import annotations

import contextlib
import enum
from datetime import UTC, datetime
from typing import Any

import msgspec
from motor.motor_asyncio import AsyncIOMotorDatabase
from pymongo import ReturnDocument
from pymongo.errors import BulkWriteError, DuplicateKeyError

from bridge_lib.redaction import redact
from contracts.events import PlanfixFile, TelegramMessageKind


class Action(enum.StrEnum):
    SEND = "send"
    EDIT = "edit"
    DELETE = "delete"
    # The group's task card: posted and pinned the first time, edited after (``task_card``).
    CARD = "card"


class ItemState(enum.StrEnum):
    PENDING = "pending"
    DONE = "done"
    DEAD = "dead"


class OutboxItem(msgspec.Struct, kw_only=True):
    key: str
    chat_id: int
    action: Action
    kind: TelegramMessageKind
    correlation_id: str
    causation_id: str
    seq: int = 0
    thread_id: int | None = None
    # Telegram HTML: the whole text of the message (author line included).
    text: str = ""
    # Caption for the files when ``text`` is too long to be one (the author line).
    short_caption: str = ""
    files: list[PlanfixFile] = msgspec.field(default_factory=list)
    task_number: int | None = None
    comment_id: int | None = None
    reply_to_message_id: int | None = None
    state: ItemState = ItemState.PENDING
    # step index (as text, a MongoDB key) -> message ids that step produced
    progress: dict[str, list[int]] = msgspec.field(default_factory=dict)
    attempts: int = 0
    reason: str | None = None
    enqueued_at: datetime | None = None
    # CARD: the stream sequence of the task state the card shows (an older one never wins).
    card_version: int | None = None

    @property
    def combinable(self) -> bool:
        """A plain comment text: may share one message with its neighbours (unless Telegram
        refused it already: then it goes alone, so the refusal is counted against it only)."""
        return (
            self.action is Action.SEND
            and self.kind is TelegramMessageKind.PLANFIX_COMMENT
            and not self.files
            and not self.progress
            and self.reply_to_message_id is None
            and self.attempts == 0
        )


# What a delivered item's record keeps of its content: nothing (the message is in the group).
_DELIVERED: dict[str, Any] = {"text": "", "short_caption": "", "files": []}


def _document(item: OutboxItem) -> dict[str, Any]:
    fields: dict[str, Any] = msgspec.to_builtins(item, builtin_types=(datetime,))
    fields["_id"] = fields.pop("key")
    if fields.get("enqueued_at") is None:
        fields["enqueued_at"] = datetime.now(UTC)
    return fields


def _item(document: dict[str, Any]) -> OutboxItem:
    fields = {k: v for k, v in document.items() if k not in ("_id", "finished_at", "dead_lettered")}
    # Lax: nx-27017 may hand back a boolean as 1/0.
    return msgspec.convert({**fields, "key": document["_id"]}, OutboxItem, strict=False)


class Outbox:
    def __init__(self, database: AsyncIOMotorDatabase[Any]) -> None:
        self._items = database["telegram_outbox"]
        self._finished = database["telegram_outbox_finished"]
        self._counters = database["counters"]

    async def create_indexes(self) -> None:
        await self._items.create_index([("state", 1), ("chat_id", 1), ("seq", 1)], name="pending_by_chat")
        # "When was this group last told X" (the anonymous-admin guidance), without a full scan.
        await self._finished.create_index(
            [("chat_id", 1), ("kind", 1), ("enqueued_at", -1)], name="by_chat_and_kind"
        )

    async def finished_among(self, keys: list[str]) -> set[str]:
        """Which of these items went out already (or were given up)."""
        if not keys:
            return set()
        return {str(d["_id"]) async for d in self._finished.find({"_id": {"$in": keys}}, {"_id": 1})}

    async def enqueue(self, item: OutboxItem, *, finished_checked: bool = False) -> bool:
        """Store the item; False when an item with its key exists already (a redelivery).
        ``finished_checked``: the caller asked ``finished_among`` already."""
        # One still waiting is refused by the insert below (same _id); one gone out is looked up.
        if not finished_checked and await self._finished.find_one({"_id": item.key}, {"_id": 1}) is not None:
            return False
        counter = await self._counters.find_one_and_update(
            {"_id": "telegram_outbox"},
            {"$inc": {"value": 1}},
            upsert=True,
            return_document=ReturnDocument.AFTER,
        )
        item.seq = int(counter["value"])
        try:
            await self._items.insert_one(_document(item))
        except DuplicateKeyError:
            return False
        return True

    async def pending(self, chat_id: int, *, limit: int, after_crash: bool = True) -> list[OutboxItem]:
        """The group's next items in order. ``after_crash``: also drop items a crash left in
        both collections (needed once per taking over a group, not after this replica's own moves)."""
        cursor = self._items.find({"state": ItemState.PENDING.value, "chat_id": chat_id}).sort("seq", 1)
        documents = await cursor.to_list(limit)
        if not documents or not after_crash:
            return [_item(document) for document in documents]
        keys = [document["_id"] for document in documents]
        finished = {d["_id"] async for d in self._finished.find({"_id": {"$in": keys}}, {"_id": 1})}
        for key in finished:  # left behind by a crash mid-move
            await self._items.delete_one({"_id": key})
        return [_item(document) for document in documents if document["_id"] not in finished]

    async def has_pending(self, chat_id: int) -> bool:
        found = await self._items.find_one({"state": ItemState.PENDING.value, "chat_id": chat_id}, {"_id": 1})
        return found is not None

    async def chats_with_pending(self) -> set[int]:
        cursor = self._items.find({"state": ItemState.PENDING.value}, {"chat_id": 1})
        return {int(document["chat_id"]) async for document in cursor}

    async def step_done(self, key: str, step: int, message_ids: list[int]) -> None:
        await self._items.update_one({"_id": key}, {"$set": {f"progress.{step}": message_ids}})

    async def finish(self, items: list[OutboxItem]) -> None:
        """The items went out (``progress`` holding what each step produced): move them, together.

        Built from the items in hand rather than read back: the sender holds the group's lease,
        so nobody else changed them. One insert and one delete for the lot, whatever its size.
        """
        finished_at = datetime.now(UTC)
        documents = [
            {**_document(item), **_DELIVERED, "state": ItemState.DONE.value, "finished_at": finished_at}
            for item in items
        ]
        try:
            await self._finished.insert_many(documents, ordered=False)
        except (BulkWriteError, DuplicateKeyError):
            # Some were moved before and not deleted here (a crash in between): keep the others.
            for document in documents:
                with contextlib.suppress(DuplicateKeyError):
                    await self._finished.insert_one(document)
        await self._items.delete_many({"_id": {"$in": [item.key for item in items]}})

    async def _finish(self, key: str, changes: dict[str, Any]) -> None:
        document = await self._items.find_one({"_id": key})
        if document is None:
            return
        # A duplicate: moved before, and the delete below did not happen.
        with contextlib.suppress(DuplicateKeyError):
            await self._finished.insert_one({**document, **changes, "finished_at": datetime.now(UTC)})
        await self._items.delete_one({"_id": key})

    async def count_attempt(self, key: str, reason: str) -> int:
        document = await self._items.find_one_and_update(
            {"_id": key},
            {"$inc": {"attempts": 1}, "$set": {"reason": redact(reason)}},
            return_document=ReturnDocument.AFTER,
        )
        return int(document["attempts"]) if document else 0

    async def give_up(self, key: str, reason: str) -> None:
        await self._finish(key, {"state": ItemState.DEAD.value, "reason": redact(reason)})

    async def last_sent_of_kind(
        self, chat_id: int, kind: TelegramMessageKind, *, besides: str
    ) -> datetime | None:
        """When the group's latest item of this kind (other than ``besides``) was stored."""
        latest: datetime | None = None
        query = {"chat_id": chat_id, "kind": kind.value, "_id": {"$ne": besides}}
        for collection in (self._items, self._finished):
            async for document in collection.find(query, {"enqueued_at": 1}).sort("enqueued_at", -1).limit(1):
                stored = document.get("enqueued_at")
                if isinstance(stored, datetime):
                    stored = stored if stored.tzinfo else stored.replace(tzinfo=UTC)
                    latest = stored if latest is None else max(latest, stored)
        return latest

    async def dead_not_lettered(self, limit: int = 1000) -> list[OutboxItem]:
        """Items refused for good that no dead letter names yet (set aside before refusals became
        dead letters, or a crash between the two)."""
        query = {"state": ItemState.DEAD.value, "dead_lettered": {"$ne": True}}
        return [_item(document) for document in await self._finished.find(query).to_list(limit)]

    async def mark_dead_lettered(self, key: str) -> None:
        await self._finished.update_one({"_id": key}, {"$set": {"dead_lettered": True}})

    async def revive(self, key: str) -> OutboxItem | None:
        """A message refused for good waits again, last in its group's queue (an operator's
        ``bridge dlq retry``), with a fresh retry budget; the steps it finished stay done.
        None when no refused item has this key (it was sent, or revived already)."""
        document = await self._finished.find_one({"_id": key, "state": ItemState.DEAD.value})
        if document is None:
            return None
        item = _item(document)
        item.state, item.attempts, item.reason = ItemState.PENDING, 0, None
        counter = await self._counters.find_one_and_update(
            {"_id": "telegram_outbox"},
            {"$inc": {"value": 1}},
            upsert=True,
            return_document=ReturnDocument.AFTER,
        )
        item.seq = int(counter["value"])
        # Waiting here first, then gone from there: a crash in between leaves it finished
        # (``pending`` drops such a one), and the retry can be asked again.
        with contextlib.suppress(DuplicateKeyError):
            await self._items.insert_one(_document(item))
        await self._finished.delete_one({"_id": key})
        return item

    async def move_chat(self, old_chat_id: int, new_chat_id: int) -> int:
        """Pending items for a group that became a supergroup go to its new id, in their order."""
        result = await self._items.update_many(
            {"state": ItemState.PENDING.value, "chat_id": old_chat_id}, {"$set": {"chat_id": new_chat_id}}
        )
        return int(result.modified_count)
