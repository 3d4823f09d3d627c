"""Other bots of a group that answer ``/task`` too, as far as the Bot API lets us see them.

Planfix's own Telegram integration takes ``/task`` as well; bound by both, a group's every
message reaches Planfix twice. Bots never receive each other's messages, so two traces are all
there is: ``getChatAdministrators(return_bots=True)`` lists the bots that are admins, and a
``/task@<other bot>`` written in the group is visible (stored as ``OtherBotCommanded``, see
``commands``). ``/status`` asks for both when someone asks (never per message) and carries the
names; the relay says what they lead to, ``bridge doctor`` does the same for bound groups.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

import msgspec
import nats.js.errors
import structlog
from aiogram import Bot
from aiogram.exceptions import ClientDecodeError, TelegramAPIError
from aiogram.types import User

from contracts import subjects
from contracts.events import OtherBotCommanded, decode_event
from contracts.subjects import TELEGRAM_STREAM

log = structlog.get_logger("telegram_gateway.other_bots")

# Telegram usernames: 5-32 letters, digits and "_"; bots' end in "bot" (not checked: any will do).
_COMMAND_FOR_A_BOT = re.compile(r"/([A-Za-z0-9_]+)@([A-Za-z0-9_]{1,64})(?=\s|$)")
# At most this many stored /task@<bot> are read per /status (each is one JetStream request).
MAX_SEEN_READ = 20


def command_for_other_bot(text: str | None, command: str, me: str | None) -> str | None:
    """The bot ``text`` addresses ``/<command>@<bot>`` to, when that bot is not us."""
    found = _COMMAND_FOR_A_BOT.match(text or "")
    if found is None or found[1].lower() != command.lower():
        return None
    bot = found[2]
    return None if me is not None and bot.lower() == me.lower() else bot


def named(users: Iterable[User], me_id: int) -> list[str]:
    """The bots among ``users`` other than us, by username (by name when they have none)."""
    return [user.username or user.full_name for user in users if user.is_bot and user.id != me_id]


def merged(*groups: Iterable[str]) -> list[str]:
    """One list, each bot once (usernames are case-insensitive), in the order first named."""
    seen: dict[str, str] = {}
    for group in groups:
        for name in group:
            seen.setdefault(name.lower(), name)
    return list(seen.values())


class OtherBots:
    """Which other bots of a group may answer /task too; injected into handlers as ``other_bots``."""

    def __init__(self, *, me_id: int, jetstream: Any | None) -> None:
        self._me_id = me_id
        # None (tests, benchmarks without NATS reads): only the admin list is asked.
        self._jetstream = jetstream

    async def in_group(self, bot: Bot, chat_id: int) -> list[str]:
        """Admin bots first, then bots /task was addressed to; what cannot be asked is left out
        (the answer is a hint: /status never fails for it)."""
        return merged(await self._admin_bots(bot, chat_id), await self._commanded(chat_id))

    async def _admin_bots(self, bot: Bot, chat_id: int) -> list[str]:
        try:
            admins = await bot.get_chat_administrators(chat_id=chat_id, return_bots=True)
        except (TelegramAPIError, ClientDecodeError) as error:
            log.warning("chat_administrators_unknown", chat_id=chat_id, error=type(error).__name__)
            return []
        return named((member.user for member in admins), self._me_id)

    async def _commanded(self, chat_id: int) -> list[str]:
        if self._jetstream is None:
            return []
        subject = subjects.telegram_other_bot_commanded(chat_id)
        names: list[str] = []
        seq = 1
        try:
            for _ in range(MAX_SEEN_READ):
                # The next stored message on this subject from ``seq`` on; none left: NotFoundError.
                raw = await self._jetstream.get_msg(TELEGRAM_STREAM.name, seq, subject=subject, next=True)
                seq = raw.seq + 1
                try:
                    event = decode_event(raw.data or b"")
                except (msgspec.DecodeError, msgspec.ValidationError):
                    continue
                if isinstance(event, OtherBotCommanded):
                    names.append(event.bot_username)
        except nats.js.errors.NotFoundError:
            pass
        except Exception as error:
            log.warning("other_bots_not_read", chat_id=chat_id, error=type(error).__name__)
        return merged(names)
