"""The comment ledger (MongoDB): one entry per Planfix comment the relay posts for Telegram.

``comment_ledger``: ``_id`` = the comment's *run key* (the first message's source key, from which
its ``sourceObjectId`` derives). The entry is the plan (blocks, files, what each upload gave),
stored *before* the post, so a crash in between resumes the same comment and never posts a
second, differently combined one (while its files upload it is marked ``uploading``: nothing
of it can be posted yet). After the post it gains the comment id, the keys that lead to it
and the message ids of the events announcing it.

``comment_ledger_leads``: ``_id`` = a key that leads to an entry (a message, an album, the
Planfix comment id as ``pf:comment:<id>``) -> its run key; written with the comment id, after
the post. (nx-27017 cannot index an array, so the keys are looked up here, by ``_id``.)
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any

import msgspec
from motor.motor_asyncio import AsyncIOMotorDatabase
from pymongo.errors import BulkWriteError, DuplicateKeyError

from contracts.events import planfix_comment_key
from services.relay.effects import COMMENT_LEADS
from services.relay.to_planfix.from_telegram_html import Block

_DUPLICATE_KEY = 11000


class Upload(msgspec.Struct, kw_only=True):
    """What uploading one Telegram file to Planfix gave: a Planfix file, or a note saying why not."""

    file_id: int | None = None
    note: str | None = None


class LedgerEntry(msgspec.Struct, kw_only=True):
    run_key: str
    task_number: int
    chat_id: int
    blocks: list[Block]
    file_ids: list[int] = []
    media_group_id: str | None = None
    # file_unique_id -> its upload; a retry reuses it instead of uploading again.
    uploads: dict[str, Upload] = {}
    # Files are being uploaded for this plan: nothing of it is posted yet.
    uploading: bool = False
    comment_id: int | None = None
    keys: list[str] = []
    published: list[str] = []
    # Whom the comment is written as ("user:N", "contact:N"; None: the robot, naming authors),
    # and the employees its messages mention (told beside the configured recipients).
    owner: str | None = None
    mentioned: list[str] = []
    # When a post of it got no answer (timed out, cut by a stop; wall clock): Planfix may still
    # make that comment, so it is looked for a while before being posted again.
    unsure_since: float | None = None

    def block_for(self, message_key: str) -> Block | None:
        return next((block for block in self.blocks if block.message_key == message_key), None)


class CommentLedger:
    def __init__(self, database: AsyncIOMotorDatabase[Any]) -> None:
        self._entries = database["comment_ledger"]
        self._leads = database[COMMENT_LEADS]

    async def leads(self, keys: Sequence[str]) -> dict[str, str]:
        """The run keys these keys lead to (those found), in one round trip."""
        if not keys:
            return {}
        documents = await self._leads.find({"_id": {"$in": list(keys)}}).to_list(None)
        return {str(document["_id"]): str(document["run"]) for document in documents}

    async def load(self, run_key: str) -> LedgerEntry | None:
        document = await self._entries.find_one({"_id": run_key})
        if not document:
            return None
        document["run_key"] = document.pop("_id")
        return msgspec.convert(document, LedgerEntry, strict=False)

    async def record_upload(self, run_key: str, file_unique_id: str, upload: Upload) -> None:
        await self._entries.update_one(
            {"_id": run_key}, {"$set": {f"uploads.{file_unique_id}": msgspec.to_builtins(upload)}}
        )

    async def plan(self, entry: LedgerEntry) -> tuple[LedgerEntry, bool]:
        """Store the intent to post ``entry``; an earlier intent under the same run key wins.

        Returns the intent and whether it is an earlier one (left by a failed or cut-off try,
        so the comment may exist in Planfix already).
        """
        fields = msgspec.to_builtins(entry)
        fields["_id"] = fields.pop("run_key")
        try:
            await self._entries.insert_one(fields)
        except DuplicateKeyError:
            earlier = await self.load(entry.run_key)
            if earlier is not None:
                return earlier, True
        return entry, False

    async def save(self, entry: LedgerEntry) -> None:
        """Write the entry's blocks, files, comment id and events (after a post or a rewrite)."""
        fields = msgspec.to_builtins(entry)
        fields.pop("run_key")
        await self._entries.update_one({"_id": entry.run_key}, {"$set": fields})

    async def mark_unsure(self, run_key: str, since: float) -> None:
        await self._entries.update_one({"_id": run_key}, {"$set": {"unsure_since": since}})

    async def lead_here(self, entry: LedgerEntry, keys: Sequence[str]) -> None:
        """Make ``keys`` (and the posted comment's id) lead to the entry; a key leading elsewhere
        already keeps its run. One round trip."""
        assert entry.comment_id is not None
        leads = [*keys, planfix_comment_key(entry.comment_id)]
        if len(leads) == 1:
            with contextlib.suppress(DuplicateKeyError):
                await self._leads.insert_one({"_id": leads[0], "run": entry.run_key})
            return
        try:
            await self._leads.insert_many(
                [{"_id": key, "run": entry.run_key} for key in leads], ordered=False
            )
        except BulkWriteError as error:
            errors = error.details.get("writeErrors", [])
            if not errors or any(write_error.get("code") != _DUPLICATE_KEY for write_error in errors):
                raise
