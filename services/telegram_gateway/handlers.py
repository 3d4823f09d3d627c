"""What the gateway does with each group message: store it as an event, or explain why not.

One update is handled at a time and confirmed to Telegram only after its event is stored, so a
failed publish must raise out of the handler (see ``polling.py``); nothing here swallows it.
"""

from __future__ import annotations

import structlog
from aiogram import F, Router
from aiogram.enums import ChatType
from aiogram.types import Message, Update

from bridge_lib.eventbus import EventPublisher
from contracts import subjects
from contracts.events import (
    TelegramMessageReceived,
    TelegramUser,
    root_envelope,
    telegram_message_key,
)

log = structlog.get_logger("telegram_gateway")

GROUP_CHATS = F.chat.type.in_({ChatType.GROUP, ChatType.SUPERGROUP})


def is_anonymous_admin(message: Message) -> bool:
    """Written "on behalf of the group" by an admin with "Remain anonymous" on."""
    return message.sender_chat is not None and message.sender_chat.id == message.chat.id


def sender_of(message: Message) -> TelegramUser | None:
    if message.sender_chat is not None:
        # Posted as a channel (e.g. a linked channel): the channel is the only identity shown.
        chat = message.sender_chat
        return TelegramUser(id=chat.id, full_name=chat.title or chat.full_name, username=chat.username)
    user = message.from_user
    if user is None:
        return None
    return TelegramUser(id=user.id, full_name=user.full_name, username=user.username, is_bot=user.is_bot)


def thread_of(message: Message) -> int | None:
    # message_thread_id is also set on replies in ordinary groups; only forum topics count.
    return message.message_thread_id if message.is_topic_message else None


async def on_private_message(message: Message) -> None:
    log.info("private_message_ignored", chat_id=message.chat.id, message_id=message.message_id)


async def on_group_text(message: Message, event_update: Update, publisher: EventPublisher) -> None:
    sender = sender_of(message)
    if sender is None or message.text is None:
        log.info("message_without_sender_ignored", chat_id=message.chat.id, message_id=message.message_id)
        return
    chat_id, message_id = message.chat.id, message.message_id
    key = telegram_message_key(chat_id, message_id)
    event = TelegramMessageReceived(
        **root_envelope(key, caused_by=f"tg:update:{event_update.update_id}"),
        chat_id=chat_id,
        message_id=message_id,
        sender=sender,
        text=message.text,
        sent_at=message.date,
        chat_title=message.chat.title,
        thread_id=thread_of(message),
        update_id=event_update.update_id,
    )
    with structlog.contextvars.bound_contextvars(
        correlation_id=event.correlation_id, chat_id=chat_id, message_id=message_id
    ):
        stored = await publisher.publish(
            event, subject=subjects.telegram_message_received(chat_id), msg_id=key
        )
        # The length, not the text: message content stays out of the logs.
        log.info(
            "telegram_message_stored" if stored else "telegram_message_duplicate", chars=len(message.text)
        )


async def on_other_group_message(message: Message) -> None:
    # Media, stickers, service messages: not carried yet.
    log.info(
        "non_text_message_ignored",
        chat_id=message.chat.id,
        message_id=message.message_id,
        content_type=str(message.content_type),
    )


def build_router() -> Router:
    """A fresh router each call: an aiogram router can belong to one dispatcher only."""
    router = Router(name="telegram_gateway")
    # Order matters: the first matching handler wins.
    # Commands, anonymous admins and service messages are handled first, by the routers of
    # ``commands`` and ``group_life`` (see ``app.build_dispatcher``).
    router.message.register(on_private_message, F.chat.type == ChatType.PRIVATE)
    router.message.register(on_group_text, GROUP_CHATS, F.text)
    router.message.register(on_other_group_message, GROUP_CHATS)
    return router
