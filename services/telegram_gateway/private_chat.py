"""The bot's private chat: ``/link``, ``/unlink``, ``/whoami`` (and ``/start``, ``/help``).

Each command is a NATS request to the binder (``AnswerPrivateCommand``), answered here at once.
Not an event in a stream, unlike everything said in groups: a ``/link`` answer holds a one-time
code, which no stream or log may keep. One answer per command, to the person who asked, so the
group pacing of the relay has nothing to do here.

``/start link`` (the bot's deep link ``t.me/<bot>?start=link``, given in groups) is ``/link``.
"""

from __future__ import annotations

import html
import time
from collections.abc import Awaitable, Callable

import msgspec
import structlog
from aiogram import Router
from aiogram.filters import Command, CommandObject, CommandStart
from aiogram.types import Message, Update
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeout

from bridge_lib.i18n import DEFAULT_LANGUAGE, N_, Translator, language_or_default, translator
from contracts import subjects
from contracts.events import (
    AnswerPrivateCommand,
    PrivateAnswer,
    PrivateCommand,
    PrivateCommandAnswered,
    root_envelope,
)
from services.telegram_gateway import content, filters

log = structlog.get_logger("telegram_gateway.private_chat")

# What the bot offers in the command menu of private chats.
PRIVATE_COMMANDS = {
    "link": N_("Link your Telegram to your Planfix account"),
    "whoami": N_("Who you are in Planfix"),
    "unlink": N_("Undo the link to your Planfix account"),
    "help": N_("What this bot does"),
}

PRIVATE_HELP = N_(
    "I carry messages between Telegram groups and Planfix tasks. Here you link your Telegram to "
    "your Planfix account, so that what you write in groups appears in Planfix as yours and you "
    "may bind tasks you take part in.\n"
    "/link gives a one-time code to write as a comment in any Planfix task.\n"
    "/whoami says who you are in Planfix.\n"
    "/unlink undoes the link."
)
NO_ANSWER = N_(
    "The bridge cannot answer just now (it may be restarting). Nothing changed; try again in a minute."
)


def person_texts(message: Message, default_language: str) -> Translator:
    """A private chat speaks the person's Telegram language, else the bridge's default."""
    code = message.from_user.language_code if message.from_user else None
    return translator(language_or_default(code, default_language))


