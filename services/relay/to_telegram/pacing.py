"""How fast the relay may talk to Telegram, shared by every relay replica through NATS KV.

Telegram allows a group about 20 messages a minute and a bot about 30 a second, and answers
more with 429. Per group, the next message goes ``window / limit`` seconds after the previous one
was *answered*; a 429 moves the group's next turn to exactly ``retry_after`` from now. Per bot, a
reservation every ``1 / per_second`` seconds, taken with compare-and-set on one key. Keys in
``telegram_pace``: ``chat.<chat_id>`` and ``bot`` (Unix time of the next allowed send), and
``owner.<chat_id>``, the lease of the replica sending to that group (``group_lease_key``). Only
the lease holder writes a group's ``chat.<id>``, so it reads the key only on taking the group
over (``forget``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from bridge_lib.kvstore import compare_and_set, read_entry

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]
# Re-read the shared state at least this often while waiting (another replica may change it).
_MAX_NAP_S = 5.0
# Intervals below this are not paced (a KV round trip takes about as long).
NEGLIGIBLE_INTERVAL_S = 0.001
# A bot reservation is a fraction of a second ahead of its writer's clock (an album's parts at
# 30 a second): further ahead, the writer's clock runs ahead of ours, and waiting for it would
# hold every group that long at every send. Such a slot counts as free (Telegram's 429 still
# guards the limit).
_BOT_SLOT_MAX_AHEAD_S = 2.0


def group_lease_key(chat_id: int) -> str:
    """One sender per group keeps its messages in order and lets it combine what waits."""
    return f"owner.{chat_id}"


class TelegramPace:
    def __init__(
        self,
        kv: Any,
        *,
        group_limit: int,
        group_window_s: float,
        bot_per_second: float,
        clock: Clock = time.time,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self._kv = kv
        self.group_interval_s = group_window_s / group_limit
        self._bot_interval_s = 1.0 / bot_per_second
        self._clock = clock
        self._sleep = sleep
        # chat id -> next allowed send, as this replica last wrote or read it (see ``forget``).
        self._next_at: dict[int, float] = {}

    def forget(self, chat_id: int) -> None:
        """This replica took the group over (or let it go): read its pace from the bucket again."""
        self._next_at.pop(chat_id, None)

    async def wait_for_group(self, chat_id: int) -> None:
        """Return when the group may get its next message."""
        while True:
            next_at = self._next_at.get(chat_id)
            if next_at is None:
                value, _ = await read_entry(self._kv, f"chat.{chat_id}")
                next_at = self._next_at[chat_id] = float(value) if value else 0.0
            wait = next_at - self._clock()
            if wait <= 0:
                return
            await self._sleep(min(wait, _MAX_NAP_S))
            self.forget(chat_id)  # a long wait: look again (a 429 may have moved it)

    async def take_bot_slots(self, messages: int = 1) -> None:
        """Reserve ``messages`` of the bot's sends (waiting for them when the bot is busy)."""
        if self._bot_interval_s < NEGLIGIBLE_INTERVAL_S:
            return
        while True:
            value, revision = await read_entry(self._kv, "bot")
            now = self._clock()
            next_at = float(value) if value else 0.0
            if next_at > now + _BOT_SLOT_MAX_AHEAD_S:
                next_at = now  # written by a clock ahead of ours: see _BOT_SLOT_MAX_AHEAD_S
            if next_at > now:
                await self._sleep(min(next_at - now, _MAX_NAP_S))
                continue
            reserved = str(now + messages * self._bot_interval_s).encode()
            if await compare_and_set(self._kv, "bot", reserved, revision) is not None:
                return

    async def group_sent(self, chat_id: int, messages: int = 1) -> None:
        """Telegram answered a send of ``messages`` messages: the group's next turn starts now."""
        if self.group_interval_s < NEGLIGIBLE_INTERVAL_S and self._next_at.get(chat_id, 0.0) <= 0.0:
            return  # no pace, and no hold (429) recorded: nothing to write
        await self._set_next(chat_id, self._clock() + messages * self.group_interval_s)

    async def hold_group(self, chat_id: int, seconds: float) -> None:
        """Telegram said to wait ``seconds`` (429 retry_after): nothing goes to the group before."""
        await self._set_next(chat_id, self._clock() + seconds)

    async def _set_next(self, chat_id: int, next_at: float) -> None:
        await self._kv.put(f"chat.{chat_id}", str(next_at).encode())
        self._next_at[chat_id] = next_at
