"""The relay, composed: settings -> clients -> the two wings (``to_planfix``, ``to_telegram``)
-> run until stopped. The wings share only what ``shared.Shared`` holds and ``effects``."""

from __future__ import annotations

import asyncio
import os
import socket
import uuid

import structlog

from bridge_lib.eventbus import EventPublisher, ensure_streams, start_subscribers
from bridge_lib.health import consumer_ref, mongo_ping
from bridge_lib.kvstore import bucket_when_ready
from bridge_lib.lease import Lease
from bridge_lib.people_directory import PeopleDirectory
from bridge_lib.planfix_setup import checked_planfix_client
from bridge_lib.retention import RECORDED_AT, start_retention
from bridge_lib.runtime import broker_and_health, freeze_startup_heap, wait_for_stop_signal
from bridge_lib.store import store_client
from bridge_lib.telegram import make_bot, telegram_self_check
from contracts.subjects import (
    LEASES_BUCKET,
    RELAY_PLANFIX_COMMENT_CHANGES,
    RELAY_TELEGRAM_INBOUND,
    TELEGRAM_PACE_BUCKET,
)
from services.relay import to_planfix, to_telegram
from services.relay.config import RelaySettings
from services.relay.directory import BindingDirectory
from services.relay.shared import Shared

log = structlog.get_logger("relay")
# Of the 10 s a stop may take, what the Telegram -> Planfix step in flight gets to finish.
INBOUND_STOP_GRACE_S = 7.0
# A batch of comments into the outbox takes milliseconds; what is not stored by then stays for
# the next holder.
COMMENTS_STOP_GRACE_S = 1.0
BATCH_CONSUMERS = [consumer_ref(RELAY_TELEGRAM_INBOUND), consumer_ref(RELAY_PLANFIX_COMMENT_CHANGES)]
# The relay's records (collection -> date field), deleted after RETENTION_DAYS (bridge_lib.retention);
# the waiting outbox and the contacts made for Telegram people are state, kept.
RECORD_COLLECTIONS = {
    "telegram_outbox_finished": "finished_at",
    "comment_ledger": RECORDED_AT,
    "comment_ledger_leads": RECORDED_AT,
    "telegram_sent_comments": RECORDED_AT,
    "telegram_combined_messages": RECORDED_AT,
}


async def run(settings: RelaySettings) -> None:
    mongo = store_client(settings.mongodb_url)
    database = mongo[settings.mongodb_database]
    bot = make_bot(
        settings.telegram_bot_token.get_secret_value(),
        api_base_url=settings.telegram_api_base_url,
        timeout_s=30.0,
    )
    broker, health = await broker_and_health(
        "relay", settings, checks={"mongodb": mongo_ping(mongo)}, extra_consumers=BATCH_CONSUMERS
    )
    await broker.connect()
    await ensure_streams(
        broker, replicas=settings.nats_stream_replicas, timeout_s=settings.nats_startup_timeout_s
    )
    js = broker.connection.jetstream()
    planfix = await checked_planfix_client(settings, js, settings)
    if planfix is None or not await telegram_self_check(bot):
        raise SystemExit(2)
    directory = BindingDirectory()
    await directory.start(js)
    people = PeopleDirectory()
    await people.start(js)
    shared = Shared(
        database=database,
        bot=bot,
        planfix=planfix,
        publisher=EventPublisher(broker),
        directory=directory,
        people=people,
    )
    owner = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    lease_bucket = await bucket_when_ready(js, LEASES_BUCKET, settings)
    pace_bucket = await bucket_when_ready(js, TELEGRAM_PACE_BUCKET, settings)

    inbound = await to_planfix.build(
        settings, shared, js=js, lease=Lease(lease_bucket, "relay_inbound", owner=owner)
    )
    outbound = await to_telegram.build(
        settings,
        shared,
        nats=broker.connection,
        pace_bucket=pace_bucket,
        lease_bucket=lease_bucket,
        owner=owner,
    )
    broker.include_router(outbound.router)
    retention = await start_retention(database, RECORD_COLLECTIONS, settings)

    await start_subscribers(broker, timeout_s=settings.nats_startup_timeout_s)
    outbound.sender.start()
    inbound_task = asyncio.create_task(inbound.run(), name="inbound")
    comments_task = asyncio.create_task(outbound.comment_changes.run(), name="comment-changes")
    log.info("relay_started")
    freeze_startup_heap()
    try:
        stop = asyncio.create_task(wait_for_stop_signal())
        await asyncio.wait({stop, inbound_task, comments_task}, return_when=asyncio.FIRST_COMPLETED)
        for task in (inbound_task, comments_task):
            if task.done():
                task.result()  # it only ends by failing
        stop.cancel()
    finally:
        log.info("relay_stopping")
        retention.cancel()
        # Most of the 10 s a stop may take: the Planfix call in flight is let finish.
        await inbound.stop(inbound_task, grace_s=INBOUND_STOP_GRACE_S)
        await outbound.comment_changes.stop(comments_task, grace_s=COMMENTS_STOP_GRACE_S)
        await outbound.sender.stop()
        await directory.stop()
        await people.stop()
        await broker.stop()
        await health.stop()
        await planfix.aclose()
        await bot.session.close()
        mongo.close()
