"""How long the services' MongoDB records are kept: ``RETENTION_DAYS`` (default 90).

Records of effects and mappings (what was posted, sent, decided; which message became which
comment) exist to recognise a redelivered or replayed event and to carry edits. After
``RETENTION_DAYS`` they go: a replay of events older than that may carry them again (the
stream windows, 30 days, are shorter, so only an operator's replay from a backup can).
State (bindings, the outbox's waiting items, who a Telegram person is in Planfix) is not a
record and is kept.

Two mechanisms, so both stores behave the same:

* a TTL index on each record collection (``expireAfterSeconds``) on real MongoDB, whose own
  monitor deletes expired documents about once a minute;
* a sweep every ``RETENTION_SWEEP_INTERVAL_MIN`` (hourly), the fallback: it stamps records that
  carry no date with ``recorded_at`` (their clock starts when first seen, at most one sweep late)
  and deletes those past the retention. nx-27017 (``make run``, tests) accepts TTL indexes but
  expires documents only when a collection is read, scanning it on every read; there the bridge
  creates no TTL index and the sweep does the deleting.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from pydantic import Field
from pymongo.errors import OperationFailure, PyMongoError

from bridge_lib.settings import BridgeSettings

log = structlog.get_logger("retention")

RECORDED_AT = "recorded_at"
TTL_INDEX = "retention_ttl"
DAY_S = 86_400


class RetentionSettings(BridgeSettings):
    # Effect and mapping records are deleted this many days after they were written.
    retention_days: int = Field(default=90, alias="RETENTION_DAYS", ge=1)
    retention_sweep_interval_min: float = Field(default=60.0, alias="RETENTION_SWEEP_INTERVAL_MIN", gt=0)


async def is_embedded_store(database: Any) -> bool:
    """True on nx-27017, which names itself in ``buildInfo``."""
    try:
        info = await database.client.admin.command("buildInfo")
    except PyMongoError:
        return False
    return str(info.get("process", "")).startswith("nx_27017")


async def ensure_ttl_indexes(database: Any, collections: Mapping[str, str], *, days: int) -> bool:
    """A TTL index on each collection's date field (``collections``: name -> field); False on
    the embedded store, where the sweep alone expires records. A changed ``RETENTION_DAYS``
    replaces the index."""
    if await is_embedded_store(database):
        return False
    seconds = days * DAY_S
    for name, date_field in collections.items():
        collection = database[name]
        existing = (await collection.index_information()).get(TTL_INDEX)
        if existing is not None and existing.get("expireAfterSeconds") != seconds:
            await collection.drop_index(TTL_INDEX)
        with contextlib.suppress(OperationFailure):  # the same index made by another replica
            await collection.create_index(date_field, name=TTL_INDEX, expireAfterSeconds=seconds)
    return True


async def sweep(
    database: Any, collections: Mapping[str, str], *, days: int, now: datetime | None = None
) -> dict[str, int]:
    """Stamp undated records, delete those older than ``days``; how many went per collection."""
    now = now or datetime.now(UTC)
    cutoff = now - timedelta(days=days)
    deleted: dict[str, int] = {}
    for name, date_field in collections.items():
        collection = database[name]
        if date_field == RECORDED_AT:
            await collection.update_many({RECORDED_AT: {"$exists": False}}, {"$set": {RECORDED_AT: now}})
        result = await collection.delete_many({date_field: {"$lt": cutoff}})
        deleted[name] = int(result.deleted_count)
    return deleted


async def keep_sweeping(
    database: Any,
    collections: Mapping[str, str],
    *,
    days: int,
    interval_s: float,
    sleep: Callable[[float], Any] = asyncio.sleep,
) -> None:
    """Sweep now and every ``interval_s`` until cancelled; a failed sweep is logged and retried."""
    while True:
        try:
            deleted = await sweep(database, collections, days=days)
            if any(deleted.values()):
                log.info("records_expired", retention_days=days, **deleted)
        except PyMongoError as error:
            log.warning("retention_sweep_failed", error=type(error).__name__)
        await sleep(interval_s)


async def start_retention(
    database: Any, collections: Mapping[str, str], settings: RetentionSettings
) -> asyncio.Task[None]:
    """A service's records expire: TTL indexes where the store has them, and the sweep running
    (cancel the task on the way out)."""
    await ensure_ttl_indexes(database, collections, days=settings.retention_days)
    return asyncio.create_task(
        keep_sweeping(
            database,
            collections,
            days=settings.retention_days,
            interval_s=settings.retention_sweep_interval_min * 60,
        ),
        name="retention",
    )
