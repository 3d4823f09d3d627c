"""What both wings share about the relay's effects: how one is announced, and which Planfix
comments the relay wrote itself (so the Planfix -> Telegram wing never echoes them back).

``to_planfix.ledger`` is the one writer of ``comment_ledger_leads``; a lead ``pf:comment:<id>``
means the relay posted that comment. ``to_telegram.courier`` is the one writer of
``telegram_sent_comments`` (which bot messages show which Planfix comment); ``BridgedComments``
reads it for the other wing: a reply in Telegram to such a message quotes the comment.
"""

from __future__ import annotations

import html
import re
from typing import Any

import msgspec
from motor.motor_asyncio import AsyncIOMotorDatabase

from bridge_lib.eventbus import EventPublisher
from bridge_lib.i18n import LANGUAGES, translator
from contracts.events import Event, planfix_comment_key

COMMENT_LEADS = "comment_ledger_leads"
SENT_COMMENTS = "telegram_sent_comments"
# How a comment's message begins in Telegram, in each language: "<b>Author</b> · Planfix:" then
# the comment ("· ПланФикс" in Russian).
PLANFIX_AUTHOR_SUFFIXES = tuple(
    translator(language).gettext("{author} · Planfix").format(author="") for language in LANGUAGES
)


class OwnComments:
    def __init__(self, database: AsyncIOMotorDatabase[Any]) -> None:
        self._leads = database[COMMENT_LEADS]

    async def includes(self, comment_id: int) -> bool:
        return bool(await self.among([comment_id]))

    async def among(self, comment_ids: list[int]) -> set[int]:
        """Which of these comments the relay posted (one round trip, none for no ids)."""
        if not comment_ids:
            return set()
        keys = {planfix_comment_key(comment_id): comment_id for comment_id in comment_ids}
        found = self._leads.find({"_id": {"$in": list(keys)}}, {"_id": 1})
        return {keys[str(document["_id"])] async for document in found}


async def publish_effect(publisher: EventPublisher, event: Event, *, subject: str, effect_key: str) -> None:
    """Publish the record of an effect; its id derives from the effect key, so a repeat is dropped."""
    await publisher.publish(event, subject=subject, msg_id=effect_msg_id(effect_key))


def effect_msg_id(effect_key: str) -> str:
    return f"effect:{effect_key}"


class ShownComment(msgspec.Struct, frozen=True):
    comment_id: int
    # The message's Telegram HTML as sent: the author line, then the comment.
    text: str = ""


class BridgedComments:
    """Which Planfix comments a bot message in a group shows."""

    def __init__(self, database: AsyncIOMotorDatabase[Any]) -> None:
        self._sent = database[SENT_COMMENTS]

    async def shown_by(self, chat_id: int, message_id: int) -> list[ShownComment]:
        """The comments the message shows (several when it was a combined one), oldest first."""
        query = {
            "chat_id": chat_id,
            "$or": [
                {"text_message_ids": message_id},
                {"file_message_ids": message_id},
                {"caption_message_id": message_id},
            ],
        }
        documents = await self._sent.find(query, {"comment_id": 1, "text": 1}).to_list(50)
        shown = [ShownComment(int(d["comment_id"]), str(d.get("text") or "")) for d in documents]
        return sorted(shown, key=lambda comment: comment.comment_id)


def quoted_comment(message_html: str) -> tuple[str, str]:
    """The comment's author and its first line, read back from the message that shows it (a
    reply to it in Telegram quotes these, not the bot's author line)."""
    author_line, _, body = message_html.partition(":\n")
    author = _plain(author_line)
    for suffix in PLANFIX_AUTHOR_SUFFIXES:
        author = author.removesuffix(suffix)
    author = author.strip()
    lines = [line.strip() for line in _plain(body).splitlines() if line.strip()]
    return author or "Planfix", lines[0] if lines else ""


def _plain(text_html: str) -> str:
    return html.unescape(re.sub(r"<[^>]+>", "", text_html))
