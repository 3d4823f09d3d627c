"""The bot's commands in groups, as events: ``/task``, ``/unbind``, ``/lang``, ``/status``, ``/help``.

They work as ``/task@YourBot`` too, and a command addressed to another bot is left to the
ordinary message handlers (aiogram's ``Command`` filter checks the mention against ``getMe``);
``/task@<another bot>`` is also stored as ``OtherBotCommanded``: that bot answers ``/task`` too.
For ``/task`` and ``/unbind`` the gateway asks Telegram whether the sender is an admin
(``getChatMember``) and carries the answer; the binder decides what it allows. ``/status`` and
``/help`` carry what the relay needs to answer (whether Group Privacy hides messages from us;
for ``/status``, the other bots of the group that may answer ``/task`` too: ``other_bots``).
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import NamedTuple

import structlog
from aiogram import Bot, Router
from aiogram.enums import ChatMemberStatus
from aiogram.exceptions import ClientDecodeError, TelegramAPIError
from aiogram.filters import Command, CommandObject
from aiogram.types import Message, Update

from bridge_lib.i18n import LANGUAGES, N_, translator
from bridge_lib.task_links import is_link
from contracts import subjects
from contracts.events import (
    BindRequested,
    GroupCommand,
    GroupCommandReceived,
    GroupLanguageRequested,
    OtherBotCommanded,
    TelegramUser,
    UnbindRequested,
    telegram_bind_key,
    telegram_command_key,
    telegram_language_key,
    telegram_other_bot_key,
    telegram_unbind_key,
)
from services.telegram_gateway import content, filters
from services.telegram_gateway.inbound import on_group_message
from services.telegram_gateway.other_bots import OtherBots, command_for_other_bot
from services.telegram_gateway.record import AboutMessage, Record, about_message

log = structlog.get_logger("telegram_gateway.commands")

# What the bot offers in Telegram's command menu of groups (setMyCommands at start, once per
# language with its language_code, and once without for everyone else).
BOT_COMMANDS = {
    "task": N_("Bind this group to a Planfix task: /task <title>, /task <number> or /task <link>"),
    "status": N_("Which Planfix task this group is bound to"),
    "unbind": N_("Stop carrying messages between this group and its task"),
    "lang": N_("The bot's language in this group: /lang ru or /lang en"),
    "help": N_("What this bot does and its commands"),
    "link": N_("Link your Telegram to your Planfix account (in a private chat with me)"),
}


# The commands of a group an anonymous admin is answered about (``/link`` is a private chat's).
_GROUP_COMMANDS = ("task", "unbind", "status", "help")
_COMMAND = re.compile(r"/([A-Za-z0-9_]+)(?:@([A-Za-z0-9_]+))?(?:\s|$)")


def our_command(text: str | None, bot_username: str | None) -> str | None:
    """The name of this bot's command a text starts with (``/task``, ``/status@OurBot``), in
    lower case; None for anything else, a command of another bot included."""
    found = _COMMAND.match(text or "")
    if found is None or found[1].lower() not in _GROUP_COMMANDS:
        return None
    addressed = found[2]
    if addressed is not None and (bot_username is None or addressed.lower() != bot_username.lower()):
        return None
    return found[1].lower()


def bot_commands(language: str, commands: dict[str, str] = BOT_COMMANDS) -> dict[str, str]:
    """A command menu's descriptions in ``language``."""
    texts = translator(language)
    return {name: texts.gettext(description) for name, description in commands.items()}


def command_menus(
    default_language: str, commands: dict[str, str] = BOT_COMMANDS
) -> list[tuple[str | None, dict[str, str]]]:
    """(language_code, commands) for setMyCommands: one per language, and the default for the rest."""
    return [
        (None, bot_commands(default_language, commands)),
        *((code, bot_commands(code, commands)) for code in LANGUAGES),
    ]


class BotProfile(NamedTuple):
    """What getMe said at start; handlers get it injected as ``bot_profile``."""

    username: str | None
    reads_all_group_messages: bool


class TaskArgs(NamedTuple):
    task_number: int | None
    task_title: str | None
    # The whole argument was one link: the binder decides which task of its account it names.
    task_link: str | None = None


_TASK_NUMBER = re.compile(r"#?([0-9]+)")


def parse_task_args(args: str | None) -> TaskArgs:
    """``/task 4821`` or ``/task #4821`` bind a task by number, ``/task <link>`` by its link;
    any other text is a new title (a link among words too: it is only part of the title)."""
    rest = (args or "").strip()
    if not rest:
        return TaskArgs(None, None)
    # [0-9] rather than \d or isdigit(): "²" or Arabic-Indic digits are not task numbers.
    if number := _TASK_NUMBER.fullmatch(rest):
        return TaskArgs(int(number[1]), None)
    if is_link(rest):
        # Never a title: a task named after a link is never what was meant.
        return TaskArgs(None, None, rest)
    return TaskArgs(None, rest)


async def requester_is_admin(bot: Bot, message: Message) -> bool | None:
    """True for the group's creator and admins; None when Telegram could not be asked."""
    if message.sender_chat is not None:
        return False  # a channel speaking in the group is nobody's admin
    if message.from_user is None:
        return None
    try:
        member = await bot.get_chat_member(chat_id=message.chat.id, user_id=message.from_user.id)
    except (TelegramAPIError, ClientDecodeError) as error:
        log.warning("admin_check_failed", chat_id=message.chat.id, error=type(error).__name__)
        return None
    return member.status in (ChatMemberStatus.CREATOR, ChatMemberStatus.ADMINISTRATOR)


