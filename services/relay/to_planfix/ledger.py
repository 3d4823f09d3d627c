"""Where the relay keeps what it wrote into Planfix for Telegram messages (MongoDB).

``inbound_comments``: one document per comment the bridge posts, ``_id`` = its *run key*: the
source key of the first Telegram message in it, also sent as the comment's ``sourceObjectId``.
It holds the task, the blocks (one per message, see ``comment_html.Block``), the attached
Planfix file ids and, once posted, the comment id. It is written *before* the comment is
posted (the intent) and completed after, so a crash in between is resumed from the stored
HTML and never posts a second, differently combined comment.

``message_comments``: ``_id`` = a Telegram message's source key (or an album's key) -> the run
key holding it, written with the comment id after the post. Edits and reactions find their
comment through it, and a redelivered message that has one was carried (or is being resumed).

Only operations that both MongoDB and nx-27017 serve are used (find, ``$in``, insert, unordered
``insert_many``, $set updates).
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any

import msgspec
from motor.motor_asyncio import AsyncIOMotorDatabase
from pymongo.errors import BulkWriteError, DuplicateKeyError

from services.relay.comment_html import Block


class StoredComment(msgspec.Struct, kw_only=True):
    run_key: str
    task_number: int
    chat_id: int
    blocks: list[Block]
    file_ids: list[int] = []
    comment_id: int | None = None
    media_group_id: str | None = None

    @property
    def message_keys(self) -> list[str]:
        return [block.message_key for block in self.blocks]

    @property
    def link_keys(self) -> list[str]:
        """What leads to this comment in ``message_comments``: its messages and its album."""
        album = [album_key(self.chat_id, self.media_group_id)] if self.media_group_id is not None else []
        return [*self.message_keys, *album]

    def block_for(self, message_key: str) -> Block | None:
        return next((block for block in self.blocks if block.message_key == message_key), None)


_DUPLICATE_KEY = 11000


def album_key(chat_id: int, media_group_id: str) -> str:
    return f"tg:album:{chat_id}:{media_group_id}"


class InboundStore:
    def __init__(self, database: AsyncIOMotorDatabase[Any]) -> None:
        self._comments = database["inbound_comments"]
        self._index = database["message_comments"]

    async def run_of(self, key: str) -> str | None:
        """The run key holding a message (or an album), if it was ever planned into a comment."""
        document = await self._index.find_one({"_id": key})
        return str(document["run"]) if document else None

    async def runs_of(self, keys: Sequence[str]) -> dict[str, str]:
        """``run_of`` for several keys in one round trip: the run keys found, by key."""
        if not keys:
            return {}
        documents = await self._index.find({"_id": {"$in": list(keys)}}).to_list(None)
        return {str(document["_id"]): str(document["run"]) for document in documents}

    async def load(self, run_key: str) -> StoredComment | None:
        document = await self._comments.find_one({"_id": run_key})
        if not document:
            return None
        document["run_key"] = document.pop("_id")
        return msgspec.convert(document, StoredComment)

    async def comment_for_message(self, message_key: str) -> StoredComment | None:
        run_key = await self.run_of(message_key)
        return await self.load(run_key) if run_key else None

    async def plan(self, comment: StoredComment) -> tuple[StoredComment, bool]:
        """Store the intent to post ``comment``; an earlier intent under the same key wins.

        Returns the intent and whether it is an earlier one (left by a failed or cut-off try,
        so the comment may exist in Planfix already). Its messages are linked to it after the
        post (``link_all``); a retry before that finds it here, under the same run key: the
        first message not yet carried, which a redelivery brings first again.
        """
        fields = msgspec.to_builtins(comment)
        fields["_id"] = fields.pop("run_key")
        try:
            await self._comments.insert_one(fields)
        except DuplicateKeyError:
            earlier = await self.load(comment.run_key)
            if earlier is not None:
                return earlier, True
        return comment, False

    async def save(self, comment: StoredComment) -> None:
        """Write the comment's current blocks, files and id (after a post or an update)."""
        fields = msgspec.to_builtins(comment)
        fields.pop("run_key")
        await self._comments.update_one({"_id": comment.run_key}, {"$set": fields})

    async def link(self, key: str, run_key: str) -> None:
        await self._link(key, run_key)

    async def _link(self, key: str, run_key: str) -> None:
        with contextlib.suppress(DuplicateKeyError):
            await self._index.insert_one({"_id": key, "run": run_key})

    async def link_all(self, keys: Sequence[str], run_key: str) -> None:
        """``_link`` each key, in one round trip; a key linked before keeps its run (as in ``_link``)."""
        if len(keys) == 1:
            await self._link(keys[0], run_key)
            return
        try:
            await self._index.insert_many([{"_id": key, "run": run_key} for key in keys], ordered=False)
        except BulkWriteError as error:
            errors = error.details.get("writeErrors", [])
            if not errors or any(write_error.get("code") != _DUPLICATE_KEY for write_error in errors):
                raise
