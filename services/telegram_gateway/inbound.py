"""People's messages in groups, their edits and reactions, as events; private chats and service
messages the other routers do not take are logged and left.

Commands (``commands``) and what happens to a group as a whole (``group_life``) have routers of
their own, included before this one: the first matching handler wins.
"""

from __future__ import annotations

import structlog
from aiogram import Router
from aiogram.types import Message, MessageReactionUpdated, Update

from contracts import subjects
from contracts.events import (
    TelegramMessageEdited,
    TelegramMessageReceived,
    TelegramReactionChanged,
    telegram_message_key,
    telegram_update_key,
)
from services.telegram_gateway import content, filters
from services.telegram_gateway.record import Record, about_message

log = structlog.get_logger("telegram_gateway")


async def on_group_message(message: Message, event_update: Update, record: Record) -> None:
    sender = content.author_of(message)
    if sender is None:
        log.info("message_without_sender_ignored", chat_id=message.chat.id, message_id=message.message_id)
        return
    key = telegram_message_key(message.chat.id, message.message_id)
    event = TelegramMessageReceived(
        **about_message(event_update, message, key),
        sender=sender,
        text=content.dice_text(message) or content.text_of(message),
        sent_at=message.date,
        chat_title=message.chat.title,
        thread_id=content.thread_of(message),
        update_id=event_update.update_id,
        entities=content.entities_of(message),
        attachments=content.attachments_of(message),
        content_type=content.content_type_of(message),
        media_group_id=message.media_group_id,
        reply_to=content.reply_quote(message),
        forwarded_from=content.forwarded_from(message),
        location=content.location_of(message),
        contact=content.contact_of(message),
        poll=content.poll_of(message),
    )
    await record(
        event,
        subject=subjects.telegram_message_received(message.chat.id),
        key=key,
        content_type=event.content_type,
        chars=len(event.text),
        files=len(event.attachments),
    )


async def on_edited_group_message(message: Message, event_update: Update, record: Record) -> None:
    sender = content.author_of(message)
    if sender is None or not content.is_carried(message):
        log.info("edit_ignored", chat_id=message.chat.id, message_id=message.message_id)
        return
    key = telegram_update_key("edit", message.chat.id, event_update.update_id)
    event = TelegramMessageEdited(
        **about_message(event_update, message, key),
        sender=sender,
        text=content.text_of(message),
        entities=content.entities_of(message),
        edited_at=content.as_datetime(message.edit_date or message.date),
        thread_id=content.thread_of(message),
        update_id=event_update.update_id,
        attachments=content.attachments_of(message),
    )
    await record(
        event, subject=subjects.telegram_message_edited(message.chat.id), key=key, chars=len(event.text)
    )


async def on_message_reaction(reaction: MessageReactionUpdated, event_update: Update, record: Record) -> None:
    if reaction.user is not None:
        actor = content.user_of(reaction.user)
    elif reaction.actor_chat is not None:
        actor = content.chat_as_author(reaction.actor_chat)
    else:
        log.info("reaction_without_actor_ignored", chat_id=reaction.chat.id, message_id=reaction.message_id)
        return
    key = telegram_update_key("reaction", reaction.chat.id, event_update.update_id)
    event = TelegramReactionChanged(
        **about_message(event_update, reaction, key),
        actor=actor,
        reactions=content.reactions_of(list(reaction.new_reaction)),
        changed_at=reaction.date,
        update_id=event_update.update_id,
    )
    await record(event, subject=subjects.telegram_message_reacted(reaction.chat.id), key=key)


async def on_private_message(message: Message) -> None:
    log.info("private_message_ignored", chat_id=message.chat.id, message_id=message.message_id)


async def on_other_group_message(message: Message) -> None:
    # Service messages the other routers do not act on (pinned, title changed, ...).
    log.info(
        "group_message_not_carried",
        chat_id=message.chat.id,
        message_id=message.message_id,
        content_type=content.content_type_of(message),
    )


def build_inbound_router() -> Router:
    """A fresh router each call: an aiogram router can belong to one dispatcher only."""
    router = Router(name="telegram_gateway.inbound")
    router.message.register(on_private_message, filters.in_private_chat)
    router.message.register(on_group_message, filters.in_group_chat, filters.is_carried)
    router.message.register(on_other_group_message, filters.in_group_chat)
    router.edited_message.register(on_edited_group_message, filters.in_group_chat)
    # Telegram sends reactions only to an admin bot that lists them in allowed_updates; this
    # registration puts "message_reaction" there (Dispatcher.resolve_used_update_types).
    router.message_reaction.register(on_message_reaction, filters.in_group_chat)
    return router
