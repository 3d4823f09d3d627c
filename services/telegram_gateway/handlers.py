"""What the gateway does with each group message: store it as an event, or explain why not.

One update is handled at a time and confirmed to Telegram only after its event is stored, so a
failed publish must raise out of the handler (see ``polling.py``); nothing here swallows it.
"""

from __future__ import annotations

import re
import time
from typing import NamedTuple

import structlog
from aiogram import Bot, F, Router
from aiogram.enums import ChatType
from aiogram.exceptions import ClientDecodeError, TelegramAPIError
from aiogram.filters import Command, CommandObject
from aiogram.types import Message, ReplyParameters, Update

from bridge_lib.eventbus import EventPublisher
from contracts import subjects
from contracts.events import (
    BindRequested,
    TelegramUser,
    root_envelope,
    telegram_bind_key,
)
from services.telegram_gateway import content
from services.telegram_gateway.content import thread_of
from services.telegram_gateway.inbound import (
    on_edited_group_message,
    on_group_message,
    on_message_reaction,
)

log = structlog.get_logger("telegram_gateway")

GROUP_CHATS = F.chat.type.in_({ChatType.GROUP, ChatType.SUPERGROUP})

ANONYMOUS_ADMIN_NOTICE = (
    "⚠️ This message was sent anonymously on behalf of the group, so Telegram does not tell the "
    "bot who wrote it, and it was <b>not</b> passed on to Planfix.\n"
    "To fix it, a group owner opens the group settings → Administrators → your admin entry and "
    "switches off <b>Remain anonymous</b>. Then send the message again."
)


class TaskArgs(NamedTuple):
    task_number: int | None
    task_title: str | None


_TASK_NUMBER = re.compile(r"#?([0-9]+)")


def parse_task_args(args: str | None) -> TaskArgs:
    """``/task 4821`` or ``/task #4821`` bind a task by number; any other text is a new title."""
    rest = (args or "").strip()
    if not rest:
        return TaskArgs(None, None)
    # [0-9] rather than \d or isdigit(): "²" or Arabic-Indic digits are not task numbers.
    if number := _TASK_NUMBER.fullmatch(rest):
        return TaskArgs(int(number[1]), None)
    return TaskArgs(None, rest)


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


class AnonymousAdminNotices:
    """Remembers when each group was last told about anonymous admins, so it is not told per message."""

    def __init__(self, every_s: float = 600.0) -> None:
        self._every_s = every_s
        self._last: dict[int, float] = {}

    def due(self, chat_id: int) -> bool:
        now = time.monotonic()
        if now - self._last.get(chat_id, -self._every_s) < self._every_s:
            return False
        self._last[chat_id] = now
        return True


async def on_private_message(message: Message) -> None:
    log.info("private_message_ignored", chat_id=message.chat.id, message_id=message.message_id)


async def on_anonymous_admin(message: Message, bot: Bot, notices: AnonymousAdminNotices) -> None:
    chat_id = message.chat.id
    log.warning("anonymous_admin_message_not_bridged", chat_id=chat_id, message_id=message.message_id)
    if not notices.due(chat_id):
        return
    try:
        await bot.send_message(
            chat_id=chat_id,
            text=ANONYMOUS_ADMIN_NOTICE,
            message_thread_id=thread_of(message),
            reply_parameters=ReplyParameters(message_id=message.message_id, allow_sending_without_reply=True),
        )
    except (TelegramAPIError, ClientDecodeError) as error:
        # Only advice, no event depends on it: a failure must not hold the update queue.
        log.warning("anonymous_admin_notice_failed", chat_id=chat_id, error=type(error).__name__)


async def on_task_command(
    message: Message, command: CommandObject, event_update: Update, publisher: EventPublisher
) -> None:
    requested_by = sender_of(message)
    if requested_by is None:
        log.info("message_without_sender_ignored", chat_id=message.chat.id, message_id=message.message_id)
        return
    chat_id, message_id = message.chat.id, message.message_id
    key = telegram_bind_key(chat_id, message_id)
    args = parse_task_args(command.args)
    event = BindRequested(
        **root_envelope(key, caused_by=f"tg:update:{event_update.update_id}"),
        chat_id=chat_id,
        message_id=message_id,
        requested_by=requested_by,
        task_number=args.task_number,
        task_title=args.task_title,
        chat_title=message.chat.title,
        thread_id=thread_of(message),
    )
    with structlog.contextvars.bound_contextvars(
        correlation_id=event.correlation_id, chat_id=chat_id, message_id=message_id
    ):
        stored = await publisher.publish(event, subject=subjects.telegram_bind_requested(chat_id), msg_id=key)
        log.info(
            "bind_request_stored" if stored else "bind_request_duplicate",
            task_number=args.task_number,
            has_title=args.task_title is not None,
        )


async def on_other_group_message(message: Message) -> None:
    # Service messages (joins, pins, title changes...): nothing a person wrote.
    log.info(
        "service_message_ignored",
        chat_id=message.chat.id,
        message_id=message.message_id,
        content_type=str(message.content_type),
    )


def build_router() -> Router:
    """A fresh router each call: an aiogram router can belong to one dispatcher only."""
    router = Router(name="telegram_gateway")
    # Order matters: the first matching handler wins.
    router.message.register(on_private_message, F.chat.type == ChatType.PRIVATE)
    router.message.register(on_anonymous_admin, GROUP_CHATS, is_anonymous_admin)
    router.message.register(on_task_command, GROUP_CHATS, F.text, Command("task", ignore_case=True))
    router.message.register(on_group_message, GROUP_CHATS, content.is_carried)
    router.message.register(on_other_group_message, GROUP_CHATS)
    router.edited_message.register(on_edited_group_message, GROUP_CHATS)
    # Telegram sends reactions only to an admin bot that lists them in allowed_updates; this
    # registration puts "message_reaction" there (Dispatcher.resolve_used_update_types).
    router.message_reaction.register(on_message_reaction, GROUP_CHATS)
    return router
