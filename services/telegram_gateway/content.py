"""What a Telegram message holds, as event fields: text and formatting, files, reply, forward,
location, contact, poll. Pure functions of the aiogram ``Message``; nothing is downloaded here
(files travel as ``file_id``s; the relay fetches them when it posts the comment).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import msgspec
from aiogram.types import (
    Chat,
    Message,
    MessageEntity,
    MessageOriginChannel,
    MessageOriginChat,
    MessageOriginHiddenUser,
    MessageOriginUser,
    PhotoSize,
    ReactionTypeCustomEmoji,
    ReactionTypeEmoji,
    ReactionTypePaid,
    User,
)

from contracts.events import (
    TelegramAttachment,
    TelegramContact,
    TelegramEntity,
    TelegramLocation,
    TelegramPoll,
    TelegramQuote,
    TelegramReaction,
    TelegramUser,
)

# Content types carried to Planfix with their content; service messages (joins, pins, title
# changes...) are not carried.
SHOWN_CONTENT = frozenset(
    {"text", "photo", "document", "voice", "audio", "video", "video_note", "sticker", "animation"}
    | {"location", "venue", "contact", "poll", "dice"}
)
# Written by a person but not representable in a comment: carried as a line saying so.
NAMED_CONTENT = frozenset(
    {"story", "game", "invoice", "paid_media", "giveaway", "giveaway_winners", "checklist"}
)
CARRIED_CONTENT = SHOWN_CONTENT | NAMED_CONTENT
# A quote shows the answered message's first line, cut to this many characters.
QUOTE_CHARS = 120


def thread_of(message: Message) -> int | None:
    # message_thread_id is also set on replies in ordinary groups; only forum topics count.
    return message.message_thread_id if message.is_topic_message else None


def as_datetime(value: datetime | int) -> datetime:
    return value if isinstance(value, datetime) else datetime.fromtimestamp(value, UTC)


def content_type_of(message: Message) -> str:
    kind: Any = message.content_type  # a ContentType enum member, or a str for unknown kinds
    return str(getattr(kind, "value", kind))


def is_carried(message: Message) -> bool:
    return content_type_of(message) in CARRIED_CONTENT


def text_of(message: Message) -> str:
    """The text, or the caption of a media message; "" when there is neither."""
    return message.text or message.caption or ""


def entities_of(message: Message) -> list[TelegramEntity]:
    raw = message.entities if message.text is not None else message.caption_entities
    return [_entity(e) for e in raw or []]


def _entity(entity: MessageEntity) -> TelegramEntity:
    return TelegramEntity(
        type=str(getattr(entity.type, "value", entity.type)),
        offset=entity.offset,
        length=entity.length,
        url=entity.url,
        language=entity.language,
        user_id=entity.user.id if entity.user else None,
    )


def attachments_of(message: Message) -> list[TelegramAttachment]:
    if message.photo:
        # Telegram sends every size it made; the last is the largest.
        largest: PhotoSize = max(message.photo, key=lambda size: size.width * size.height)
        return [_attachment("photo", largest, f"photo_{message.message_id}.jpg", "image/jpeg")]
    if message.sticker:
        sticker = message.sticker
        # Animated (.tgs) and video (.webm) stickers are not pictures Planfix can show.
        still = not sticker.is_animated and not sticker.is_video
        attachment = _attachment("sticker", sticker, f"sticker_{message.message_id}.webp", "image/webp")
        return [
            msgspec.structs.replace(
                attachment, emoji=sticker.emoji, set_name=sticker.set_name, is_image=still
            )
        ]
    for kind, default_name, default_mime in (
        ("animation", "animation.mp4", "video/mp4"),
        ("document", "document", "application/octet-stream"),
        ("voice", "voice.ogg", "audio/ogg"),
        ("audio", "audio.mp3", "audio/mpeg"),
        ("video", "video.mp4", "video/mp4"),
        ("video_note", "video_note.mp4", "video/mp4"),
    ):
        media: Any = getattr(message, kind)
        if media is None:
            continue
        name = getattr(media, "file_name", None) or _numbered(default_name, message.message_id)
        return [_attachment(kind, media, name, getattr(media, "mime_type", None) or default_mime)]
    return []


def _attachment(kind: str, media: Any, file_name: str, mime_type: str) -> TelegramAttachment:
    """A message's file: Telegram's ids and size of ``media``, named and typed."""
    return TelegramAttachment(
        kind=kind,
        file_id=media.file_id,
        file_unique_id=media.file_unique_id,
        file_name=file_name,
        mime_type=mime_type,
        file_size=media.file_size,
    )


def _numbered(name: str, message_id: int) -> str:
    stem, dot, extension = name.partition(".")
    return f"{stem}_{message_id}{dot}{extension}"


def reply_quote(message: Message) -> TelegramQuote | None:
    answered = message.reply_to_message
    # In a forum, every message "replies" to its topic's first message: not a real reply.
    if answered is None or (message.is_topic_message and answered.message_id == message.message_thread_id):
        return None
    if answered.forum_topic_created is not None:
        return None
    author = author_of(answered)
    first_line = (message.quote.text if message.quote else text_of(answered)).strip().split("\n", 1)[0]
    if not first_line:
        first_line = f"[{content_type_of(answered)}]"
    if len(first_line) > QUOTE_CHARS:
        first_line = first_line[: QUOTE_CHARS - 1].rstrip() + "…"
    bot = message.bot
    return TelegramQuote(
        message_id=answered.message_id,
        author=author.display if author else "unknown",
        first_line=first_line,
        by_this_bot=bot is not None and answered.from_user is not None and answered.from_user.id == bot.id,
    )


def forwarded_from(message: Message) -> str | None:
    origin = message.forward_origin
    if origin is None:
        return None
    if isinstance(origin, MessageOriginUser):
        user = origin.sender_user
        return TelegramUser(id=user.id, full_name=user.full_name, username=user.username).display
    if isinstance(origin, MessageOriginHiddenUser):
        return origin.sender_user_name
    if isinstance(origin, MessageOriginChat):
        chat = origin.sender_chat
        return f"{chat.title or chat.full_name}" + (f" (@{chat.username})" if chat.username else "")
    if isinstance(origin, MessageOriginChannel):
        chat = origin.chat
        return f"channel {chat.title or chat.full_name}" + (f" (@{chat.username})" if chat.username else "")
    return "unknown"


def location_of(message: Message) -> TelegramLocation | None:
    if message.venue is not None:
        venue = message.venue
        return TelegramLocation(
            latitude=venue.location.latitude,
            longitude=venue.location.longitude,
            title=venue.title,
            address=venue.address,
        )
    if message.location is not None:
        return TelegramLocation(latitude=message.location.latitude, longitude=message.location.longitude)
    return None


def contact_of(message: Message) -> TelegramContact | None:
    contact = message.contact
    if contact is None:
        return None
    name = " ".join(part for part in (contact.first_name, contact.last_name) if part)
    return TelegramContact(full_name=name, phone_number=contact.phone_number, user_id=contact.user_id)


def poll_of(message: Message) -> TelegramPoll | None:
    poll = message.poll
    if poll is None:
        return None
    return TelegramPoll(
        question=poll.question, options=[option.text for option in poll.options], is_quiz=poll.type == "quiz"
    )


def dice_text(message: Message) -> str | None:
    return f"{message.dice.emoji} {message.dice.value}" if message.dice else None


def author_of(message: Message) -> TelegramUser | None:
    """Who wrote it; a linked channel or another chat posting is marked as a channel."""
    if message.sender_chat is not None:
        return chat_as_author(message.sender_chat)
    return user_of(message.from_user) if message.from_user is not None else None


def sender_of(message: Message) -> TelegramUser | None:
    """Who sent a command: its author, a chat not marked as a channel (as the binder has it)."""
    author = author_of(message)
    if author is None:
        return None
    # Their Telegram language: a group's first bind speaks it until /lang chooses.
    language = message.from_user.language_code if message.from_user and not message.sender_chat else None
    return msgspec.structs.replace(author, is_channel=False, language_code=language)


def user_of(user: User) -> TelegramUser:
    return TelegramUser(id=user.id, full_name=user.full_name, username=user.username, is_bot=user.is_bot)


def chat_as_author(chat: Chat) -> TelegramUser:
    """A chat speaking as itself (a channel, a group's linked channel): its only identity shown."""
    return TelegramUser(
        id=chat.id, full_name=chat.title or chat.full_name, username=chat.username, is_channel=True
    )


def reactions_of(reactions: list[Any]) -> list[TelegramReaction]:
    shown: list[TelegramReaction] = []
    for reaction in reactions:
        if isinstance(reaction, ReactionTypeEmoji):
            shown.append(TelegramReaction(emoji=reaction.emoji))
        elif isinstance(reaction, ReactionTypeCustomEmoji):
            shown.append(TelegramReaction(emoji="🔖"))  # a custom emoji cannot be shown outside Telegram
        elif isinstance(reaction, ReactionTypePaid):
            shown.append(TelegramReaction(emoji="⭐"))
    return shown