def answer_text(answer: PrivateCommandAnswered, t: Translator | None = None) -> str:
    """What the person reads for the binder's answer (in their language, ``t``)."""
    texts = t or translator()
    name = html.escape(answer.person_name or "")
    match answer.answer:
        case PrivateAnswer.CODE_ISSUED:
            minutes = (answer.expires_in_s or 0) // 60
            return texts.ngettext(
                "Your code: <code>{code}</code>\n"
                "Within {minutes} minute, write it as a comment in any Planfix task, signed in as "
                "yourself. I link you to the Planfix employee who writes it and then delete that "
                "comment. The code works once; do not share it.",
                "Your code: <code>{code}</code>\n"
                "Within {minutes} minutes, write it as a comment in any Planfix task, signed in as "
                "yourself. I link you to the Planfix employee who writes it and then delete that "
                "comment. The code works once; do not share it.",
                minutes,
            ).format(code=html.escape(answer.code or ""), minutes=minutes)
        case PrivateAnswer.ALREADY_LINKED:
            return texts.gettext(
                "You are already linked to Planfix as {name}. Write /unlink first to link another account."
            ).format(name=name)
        case PrivateAnswer.TOO_MANY_CODES:
            minutes = max(1, -(-(answer.retry_after_s or 60) // 60))
            return texts.gettext("That is enough codes for an hour. Try again in {minutes} min.").format(
                minutes=minutes
            )
        case PrivateAnswer.UNLINKED:
            return texts.gettext(
                "Done: you no longer act in Planfix as {name}. /link links you again."
            ).format(name=name)
        case PrivateAnswer.NOT_LINKED:
            return texts.gettext(
                "You are not linked to a Planfix employee. If your Planfix profile names your Telegram, "
                "it is found by itself; otherwise write /link."
            )
        case PrivateAnswer.LINKED:
            return texts.gettext("You act in Planfix as {name} ({id}).").format(
                name=name, id=html.escape(answer.planfix_person_id or "")
            )
        case PrivateAnswer.PLANFIX_AWAY:
            return texts.gettext(
                "Planfix cannot be reached just now. Nothing changed; try again in a few minutes."
            )
    return texts.gettext(NO_ANSWER)


AskBinder = Callable[[AnswerPrivateCommand], Awaitable[PrivateCommandAnswered | None]]


class BinderAsker:
    """Sends a private command to the binder over NATS and waits for its answer."""

    def __init__(self, connection: object, *, timeout_s: float = 10.0) -> None:
        self._nc = connection
        self._timeout_s = timeout_s

    async def __call__(self, command: AnswerPrivateCommand) -> PrivateCommandAnswered | None:
        try:
            reply = await self._nc.request(  # type: ignore[attr-defined]
                subjects.BINDER_PRIVATE_COMMAND, msgspec.json.encode(command), timeout=self._timeout_s
            )
            return msgspec.json.decode(reply.data, type=PrivateCommandAnswered)
        except (NatsTimeout, NoRespondersError, msgspec.DecodeError, msgspec.ValidationError) as error:
            log.warning("binder_did_not_answer", command=str(command.command), error=type(error).__name__)
            return None


async def _ask(
    message: Message,
    event_update: Update,
    ask_binder: AskBinder,
    command: PrivateCommand,
    default_language: str,
) -> None:
    if message.from_user is None:
        return
    key = f"tg:private:{message.chat.id}:{message.message_id}"
    request = AnswerPrivateCommand(
        **root_envelope(key, caused_by=f"tg:update:{event_update.update_id}"),
        command=command,
        user=content.user_of(message.from_user),
        language_code=message.from_user.language_code,
    )
    with structlog.contextvars.bound_contextvars(correlation_id=request.correlation_id):
        answered = await ask_binder(request)
        # The answer's kind only: a /link answer holds a code.
        log.info(
            "private_command_answered",
            command=str(command),
            answer=str(answered.answer) if answered else None,
        )
    t = person_texts(message, default_language)
    await message.answer(answer_text(answered, t) if answered else t.gettext(NO_ANSWER))


async def on_link(
    message: Message, event_update: Update, ask_binder: AskBinder, default_language: str = DEFAULT_LANGUAGE
) -> None:
    await _ask(message, event_update, ask_binder, PrivateCommand.LINK, default_language)


async def on_unlink(
    message: Message, event_update: Update, ask_binder: AskBinder, default_language: str = DEFAULT_LANGUAGE
) -> None:
    await _ask(message, event_update, ask_binder, PrivateCommand.UNLINK, default_language)


async def on_whoami(
    message: Message, event_update: Update, ask_binder: AskBinder, default_language: str = DEFAULT_LANGUAGE
) -> None:
    await _ask(message, event_update, ask_binder, PrivateCommand.WHOAMI, default_language)


async def on_start(
    message: Message,
    command: CommandObject,
    event_update: Update,
    ask_binder: AskBinder,
    default_language: str = DEFAULT_LANGUAGE,
) -> None:
    if (command.args or "").strip().lower() == "link":
        await on_link(message, event_update, ask_binder, default_language)
        return
    await message.answer(person_texts(message, default_language).gettext(PRIVATE_HELP))


class HelpOnce:
    """Any other private message gets the help, once an hour per person: a flood of private
    messages must not spend the bot's sending budget, which the groups share."""

    def __init__(self, *, every_s: float = 3600.0, clock: Callable[[], float] = time.monotonic) -> None:
        self._every_s = every_s
        self._clock = clock
        self._last: dict[int, float] = {}

    def due(self, chat_id: int) -> bool:
        now = self._clock()
        if now - self._last.get(chat_id, -self._every_s) < self._every_s:
            return False
        if len(self._last) > 10_000:
            self._last = {chat: at for chat, at in self._last.items() if now - at < self._every_s}
        self._last[chat_id] = now
        return True


async def on_help(message: Message, default_language: str = DEFAULT_LANGUAGE) -> None:
    await message.answer(person_texts(message, default_language).gettext(PRIVATE_HELP))


async def on_anything_else(
    message: Message, private_help: HelpOnce, default_language: str = DEFAULT_LANGUAGE
) -> None:
    if not private_help.due(message.chat.id):
        log.info("private_message_ignored", chat_id=message.chat.id)
        return
    log.info("private_message_answered_with_help", chat_id=message.chat.id)
    await message.answer(person_texts(message, default_language).gettext(PRIVATE_HELP))


def build_private_chat_router() -> Router:
    router = Router(name="telegram_gateway.private_chat")
    private = filters.in_private_chat
    router.message.register(on_start, private, CommandStart())
    router.message.register(on_link, private, Command("link", ignore_case=True))
    router.message.register(on_unlink, private, Command("unlink", ignore_case=True))
    router.message.register(on_whoami, private, Command("whoami", ignore_case=True))
    router.message.register(on_help, private, Command("help", ignore_case=True))
    router.message.register(on_anything_else, private)
    return router
