"""The relay's effect records in MongoDB: what it already did in the outside world.

``effects``: ``_id`` = an effect key (what was carried where); written after the outbound call
succeeded, read before making one, so a redelivered event does not post twice.
``own_comments``: ``_id`` = a Planfix comment id the bridge created; a comment coming back by
webhook with one of these ids is never echoed into the group.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from motor.motor_asyncio import AsyncIOMotorDatabase
from pymongo.errors import DuplicateKeyError

from bridge_lib.eventbus import EventPublisher, forcing_effects
from contracts.events import Event


class EffectStore:
    def __init__(self, database: AsyncIOMotorDatabase[Any]) -> None:
        self._effects = database["effects"]
        self._own_comments = database["own_comments"]

    async def get(self, key: str) -> dict[str, Any] | None:
        if forcing_effects():
            # `bridge events replay --force-effects`: the operator wants the effect again.
            return None
        document: dict[str, Any] | None = await self._effects.find_one({"_id": key})
        return document

    async def get_many(self, keys: Sequence[str]) -> dict[str, dict[str, Any]]:
        """``get`` for several keys in one round trip: the records found, by key."""
        if forcing_effects() or not keys:
            return {}
        documents = await self._effects.find({"_id": {"$in": list(keys)}}).to_list(None)
        return {str(document["_id"]): document for document in documents}

    async def any_key_starting(self, prefix: str) -> bool:
        """Whether any record's key starts with ``prefix`` (a range on ``_id``: one index lookup)."""
        upper = prefix[:-1] + chr(ord(prefix[-1]) + 1)
        return await self._effects.find_one({"_id": {"$gte": prefix, "$lt": upper}}, {"_id": 1}) is not None

    async def record(self, key: str, **result: Any) -> None:
        # Recorded by an earlier delivery of the same event? Then the first record stands.
        with contextlib.suppress(DuplicateKeyError):
            await self._effects.insert_one({"_id": key, "recorded_at": datetime.now(UTC), **result})

    async def remember_own_comment(self, comment_id: int, *, task_number: int, source_object_id: str) -> None:
        await self._own_comments.update_one(
            {"_id": comment_id},
            {"$set": {"task_number": task_number, "source_object_id": source_object_id}},
            upsert=True,
        )

    async def is_own_comment(self, comment_id: int) -> bool:
        return await self._own_comments.find_one({"_id": comment_id}) is not None


async def publish_effect(publisher: EventPublisher, event: Event, *, subject: str, effect_key: str) -> None:
    """Publish the record of an effect; its id derives from the effect key, so a repeat is dropped."""
    await publisher.publish(event, subject=subject, msg_id=f"effect:{effect_key}")
