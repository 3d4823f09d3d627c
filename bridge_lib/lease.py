"""Leases in a JetStream key-value bucket: one holder at a time among a service's replicas.

A lease is a key holding ``{"owner", "until"}``, written with compare-and-set on the revision
its holder wrote last (the revision is the fencing token), so a holder that paused past ``until``
and was taken over learns it at its next write. ``Leases`` holds many keys for one replica (the
relay's groups); ``Lease`` is one key held while a loop works (the relay's Telegram -> Planfix
consumer, Planfix re-reads).

Another replica's ``until`` is written by another clock, so it is not what decides: a lease has
lapsed when its revision stayed the same for a whole lease time as this replica's monotonic clock
measures it (a live holder rewrites it every half lease time), or when even a clock
``CLOCK_TOLERANCE_S`` off would call it long over (a holder that died long ago is not waited for).
A replica whose clock is up to that far off therefore never takes a lease still held.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import msgspec
import nats.errors
import nats.js.errors
import structlog

from bridge_lib.kvstore import compare_and_set, read_entry

log = structlog.get_logger("lease")


# How far apart two replicas' wall clocks may be without a lease being taken while still held.
CLOCK_TOLERANCE_S = 300.0


class LeaseLost(Exception):
    """Another replica holds the lease now."""


class _Holder(msgspec.Struct, frozen=True):
    owner: str
    until: float


def _holder(value: bytes) -> _Holder | None:
    try:
        return msgspec.json.decode(value, type=_Holder)
    except (msgspec.DecodeError, msgspec.ValidationError):
        pass
    # Group leases were written as "<owner> <until>" before: read them while a replica may.
    owner, _, until = value.decode(errors="replace").partition(" ")
    try:
        return _Holder(owner=owner, until=float(until or 0))
    except ValueError:
        return None


class Leases:
    """The leases one replica (``owner``) takes on keys of one bucket.

    A lease is renewed in the bucket only once half its time is used up; until then the
    holder's own record of it answers ``acquire`` without a round trip.
    """

    def __init__(
        self,
        kv: Any,
        *,
        owner: str,
        ttl_s: float,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] | None = None,
    ) -> None:
        self._kv = kv
        self._owner = owner
        self._ttl_s = ttl_s
        # Wall clock: only for the ``until`` written (what others see); every decision of this
        # replica's own runs on the monotonic clock (a wall clock stepped by NTP moves nothing).
        self._clock = clock
        # A test's own clock stands for both.
        self._monotonic = monotonic or (time.monotonic if clock is time.time else clock)
        # key -> (revision this replica wrote, until when the lease is its own: monotonic)
        self._held: dict[str, tuple[int, float]] = {}
        # key -> (another holder's revision, when this replica first saw it, monotonic)
        self._seen: dict[str, tuple[int, float]] = {}

    def holds(self, key: str) -> bool:
        """Whether this replica held the lease when it last looked (no round trip)."""
        held = self._held.get(key)
        return held is not None and held[1] > self._monotonic()

    async def acquire(self, key: str) -> bool:
        """Take or renew the lease; False while another replica holds it."""
        now = self._clock()
        held = self._held.get(key)
        if held is not None:
            revision, until = held
            if until - self._monotonic() > self._ttl_s / 2:
                return True  # renewed recently: nobody else may take it before ``until``
            if await self._write(key, revision):
                return True
        value, revision = await read_entry(self._kv, key)
        holder = _holder(value) if value else None
        if (
            holder is not None
            and holder.owner != self._owner
            and not self._lapsed(key, revision, holder, now)
        ):
            self._held.pop(key, None)
            return False
        return await self._write(key, revision)

    def _lapsed(self, key: str, revision: int, holder: _Holder, now: float) -> bool:
        """Whether another replica's lease is over, without trusting its clock (module docstring)."""
        if holder.until <= 0:
            return True  # let go
        seen = self._seen.get(key)
        if seen is None or seen[0] != revision:
            seen = self._seen[key] = (revision, self._monotonic())
        if self._monotonic() - seen[1] >= self._ttl_s:
            return True  # not renewed for a whole lease time, by our own clock
        return holder.until + max(self._ttl_s, CLOCK_TOLERANCE_S) < now

    async def renew(self, key: str) -> bool:
        """Write the lease again now; False when another replica wrote it since."""
        held = self._held.get(key)
        return held is not None and await self._write(key, held[0])

    async def release(self, key: str) -> None:
        """Let go (fails harmlessly when another replica took the lease meanwhile)."""
        held = self._held.pop(key, None)
        if held is None:
            value, revision = await read_entry(self._kv, key)
            holder = _holder(value) if value else None
            if holder is None or holder.owner != self._owner:
                return
            held = (revision, 0.0)
        await compare_and_set(self._kv, key, self._value(0.0), held[0])

    async def release_all(self) -> None:
        for key in list(self._held):
            await self.release(key)

    async def _write(self, key: str, revision: int) -> bool:
        # Both times taken before the round trip: the lease is ours a little less long than
        # anyone else will grant it.
        until, held_until = self._clock() + self._ttl_s, self._monotonic() + self._ttl_s
        written = await compare_and_set(self._kv, key, self._value(until), revision)
        if written is None:
            self._held.pop(key, None)
            return False
        self._held[key] = (written, held_until)
        self._seen.pop(key, None)
        return True

    def _value(self, until: float) -> bytes:
        return msgspec.json.encode(_Holder(owner=self._owner, until=until))


class Lease:
    """One lease, held while a loop works: ``acquire`` waits for it, ``keep`` renews it."""

    def __init__(self, kv: Any, key: str, *, owner: str, ttl_s: float = 15.0) -> None:
        self._key = key
        self._owner = owner
        self._ttl_s = ttl_s
        self._leases = Leases(kv, owner=owner, ttl_s=ttl_s)

    async def acquire(self) -> None:
        """Wait until this replica holds the lease."""
        announced = False
        while not await self._leases.acquire(self._key):
            if not announced:
                log.info("lease_standby", lease=self._key)
                announced = True
            await asyncio.sleep(self._ttl_s / 3)
        log.info("lease_acquired", lease=self._key, owner=self._owner)

    async def keep(self) -> None:
        """Renew until cancelled; raises ``LeaseLost`` when another replica took over."""
        held_until = time.monotonic() + self._ttl_s
        while True:
            await asyncio.sleep(self._ttl_s / 3)
            try:
                renewed = await self._leases.renew(self._key)
            except (nats.errors.Error, OSError) as error:
                # NATS unreachable: keep trying while the lease still runs, then give way.
                if time.monotonic() >= held_until:
                    raise LeaseLost(self._key) from error
                log.warning("lease_renewal_failed", lease=self._key, error=type(error).__name__)
                continue
            if not renewed:
                log.warning("lease_lost", lease=self._key)
                raise LeaseLost(self._key)
            held_until = time.monotonic() + self._ttl_s

    async def release(self) -> None:
        try:
            await self._leases.release(self._key)
        except nats.js.errors.Error as error:
            log.info("lease_release_skipped", error=type(error).__name__)
