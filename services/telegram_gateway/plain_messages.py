"""The common update, a person's plain text in a group, read without aiogram's typed ``Update``.

Most of a busy gateway's updates are such messages, and building aiogram's pydantic models and
running the dispatcher's filters cost more than the rest of their way together. An update is
read here only when it has nothing else: no command (text starting with "/"), reply, forward,
file, sender chat, service field or any key this shape does not name (``forbid_unknown_fields``).
Anything else returns None and goes through the dispatcher as before, so a new Bot API field
takes the full path rather than being dropped. The event is the one ``inbound.on_group_message``
builds (tests/test_telegram_gateway_plain.py compares the two on many updates).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import msgspec

from contracts import subjects
from contracts.events import TelegramEntity, TelegramMessageReceived, TelegramUser, telegram_message_key
from services.telegram_gateway.record import Record, envelope_for_update

_GROUP_TYPES = frozenset({"group", "supergroup"})


class _User(msgspec.Struct):
    id: int
    first_name: str
    is_bot: bool = False
    last_name: str | None = None
    username: str | None = None


class _Chat(msgspec.Struct):
    id: int
    type: str
    title: str | None = None


class _Entity(msgspec.Struct, forbid_unknown_fields=True):
    type: str
    offset: int
    length: int
    url: str | None = None
    language: str | None = None
    user: _User | None = None
    custom_emoji_id: str | None = None


class _Message(msgspec.Struct, forbid_unknown_fields=True):
    message_id: int
    from_: _User = msgspec.field(name="from")
    chat: _Chat
    date: int
    text: str
    entities: list[_Entity] = []
    message_thread_id: int | None = None
    is_topic_message: bool | None = None
    # Sent with a link in the text; nothing of it is carried.
    link_preview_options: dict[str, Any] | None = None


class _Update(msgspec.Struct, forbid_unknown_fields=True):
    update_id: int
    message: _Message


def plain_group_message(raw: dict[str, Any]) -> tuple[TelegramMessageReceived, str] | None:
    """The event and its subject for a plain group text; None: the dispatcher's to handle."""
    try:
        update = msgspec.convert(raw, _Update)
    except msgspec.ValidationError:
        return None
    message = update.message
    if message.chat.type not in _GROUP_TYPES or not message.text or message.text.startswith("/"):
        return None
    key = telegram_message_key(message.chat.id, message.message_id)
    event = TelegramMessageReceived(
        **envelope_for_update(update.update_id, key),
        chat_id=message.chat.id,
        message_id=message.message_id,
        sender=_person(message.from_),
        text=message.text,
        sent_at=datetime.fromtimestamp(message.date, UTC),
        chat_title=message.chat.title,
        thread_id=message.message_thread_id if message.is_topic_message else None,
        update_id=update.update_id,
        entities=[_entity(entity) for entity in message.entities],
        content_type="text",
    )
    return event, subjects.telegram_message_received(message.chat.id)


async def record_plain(record: Record, event: TelegramMessageReceived, subject: str) -> None:
    """Stored as ``on_group_message`` stores it, with the same log line."""
    await record(
        event,
        subject=subject,
        key=telegram_message_key(event.chat_id, event.message_id),
        content_type=event.content_type,
        chars=len(event.text),
        files=0,
    )


def _person(user: _User) -> TelegramUser:
    full_name = f"{user.first_name} {user.last_name}" if user.last_name else user.first_name
    return TelegramUser(id=user.id, full_name=full_name, username=user.username, is_bot=user.is_bot)


def _entity(entity: _Entity) -> TelegramEntity:
    return TelegramEntity(
        type=entity.type,
        offset=entity.offset,
        length=entity.length,
        url=entity.url,
        language=entity.language,
        user_id=entity.user.id if entity.user else None,
    )
