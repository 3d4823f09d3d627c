"""Which Telegram messages show which Planfix comment, so an edit or deletion can follow it.

``telegram_sent_comments``: one document per comment and group (``<comment>:<chat>:<thread>``):
the text as last shown and the ids of the messages that carry it: the parts of a long text, a
file's caption, the files. ``telegram_combined_messages``: for a message that carries several
comments (a burst combined), the comments' texts in order, so one of them can be edited or
removed while the others stay.
"""

from __future__ import annotations

from typing import Any

import msgspec
from motor.motor_asyncio import AsyncIOMotorDatabase

from services.relay.effects import SENT_COMMENTS


class SentComment(msgspec.Struct, kw_only=True):
    comment_id: int
    chat_id: int
    thread_id: int | None = None
    text: str = ""
    short_caption: str = ""
    # The messages carrying the text, in order; one message shared with other comments when
    # ``combined`` (see ``CombinedMessage``).
    text_message_ids: list[int] = msgspec.field(default_factory=list)
    combined: bool = False
    # The text went as the caption of this file message instead.
    caption_message_id: int | None = None
    file_message_ids: list[int] = msgspec.field(default_factory=list)
    # The Planfix files the comment had when shown (None: shown before they were recorded); a
    # file added in Planfix later is named in the group with a link (``revisions``).
    file_ids: list[int] | None = None


class CombinedPart(msgspec.Struct, kw_only=True):
    comment_id: int
    text: str


class CombinedMessage(msgspec.Struct, kw_only=True):
    chat_id: int
    message_id: int
    parts: list[CombinedPart]


def _sent_id(comment_id: int, chat_id: int, thread_id: int | None) -> str:
    return f"{comment_id}:{chat_id}:{thread_id or 0}"


class SentComments:
    def __init__(self, database: AsyncIOMotorDatabase[Any]) -> None:
        self._sent = database[SENT_COMMENTS]
        self._combined = database["telegram_combined_messages"]

    async def get(self, comment_id: int, chat_id: int, thread_id: int | None) -> SentComment | None:
        document = await self._sent.find_one({"_id": _sent_id(comment_id, chat_id, thread_id)}, {"_id": 0})
        return msgspec.convert(document, SentComment, strict=False) if document else None

    async def save(self, sent: SentComment) -> None:
        key = _sent_id(sent.comment_id, sent.chat_id, sent.thread_id)
        # _id in the document too: nx-27017 does not take it from the filter on an upsert.
        await self._sent.replace_one({"_id": key}, {"_id": key, **msgspec.to_builtins(sent)}, upsert=True)

    async def forget(self, sent: SentComment) -> None:
        await self._sent.delete_one({"_id": _sent_id(sent.comment_id, sent.chat_id, sent.thread_id)})

    async def combined(self, chat_id: int, message_id: int) -> CombinedMessage | None:
        document = await self._combined.find_one({"_id": f"{chat_id}:{message_id}"}, {"_id": 0})
        return msgspec.convert(document, CombinedMessage, strict=False) if document else None

    async def save_combined(self, message: CombinedMessage) -> None:
        key = f"{message.chat_id}:{message.message_id}"
        await self._combined.replace_one(
            {"_id": key}, {"_id": key, **msgspec.to_builtins(message)}, upsert=True
        )

    async def forget_combined(self, chat_id: int, message_id: int) -> None:
        await self._combined.delete_one({"_id": f"{chat_id}:{message_id}"})
