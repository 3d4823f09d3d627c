"""How fast the relay may talk to Telegram, shared by every relay replica through NATS KV.

Telegram allows a group about 20 messages a minute and a bot about 30 messages a second, and
answers more with 429 (and, repeated, with longer bans). So the relay paces itself instead of
waiting for 429s:

* per group: the next message goes no earlier than ``window / limit`` seconds after the
  previous one was *answered* (measured from the answer, so transit time cannot bunch two
  sends together at Telegram's end); then no window of ``window`` seconds ever holds more than
  ``limit`` messages. A 429 moves the group's next turn to exactly ``retry_after`` from now.
* per bot: a reservation every ``1 / per_second`` seconds, taken with compare-and-set on one
  key, so two replicas never take the same slot.

Keys in the ``telegram_pace`` bucket: ``chat.<chat_id>`` and ``bot`` hold the time (Unix
seconds) of the next allowed send; ``owner.<chat_id>`` names the replica sending to that group
and until when (``GroupLeases``): one sender per group keeps its messages in order and lets it
combine what waits.

What each send costs in round trips to NATS: only the lease holder writes a group's
``chat.<id>``, so the holder remembers what it wrote and reads the key only when it takes the
group over (``forget``); a lease is renewed in the bucket only once half its time is used up
(until then the holder's own record of it answers), and renewed or released with the revision
it last wrote (one call, no read first). A pace faster than ``NEGLIGIBLE_INTERVAL_S`` (pacing
switched off by settings) keeps no shared state at all: the bookkeeping would cost more than
the wait it enforces.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import nats.js.errors

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]
# Re-read the shared state at least this often while waiting (another replica may change it).
_MAX_NAP_S = 5.0
# Intervals below this are not paced (a KV round trip takes about as long).
NEGLIGIBLE_INTERVAL_S = 0.001


async def _read(kv: Any, key: str) -> tuple[bytes | None, int]:
    """(value, revision); (None, 0) when the key does not exist."""
    try:
        entry = await kv.get(key)
    except nats.js.errors.NotFoundError:  # never set, or deleted
        return None, 0
    return entry.value, int(entry.revision)


async def _swap(kv: Any, key: str, value: bytes, revision: int) -> int | None:
    """Write ``value`` if the key is still at ``revision`` (0: absent): the new revision, or
    None if someone was first."""
    try:
        if revision:
            return int(await kv.update(key, value, last=revision))
        return int(await kv.create(key, value))
    except nats.js.errors.KeyWrongLastSequenceError:
        return None


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
                value, _ = await _read(self._kv, f"chat.{chat_id}")
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
            value, revision = await _read(self._kv, "bot")
            now = self._clock()
            next_at = float(value) if value else 0.0
            if next_at > now:
                await self._sleep(min(next_at - now, _MAX_NAP_S))
                continue
            reserved = str(now + messages * self._bot_interval_s).encode()
            if await _swap(self._kv, "bot", reserved, revision) is not None:
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


class GroupLeases:
    """Which relay replica sends to a group: a lease that its holder renews before each call."""

    def __init__(self, kv: Any, *, owner: str, ttl_s: float = 120.0, clock: Clock = time.time) -> None:
        self._kv = kv
        self._owner = owner
        self._ttl_s = ttl_s
        self._clock = clock
        # chat id -> (revision this replica wrote, until when the lease is its own).
        self._held: dict[int, tuple[int, float]] = {}

    def holds(self, chat_id: int) -> bool:
        """Whether this replica held the group's lease when it last looked (no round trip)."""
        held = self._held.get(chat_id)
        return held is not None and held[1] > self._clock()

    async def acquire(self, chat_id: int) -> bool:
        """Take or renew the group's lease; False while another replica holds it."""
        key = f"owner.{chat_id}"
        now = self._clock()
        held = self._held.get(chat_id)
        if held is not None:
            revision, until = held
            if until - now > self._ttl_s / 2:
                return True  # renewed recently: nobody else may take it before ``until``
            # Renew with the revision this replica wrote: fails if anybody wrote since.
            if await self._write(chat_id, now, revision):
                return True
        value, revision = await _read(self._kv, key)
        if value:
            holder, _, until_text = value.decode().partition(" ")
            if holder != self._owner and float(until_text or 0) > now:
                self._held.pop(chat_id, None)
                return False
        return await self._write(chat_id, now, revision)

    async def _write(self, chat_id: int, now: float, revision: int) -> bool:
        until = now + self._ttl_s
        written = await _swap(self._kv, f"owner.{chat_id}", f"{self._owner} {until}".encode(), revision)
        if written is None:
            self._held.pop(chat_id, None)
            return False
        self._held[chat_id] = (written, until)
        return True

    async def release_all(self) -> None:
        for chat_id in list(self._held):
            await self.release(chat_id)

    async def release(self, chat_id: int) -> None:
        held = self._held.pop(chat_id, None)
        if held is not None:
            # Fails harmlessly when another replica took the group meanwhile.
            await _swap(self._kv, f"owner.{chat_id}", f"{self._owner} 0".encode(), held[0])
            return
        key = f"owner.{chat_id}"
        value, revision = await _read(self._kv, key)
        if value and value.decode().partition(" ")[0] == self._owner:
            await _swap(self._kv, key, f"{self._owner} 0".encode(), revision)
