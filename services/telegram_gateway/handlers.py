"""What the gateway does with each group message: store it as an event, or explain why not.

One update is handled at a time and confirmed to Telegram only after its event is stored, so a
failed publish must raise out of the handler (see ``polling.py``); nothing here swallows it.

Commands (``commands``) and what happens to a group as a whole (``group_life``: membership,
migration, anonymous admins) have their own routers, included before this one; the messages
that reach this router are people's messages, carried by ``inbound``.
"""

from __future__ import annotations

import structlog
from aiogram import Router
from aiogram.types import Message

from contracts.events import TelegramUser
from services.telegram_gateway import filters
from services.telegram_gateway.content import thread_of
from services.telegram_gateway.inbound import (
    on_edited_group_message,
    on_group_message,
    on_message_reaction,
)

__all__ = ["GROUP_CHATS", "build_router", "is_anonymous_admin", "sender_of", "thread_of"]

log = structlog.get_logger("telegram_gateway")

# A coroutine filter: aiogram runs synchronous ones in a thread (see ``filters``).
GROUP_CHATS = filters.in_group_chat


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


async def on_private_message(message: Message) -> None:
    log.info("private_message_ignored", chat_id=message.chat.id, message_id=message.message_id)


async def on_other_group_message(message: Message) -> None:
    # Service messages the other routers do not act on (pinned, title changed, ...).
    log.info(
        "group_message_not_carried",
        chat_id=message.chat.id,
        message_id=message.message_id,
        content_type=str(message.content_type),
    )


def build_router() -> Router:
    """A fresh router each call: an aiogram router can belong to one dispatcher only."""
    router = Router(name="telegram_gateway")
    # Order matters: the first matching handler wins.
    router.message.register(on_private_message, filters.in_private_chat)
    router.message.register(on_group_message, GROUP_CHATS, filters.is_carried)
    router.message.register(on_other_group_message, GROUP_CHATS)
    router.edited_message.register(on_edited_group_message, GROUP_CHATS)
    # Telegram sends reactions only to an admin bot that lists them in allowed_updates; this
    # registration puts "message_reaction" there (Dispatcher.resolve_used_update_types).
    router.message_reaction.register(on_message_reaction, GROUP_CHATS)
    return router
