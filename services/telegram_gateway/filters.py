"""Message filters as coroutines: aiogram runs a synchronous filter (magic ``F`` ones too) in a
worker thread, a hop that costs far more than checks this small; ``async def`` ones run inline.
"""

from __future__ import annotations

from aiogram.enums import ChatType
from aiogram.types import ChatMemberUpdated, Message, MessageReactionUpdated

from services.telegram_gateway import content

_GROUP_TYPES = frozenset({ChatType.GROUP, ChatType.SUPERGROUP})


async def in_group_chat(event: Message | MessageReactionUpdated | ChatMemberUpdated) -> bool:
    return event.chat.type in _GROUP_TYPES


async def in_private_chat(message: Message) -> bool:
    return message.chat.type == ChatType.PRIVATE


async def has_text(message: Message) -> bool:
    return message.text is not None


async def is_carried(message: Message) -> bool:
    return content.is_carried(message)


async def sent_as_the_group(message: Message) -> bool:
    """Written "on behalf of the group" by an admin with "Remain anonymous" on."""
    return message.sender_chat is not None and message.sender_chat.id == message.chat.id


async def is_migration(message: Message) -> bool:
    return message.migrate_to_chat_id is not None or message.migrate_from_chat_id is not None
