"""One request budget per Planfix account, shared by every service and replica that calls it.

The budget lives in NATS: a key-value bucket (``PLANFIX_PACING``) holds, per account, the
theoretical arrival time of the next request (GCRA). Taking a turn reserves
``max(stored, now) + interval`` with a compare-and-set (a lost race retries) and sleeps until
that slot. Why no pacing service, and the clock assumption: docs/architecture.md.

Over the account's daily cap (Planfix code 22) every caller stops until Planfix counts again:
``pause`` stores when that is (key ``<account>_paused``); ``paused_for`` answers from a copy
read at most every ``PAUSE_REFRESH_S``, so a pause costs no extra round trip per request.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Callable
from typing import Any, Protocol

import nats.errors
import nats.js.errors
import structlog

from bridge_lib.kvstore import ensure_bucket
from contracts.subjects import PLANFIX_PACING_BUCKET

log = structlog.get_logger("pacing")

# A reservation further ahead than this means the budget is overbooked by a burst of
# callers; they still get their slot, but say so.
_LONG_WAIT_S = 30.0
# How often a replica re-reads the account's pause (another replica may have hit the cap).
PAUSE_REFRESH_S = 10.0
# Planfix's day is at most this long: a pause further ahead was written by a wrong clock.
MAX_PAUSE_S = 26 * 3600.0
# A stored slot further ahead than this (wall clock) was written by a wrong clock, not by a
# burst of callers: it is not waited for (see ``_reserve``).
MAX_PLAUSIBLE_AHEAD_S = 600.0


class Pacer(Protocol):
    async def wait_turn(self) -> None:
        """Return when the caller may send one request."""

    async def pause(self, seconds: float) -> None:
        """Stop every caller of the account for ``seconds`` (the daily cap is used up)."""

    async def paused_for(self) -> float:
        """Seconds the account's calls are paused for still (0: not paused)."""


class PacingUnavailable(Exception):
    """The shared budget could not be read or written (NATS is down)."""


class NoPacing:
    """For tests and tools that talk to a fake with no limit (a pause is this process's own)."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._paused_until = 0.0

    async def wait_turn(self) -> None:
        return None

    async def pause(self, seconds: float) -> None:
        self._paused_until = max(self._paused_until, self._clock() + min(seconds, MAX_PAUSE_S))

    async def paused_for(self) -> float:
        return max(0.0, self._paused_until - self._clock())


def account_key(base_url: str) -> str:
    """A KV key per Planfix account: the account is its REST address (no secret in it)."""
    digest = hashlib.sha256(base_url.rstrip("/").lower().encode()).hexdigest()[:16]
    return f"account_{digest}"


class SharedPacer:
    """GCRA over one JetStream KV key; see the module docstring."""

    def __init__(
        self,
        kv: Any,
        key: str,
        *,
        rate_per_s: float,
        burst: int = 1,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Any] = asyncio.sleep,
    ) -> None:
        if rate_per_s <= 0:
            raise ValueError("rate_per_s must be positive")
        self._kv = kv
        self._key = key
        self._interval = 1.0 / rate_per_s
        # How far ahead of its theoretical time a request may go: burst-1 intervals.
        self._tolerance = max(0, burst - 1) * self._interval
        self._clock = clock
        self._sleep = sleep
        # The account's pause as last read: (until, wall clock) and when it was read (monotonic).
        self._paused_until = 0.0
        self._pause_read_at: float | None = None

    async def pause(self, seconds: float) -> None:
        """Store the pause for every replica; kept here too if NATS cannot take it now."""
        until = self._clock() + min(max(0.0, seconds), MAX_PAUSE_S)
        self._paused_until = max(self._paused_until, until)
        self._pause_read_at = time.monotonic()
        try:
            await self._kv.put(self._pause_key, f"{self._paused_until:.3f}".encode())
        except (nats.errors.Error, nats.js.errors.Error, OSError) as error:
            log.warning("planfix_pause_not_shared", error=type(error).__name__)

    async def paused_for(self) -> float:
        now_monotonic = time.monotonic()
        if self._pause_read_at is None or now_monotonic - self._pause_read_at >= PAUSE_REFRESH_S:
            self._pause_read_at = now_monotonic
            try:
                entry = await self._kv.get(self._pause_key)
                stored = float((entry.value or b"0").decode())
            except (nats.errors.Error, nats.js.errors.Error, OSError, ValueError):
                stored = 0.0  # no pause stored (or unreadable): this replica's own still holds
            if stored - self._clock() <= MAX_PAUSE_S:  # further ahead: a wrong clock wrote it
                self._paused_until = max(self._paused_until, stored)
        return max(0.0, self._paused_until - self._clock())

    @property
    def _pause_key(self) -> str:
        return f"{self._key}_paused"

    async def wait_turn(self) -> None:
        slot = await self._reserve()
        delay = slot - self._clock()
        if delay > _LONG_WAIT_S:
            log.warning("planfix_pacing_long_wait", wait_s=round(delay, 1))
        if delay > 0:
            await self._sleep(delay)

    async def _reserve(self) -> float:
        """Book the next slot with compare-and-set; the slot's start time (wall clock)."""
        while True:
            try:
                stored, revision = await self._read()
                now = self._clock()
                if stored - now > MAX_PLAUSIBLE_AHEAD_S:
                    # A replica whose clock runs ahead booked it: start again from our now rather
                    # than wait for a slot minutes away (a clock behind only books slots early).
                    log.warning("planfix_pacing_slot_implausible", ahead_s=round(stored - now, 1))
                    stored = now
                arrival = max(stored, now)
                value = f"{arrival + self._interval:.6f}".encode()
                if revision is None:
                    await self._kv.create(self._key, value)
                else:
                    await self._kv.update(self._key, value, last=revision)
            except nats.js.errors.KeyWrongLastSequenceError:
                continue  # another caller booked first: read its booking and go after it
            except (nats.errors.Error, nats.js.errors.Error, OSError) as error:
                raise PacingUnavailable(
                    f"Planfix pacing budget unavailable: {type(error).__name__}"
                ) from error
            return arrival - self._tolerance

    async def _read(self) -> tuple[float, int | None]:
        try:
            entry = await self._kv.get(self._key)
        except nats.js.errors.KeyNotFoundError:
            return 0.0, None
        try:
            return float((entry.value or b"0").decode()), entry.revision
        except ValueError:
            return 0.0, entry.revision


async def open_pacing_bucket(js: Any, *, replicas: int = 1) -> Any:
    """The pacing bucket, created on first use (file storage: a restarted NATS must not hand
    out a burst of slots that were already used)."""
    return await ensure_bucket(js, PLANFIX_PACING_BUCKET, replicas=replicas)


async def shared_pacer(
    js: Any, *, base_url: str, rate_per_s: float, burst: int, replicas: int = 1
) -> SharedPacer:
    kv = await open_pacing_bucket(js, replicas=replicas)
    return SharedPacer(kv, account_key(base_url), rate_per_s=rate_per_s, burst=burst)
