"""A lease in a JetStream key-value bucket: one holder at a time among a service's replicas.

The holder writes ``{"owner", "until"}`` and renews it well before ``until`` with
compare-and-set on the revision it wrote last; anyone may take a lease whose ``until`` passed.
A holder that fails to renew (another replica took over after a pause) learns it at once and
stops. Used where order matters more than parallelism (see ``services/relay/inbound_consumer``).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import msgspec
import nats.errors
import nats.js.errors
import structlog

from bridge_lib.kvstore import ensure_bucket
from contracts.subjects import LEASES_BUCKET

log = structlog.get_logger("lease")


class LeaseLost(Exception):
    """Another replica holds the lease now."""


class _Holder(msgspec.Struct, frozen=True):
    owner: str
    until: float


async def open_lease_bucket(js: Any, *, replicas: int = 1) -> Any:
    return await ensure_bucket(js, LEASES_BUCKET, replicas=replicas)


class Lease:
    def __init__(self, kv: Any, key: str, *, owner: str, ttl_s: float = 15.0) -> None:
        self._kv = kv
        self._key = key
        self._owner = owner
        self._ttl_s = ttl_s
        self._revision: int | None = None

    async def acquire(self) -> None:
        """Wait until this replica holds the lease."""
        announced = False
        while not await self._try_take():
            if not announced:
                log.info("lease_standby", lease=self._key)
                announced = True
            await asyncio.sleep(self._ttl_s / 3)
        log.info("lease_acquired", lease=self._key, owner=self._owner)

    async def keep(self) -> None:
        """Renew until cancelled; raises ``LeaseLost`` when another replica took over."""
        held_until = time.time() + self._ttl_s
        while True:
            await asyncio.sleep(self._ttl_s / 3)
            try:
                value = self._value()
                self._revision = await self._kv.update(self._key, value, last=self._revision)
                held_until = msgspec.json.decode(value, type=_Holder).until
            except nats.js.errors.KeyWrongLastSequenceError as error:
                log.warning("lease_lost", lease=self._key)
                raise LeaseLost(self._key) from error
            except (nats.errors.Error, OSError) as error:
                # NATS unreachable: keep trying while the lease still runs, then give way.
                if time.time() >= held_until:
                    raise LeaseLost(self._key) from error
                log.warning("lease_renewal_failed", lease=self._key, error=type(error).__name__)

    async def release(self) -> None:
        if self._revision is None:
            return
        try:
            await self._kv.delete(self._key, last=self._revision)
        except nats.js.errors.Error as error:
            log.info("lease_release_skipped", error=type(error).__name__)
        self._revision = None

    async def _try_take(self) -> bool:
        try:
            entry = await self._kv.get(self._key)
        except (nats.js.errors.KeyNotFoundError, nats.js.errors.KeyDeletedError):
            entry = None
        try:
            if entry is None or not entry.value:
                self._revision = await self._kv.create(self._key, self._value())
                return True
            holder = msgspec.json.decode(entry.value, type=_Holder)
            if holder.owner == self._owner or holder.until < time.time():
                self._revision = await self._kv.update(self._key, self._value(), last=entry.revision)
                return True
        except (nats.js.errors.KeyWrongLastSequenceError, msgspec.DecodeError, msgspec.ValidationError):
            return False
        return False

    def _value(self) -> bytes:
        return msgspec.json.encode(_Holder(owner=self._owner, until=time.time() + self._ttl_s))
