"""Group activity that goes to Planfix: messages of every kind, their edits, and reactions.

Each handler stores one event and returns; a failed publish raises, so the update stays
unconfirmed (see ``polling.py``). Content stays out of the logs: lengths and kinds only.
"""

from __future__ import annotations

import structlog
from aiogram.types import Message, MessageReactionUpdated, Update

from bridge_lib.eventbus import EventPublisher
from contracts import subjects
from contracts.events import (
    TelegramMessageEdited,
    TelegramMessageReceived,
    TelegramReactionChanged,
    TelegramUser,
    root_envelope,
    telegram_message_key,
    telegram_update_key,
)
from services.telegram_gateway import content
from services.telegram_gateway.content import thread_of

log = structlog.get_logger("telegram_gateway")


async def on_group_message(message: Message, event_update: Update, publisher: EventPublisher) -> None:
    sender = content.author_of(message)
    if sender is None:
        log.info("message_without_sender_ignored", chat_id=message.chat.id, message_id=message.message_id)
        return
    chat_id, message_id = message.chat.id, message.message_id
    key = telegram_message_key(chat_id, message_id)
    text = content.text_of(message)
    if dice := content.dice_text(message):
        text = dice
    event = TelegramMessageReceived(
        **root_envelope(key, caused_by=f"tg:update:{event_update.update_id}"),
        chat_id=chat_id,
        message_id=message_id,
        sender=sender,
        text=text,
        sent_at=message.date,
        chat_title=message.chat.title,
        thread_id=thread_of(message),
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
    with structlog.contextvars.bound_contextvars(
        correlation_id=event.correlation_id, chat_id=chat_id, message_id=message_id
    ):
        stored = await publisher.publish(
            event, subject=subjects.telegram_message_received(chat_id), msg_id=key
        )
        log.info(
            "telegram_message_stored" if stored else "telegram_message_duplicate",
            chars=len(text),
            content_type=event.content_type,
            files=len(event.attachments),
            album=event.media_group_id is not None,
        )


async def on_edited_group_message(message: Message, event_update: Update, publisher: EventPublisher) -> None:
    sender = content.author_of(message)
    if sender is None or not content.is_carried(message):
        log.info("edit_ignored", chat_id=message.chat.id, message_id=message.message_id)
        return
    chat_id = message.chat.id
    key = telegram_update_key("edit", chat_id, event_update.update_id)
    event = TelegramMessageEdited(
        **root_envelope(key, caused_by=f"tg:update:{event_update.update_id}"),
        chat_id=chat_id,
        message_id=message.message_id,
        sender=sender,
        text=content.text_of(message),
        entities=content.entities_of(message),
        edited_at=content.as_datetime(message.edit_date or message.date),
        thread_id=thread_of(message),
        update_id=event_update.update_id,
    )
    with structlog.contextvars.bound_contextvars(
        correlation_id=event.correlation_id, chat_id=chat_id, message_id=message.message_id
    ):
        stored = await publisher.publish(event, subject=subjects.telegram_message_edited(chat_id), msg_id=key)
        log.info("telegram_edit_stored" if stored else "telegram_edit_duplicate", chars=len(event.text))


async def on_message_reaction(
    message_reaction: MessageReactionUpdated, event_update: Update, publisher: EventPublisher
) -> None:
    update = message_reaction
    chat_id = update.chat.id
    if update.user is not None:
        actor = TelegramUser(
            id=update.user.id,
            full_name=update.user.full_name,
            username=update.user.username,
            is_bot=update.user.is_bot,
        )
    elif update.actor_chat is not None:
        chat = update.actor_chat
        actor = TelegramUser(
            id=chat.id, full_name=chat.title or chat.full_name, username=chat.username, is_channel=True
        )
    else:
        log.info("reaction_without_actor_ignored", chat_id=chat_id, message_id=update.message_id)
        return
    key = telegram_update_key("reaction", chat_id, event_update.update_id)
    event = TelegramReactionChanged(
        **root_envelope(key, caused_by=f"tg:update:{event_update.update_id}"),
        chat_id=chat_id,
        message_id=update.message_id,
        actor=actor,
        reactions=content.reactions_of(list(update.new_reaction)),
        changed_at=update.date,
        update_id=event_update.update_id,
    )
    with structlog.contextvars.bound_contextvars(
        correlation_id=event.correlation_id, chat_id=chat_id, message_id=update.message_id
    ):
        stored = await publisher.publish(
            event, subject=subjects.telegram_message_reacted(chat_id), msg_id=key
        )
        log.info("telegram_reaction_stored" if stored else "telegram_reaction_duplicate")