class CommandRequest(AboutMessage):
    """What every command event of a group carries: who wrote the command, and where."""

    requested_by: TelegramUser
    thread_id: int | None


def command_request(message: Message, event_update: Update, key: str) -> CommandRequest | None:
    """The fields of a command's event; None (logged) when nobody can be named as its sender,
    and the command is left."""
    requested_by = content.sender_of(message)
    if requested_by is None:
        log.info("message_without_sender_ignored", chat_id=message.chat.id, message_id=message.message_id)
        return None
    return CommandRequest(
        **about_message(event_update, message, key),
        requested_by=requested_by,
        thread_id=content.thread_of(message),
    )


async def on_task_command(
    message: Message, command: CommandObject, event_update: Update, record: Record, bot: Bot
) -> None:
    args = parse_task_args(command.args)
    key = telegram_bind_key(message.chat.id, message.message_id)
    if (request := command_request(message, event_update, key)) is None:
        return
    event = BindRequested(
        **request,
        task_number=args.task_number,
        task_title=args.task_title,
        task_link=args.task_link,
        chat_title=message.chat.title,
        requester_is_admin=await requester_is_admin(bot, message),
    )
    await record(
        event,
        subject=subjects.telegram_bind_requested(message.chat.id),
        key=key,
        task_number=args.task_number,
        requester_is_admin=event.requester_is_admin,
    )


async def on_unbind_command(message: Message, event_update: Update, record: Record, bot: Bot) -> None:
    key = telegram_unbind_key(message.chat.id, message.message_id)
    if (request := command_request(message, event_update, key)) is None:
        return
    event = UnbindRequested(**request, requester_is_admin=await requester_is_admin(bot, message))
    # Same subject as /task: the binder sees a group's bind and unbind requests in order.
    await record(event, subject=subjects.telegram_bind_requested(message.chat.id), key=key)


async def on_lang_command(
    message: Message, command: CommandObject, event_update: Update, record: Record, bot: Bot
) -> None:
    # Bounded: the binder echoes it in a refusal.
    language = (command.args or "").strip().lower()[:16]
    key = telegram_language_key(message.chat.id, message.message_id)
    if (request := command_request(message, event_update, key)) is None:
        return
    event = GroupLanguageRequested(
        **request,
        language=language,
        requester_is_admin=await requester_is_admin(bot, message),
    )
    # Same subject as /task: the binder sees a group's requests in the order written.
    await record(event, subject=subjects.telegram_bind_requested(message.chat.id), key=key)


async def task_for_other_bot(message: Message, bot_profile: BotProfile) -> bool | dict[str, str]:
    """Filter: ``/task@<another bot>``; hands the handler that bot's username as ``addressed``."""
    addressed = command_for_other_bot(message.text, "task", bot_profile.username)
    return {"addressed": addressed} if addressed else False


async def on_task_for_other_bot(
    message: Message, event_update: Update, record: Record, addressed: str
) -> None:
    # Written to the group like any message: carried as one (if the group is bound).
    await on_group_message(message, event_update, record)
    key = telegram_other_bot_key(message.chat.id, message.message_id)
    event = OtherBotCommanded(
        **about_message(event_update, message, key),
        bot_username=addressed,
        command="task",
        sent_by=content.sender_of(message),
        thread_id=content.thread_of(message),
    )
    await record(event, subject=subjects.telegram_other_bot_commanded(message.chat.id), key=key)


QuestionHandler = Callable[[Message, Update, Record, BotProfile, Bot, OtherBots], Awaitable[None]]


def question_handler(command: GroupCommand) -> QuestionHandler:
    """The handler of ``/status`` or ``/help``: both only ask the relay for an answer."""

    async def on_question(
        message: Message,
        event_update: Update,
        record: Record,
        bot_profile: BotProfile,
        bot: Bot,
        other_bots: OtherBots,
    ) -> None:
        key = telegram_command_key(message.chat.id, message.message_id)
        if (request := command_request(message, event_update, key)) is None:
            return
        # Asked at /status only: a Bot API call (and a stream read) per message would be waste.
        others = await other_bots.in_group(bot, message.chat.id) if command is GroupCommand.STATUS else []
        event = GroupCommandReceived(
            **request,
            command=command,
            bot_reads_all_messages=bot_profile.reads_all_group_messages,
            bot_username=bot_profile.username,
            other_bots=others,
        )
        await record(event, subject=subjects.telegram_group_command(message.chat.id), key=key)

    return on_question


def build_commands_router() -> Router:
    router = Router(name="telegram_gateway.commands")
    texts_in_groups = (filters.in_group_chat, filters.has_text)
    router.message.register(on_task_command, *texts_in_groups, Command("task", ignore_case=True))
    router.message.register(on_unbind_command, *texts_in_groups, Command("unbind", ignore_case=True))
    router.message.register(on_lang_command, *texts_in_groups, Command("lang", ignore_case=True))
    for command in GroupCommand:
        router.message.register(
            question_handler(command), *texts_in_groups, Command(command.value, ignore_case=True)
        )
    router.message.register(on_task_for_other_bot, *texts_in_groups, task_for_other_bot)
    return router
