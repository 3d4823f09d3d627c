"""A group's task card: one message, posted once and pinned, then edited as the task changes.

An outbox item with ``Action.CARD`` carries the card's text and the stream sequence of the
state it shows (``card_version``). Delivered at the group's pace like any other item:

* no card yet for this group and task: send it, record it (``task_cards``, one document per
  group), pin it; when Telegram refuses the pin for want of the right, say once which right is
  wanted (a card is never posted twice: the send is a recorded step of the item);
* a card: edit it, unless it shows a newer state already (the items of one group go in order,
  but a card drawn at bind time may be queued after a newer state's) or this very text (a
  state change outside the card, a repeated read: no call spent of the group's 20 a minute);
* a card someone deleted: post a new one.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgspec
import structlog
from aiogram import Bot
from aiogram.exceptions import TelegramBadRequest
from motor.motor_asyncio import AsyncIOMotorCollection, AsyncIOMotorDatabase

from bridge_lib.i18n import Translator, translator
from services.relay.to_telegram.courier import Courier, StepLog, said
from services.relay.to_telegram.items import OutboxItem
from services.relay.to_telegram.task_texts import PIN_RIGHT_WANTED

log = structlog.get_logger("relay.task_card")


class TaskCard(msgspec.Struct, kw_only=True):
    group_key: str
    chat_id: int
    task_number: int
    message_id: int
    version: int = 0
    pinned: bool = False
    # The shown text's digest ("" in cards saved before it was kept: edited once more).
    text_digest: str = ""


def text_digest(text: str) -> str:
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


def group_key(chat_id: int, thread_id: int | None) -> str:
    return f"{chat_id}/{thread_id or 0}"


@dataclass(frozen=True, kw_only=True, eq=False)
class TaskCards:
    bot: Bot
    courier: Courier
    outbox: StepLog
    database: AsyncIOMotorDatabase[Any]
    texts: Callable[[int], Translator] = lambda chat_id: translator()

    @property
    def _cards(self) -> AsyncIOMotorCollection[Any]:
        return self.database["task_cards"]

    async def card_of(self, chat_id: int, thread_id: int | None) -> TaskCard | None:
        document = await self._cards.find_one({"_id": group_key(chat_id, thread_id)})
        if document is None:
            return None
        fields = {k: v for k, v in document.items() if k != "_id"}
        return msgspec.convert({**fields, "group_key": document["_id"]}, TaskCard, strict=False)

    async def show(self, item: OutboxItem) -> list[int]:
        """Post or edit the group's card for ``item``; the card's message id."""
        assert item.task_number is not None
        version = item.card_version or 0
        card = await self.card_of(item.chat_id, item.thread_id)
        if card is not None and card.task_number == item.task_number and "0" not in item.progress:
            if card.version > version:
                log.info("task_card_newer_already", version=card.version, item_version=version)
                return [card.message_id]
            if card.text_digest == text_digest(item.text):
                log.info("task_card_unchanged", version=version)
                await self._save(item, card.message_id, version, pinned=card.pinned)
                return [card.message_id]
            if await self._edit(item, card.message_id):
                await self._save(item, card.message_id, version, pinned=card.pinned)
                return [card.message_id]
        return [await self._post(item, version)]

    async def _post(self, item: OutboxItem, version: int) -> int:
        if item.progress.get("0"):
            message_id = item.progress["0"][0]  # sent before a crash: pin that one
        else:
            message_id = await self.courier.send_text(item, item.text, reply=False)
            item.progress["0"] = [message_id]
            await self.outbox.step_done(item.key, 0, [message_id])
        await self._save(item, message_id, version, pinned=False)
        pinned = await self._pin(item, message_id)
        await self._save(item, message_id, version, pinned=pinned)
        return message_id

    async def _edit(self, item: OutboxItem, message_id: int) -> bool:
        """False when the card is gone (someone deleted it): a new one is posted."""
        try:
            await self.courier.call(
                item.chat_id,
                1,
                lambda: self.bot.edit_message_text(
                    text=item.text, chat_id=item.chat_id, message_id=message_id
                ),
            )
        except TelegramBadRequest as error:
            if said(error, "not modified"):
                return True
            if said(error, "message to edit not found"):
                log.info("task_card_gone_posting_anew", message_id=message_id)
                return False
            raise
        return True

    async def _pin(self, item: OutboxItem, message_id: int) -> bool:
        try:
            await self.courier.call(
                item.chat_id,
                1,
                lambda: self.bot.pin_chat_message(
                    chat_id=item.chat_id, message_id=message_id, disable_notification=True
                ),
            )
        except TelegramBadRequest as error:
            if not said(error, "not enough rights", "chat_admin_required", "rights"):
                raise
            log.info("task_card_not_pinned_no_right", error=error.message)
            wanted = self.texts(item.chat_id).gettext(PIN_RIGHT_WANTED)
            await self.courier.send_text(item, wanted, reply=False)
            return False
        return True

    async def _save(self, item: OutboxItem, message_id: int, version: int, *, pinned: bool) -> None:
        assert item.task_number is not None
        await self._cards.update_one(
            {"_id": group_key(item.chat_id, item.thread_id)},
            {
                "$set": {
                    "chat_id": item.chat_id,
                    "task_number": item.task_number,
                    "message_id": message_id,
                    "version": version,
                    "pinned": pinned,
                    "text_digest": text_digest(item.text),
                }
            },
            upsert=True,
        )
