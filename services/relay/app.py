"""Wiring: the Telegram -> Planfix batch consumer (``inbound_consumer``, one active replica),
three durable consumers (Planfix comment changes, binding decisions, group events), the binding
directory, effect records and the Telegram outbox in MongoDB, the per-group senders with their
pace in NATS KV, and the Planfix and Telegram clients."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import uuid
from functools import partial
from typing import Any, get_args
from zoneinfo import ZoneInfo

import structlog
from faststream.middlewares import AckPolicy
from faststream.nats import NatsRouter
from faststream.nats.annotations import NatsMessage
from motor.motor_asyncio import AsyncIOMotorClient

from bridge_lib.eventbus import (
    EventPublisher,
    consume,
    durable_pull,
    ensure_streams,
    jstream,
    make_broker,
    start_subscribers,
)
from bridge_lib.health import ConsumerRef, mongo_ping, start_health_server
from bridge_lib.jetstream_ready import when_jetstream_ready
from bridge_lib.kvstore import ensure_bucket
from bridge_lib.lease import Lease, open_lease_bucket
from bridge_lib.metrics import track_planfix_budget
from bridge_lib.planfix_setup import paced_planfix_client, planfix_self_check
from bridge_lib.runtime import freeze_startup_heap, wait_for_stop_signal
from bridge_lib.telegram import make_bot, telegram_self_check
from contracts import subjects
from contracts.events import BindingEvent, PlanfixCommentChange, TelegramGroupEvent
from contracts.subjects import (
    ALL_TELEGRAM_MESSAGE_ACTIVITY,
    BINDING_STREAM,
    PLANFIX_STREAM,
    TELEGRAM_PACE_BUCKET,
    TELEGRAM_STREAM,
)
from services.relay.config import RelaySettings
from services.relay.courier import Courier
from services.relay.directory import BindingDirectory
from services.relay.effects import EffectStore
from services.relay.inbound_consumer import DURABLE as INBOUND_DURABLE
from services.relay.inbound_consumer import InboundConsumer
from services.relay.inbound_store import InboundStore
from services.relay.outbox import Outbox
from services.relay.pacing import GroupLeases, TelegramPace
from services.relay.revisions import CommentRevisions
from services.relay.sender import NUDGE_SUBJECT, TelegramSender
from services.relay.sent_comments import SentComments
from services.relay.to_planfix import CombineLimits, ToPlanfix
from services.relay.to_telegram import ToTelegram

log = structlog.get_logger("relay")
# Of the 10 s a stop may take, what the Telegram -> Planfix unit in flight gets to finish.
INBOUND_STOP_GRACE_S = 7.0
INBOUND_CONSUMER = ConsumerRef(TELEGRAM_STREAM.name, INBOUND_DURABLE, ALL_TELEGRAM_MESSAGE_ACTIVITY)
router = NatsRouter()


class Wiring:
    """What the subscribers hand their messages to, set by ``run`` before they start."""

    to_telegram: ToTelegram


wiring = Wiring()


# Added, updated and deleted comments through one consumer: a task's changes stay in order.
# (It replaces "relay-planfix-comments", which saw added comments only; the outbox and the
# effect records it checks make a replay by this new consumer send nothing twice.)
@router.subscriber(
    subjects.ALL_PLANFIX_COMMENT_CHANGES,
    stream=jstream(PLANFIX_STREAM),
    ack_policy=AckPolicy.MANUAL,
    **durable_pull("relay-planfix-comment-changes"),
)
async def on_planfix_comment(msg: NatsMessage) -> None:
    await consume(msg, get_args(PlanfixCommentChange), wiring.to_telegram.carry_comment_change)


@router.subscriber(
    subjects.ALL_BINDING_EVENTS,
    stream=jstream(BINDING_STREAM),
    ack_policy=AckPolicy.MANUAL,
    **durable_pull("relay-binding-notices"),
)
async def on_binding_decided(msg: NatsMessage) -> None:
    await consume(msg, get_args(BindingEvent), wiring.to_telegram.announce_binding)


@router.subscriber(
    subjects.ALL_TELEGRAM_GROUP_EVENTS,
    stream=jstream(TELEGRAM_STREAM),
    ack_policy=AckPolicy.MANUAL,
    **durable_pull("relay-group-events"),
)
async def on_group_event(msg: NatsMessage) -> None:
    await consume(msg, get_args(TelegramGroupEvent), wiring.to_telegram.answer_group_event)


async def listen_for_nudges(nc: Any, sender: TelegramSender) -> None:
    """Replicas tell each other about items stored for a group another replica holds."""

    async def on_nudge(msg: Any) -> None:
        try:
            chat_id = int(msg.data)
        except ValueError:
            log.warning("outbox_nudge_unreadable", size=len(msg.data))
            return
        sender.nudged(chat_id)

    async def nudge(chat_id: int) -> None:
        with contextlib.suppress(Exception):  # best effort: the sweep is the backstop
            await nc.publish(NUDGE_SUBJECT, str(chat_id).encode())

    await nc.subscribe(NUDGE_SUBJECT, cb=on_nudge)
    sender.nudge = nudge


async def run(settings: RelaySettings) -> None:
    mongo: AsyncIOMotorClient[dict[str, object]] = AsyncIOMotorClient(
        settings.mongodb_url, serverSelectionTimeoutMS=10_000, tz_aware=True
    )
    database = mongo[settings.mongodb_database]
    effects = EffectStore(database)
    inbound_store = InboundStore(database)
    outbox = Outbox(database)
    await outbox.create_indexes()
    bot = make_bot(
        settings.telegram_bot_token.get_secret_value(),
        api_base_url=settings.telegram_api_base_url,
        timeout_s=30.0,
    )
    broker = make_broker(settings.nats_url, name="relay")
    broker.include_router(router)
    health = await start_health_server(
        service="relay",
        broker=broker,
        host=settings.health_host,
        port=settings.health_port,
        checks={"mongodb": mongo_ping(mongo)},
        extra_consumers=[INBOUND_CONSUMER],
    )
    await broker.connect()
    await ensure_streams(
        broker, replicas=settings.nats_stream_replicas, timeout_s=settings.nats_startup_timeout_s
    )
    js = broker.connection.jetstream()
    planfix = await paced_planfix_client(
        settings,
        js,
        replicas=settings.nats_stream_replicas,
        startup_timeout_s=settings.nats_startup_timeout_s,
    )
    track_planfix_budget(planfix)
    if not await planfix_self_check(planfix) or not await telegram_self_check(bot):
        raise SystemExit(2)
    directory = BindingDirectory()
    await directory.start(js)
    publisher = EventPublisher(broker)
    owner = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"

    # Telegram -> Planfix: one active replica, batches combined into comments.
    to_planfix = ToPlanfix(
        directory=directory,
        effects=effects,
        store=inbound_store,
        planfix=planfix,
        bot=bot,
        publisher=publisher,
        planfix_source_id=settings.planfix_source_id,
        zone=ZoneInfo(settings.relay_timezone),
        recipients=settings.planfix_recipients,
        limits=CombineLimits(max_messages=settings.relay_combine_max_messages),
    )
    lease_bucket = await when_jetstream_ready(
        "the LEASES bucket",
        partial(open_lease_bucket, js, replicas=settings.nats_stream_replicas),
        timeout_s=settings.nats_startup_timeout_s,
    )
    lease = Lease(lease_bucket, "relay_inbound", owner=owner)
    inbound = InboundConsumer(
        js,
        to_planfix,
        lease,
        album_window_s=settings.relay_album_window_s,
        concurrency=settings.planfix_concurrency,
    )

    # Planfix -> Telegram: an outbox drained per group at Telegram's pace.
    pace_bucket = await when_jetstream_ready(
        f"the {TELEGRAM_PACE_BUCKET.name} bucket",
        partial(ensure_bucket, js, TELEGRAM_PACE_BUCKET, replicas=settings.nats_stream_replicas),
        timeout_s=settings.nats_startup_timeout_s,
    )
    pace = TelegramPace(
        pace_bucket,
        group_limit=settings.group_pace_messages,
        group_window_s=settings.group_pace_window_s,
        bot_per_second=settings.bot_pace_per_s,
    )
    sender = TelegramSender(
        outbox=outbox,
        pace=pace,
        leases=GroupLeases(pace_bucket, owner=owner, ttl_s=settings.group_lease_ttl_s),
        directory=directory,
        publisher=publisher,
        max_attempts=settings.send_max_attempts,
        secret=settings.telegram_bot_token.get_secret_value(),
    )
    to_telegram = ToTelegram(
        directory=directory,
        effects=effects,
        outbox=outbox,
        sender=sender,
        planfix_source_id=settings.planfix_source_id,
        planfix_web_url=settings.planfix_web_url,
    )
    sent_comments = SentComments(database)
    sender.courier = Courier(
        bot=bot,
        planfix=planfix,
        outbox=outbox,
        sent=sent_comments,
        pace=pace,
        before_call=sender.guard,
        task_url=to_telegram.task_url,
    )
    sender.revisions = CommentRevisions(bot=bot, courier=sender.courier, sent=sent_comments)
    # After the replay: only live binding changes (e.g. a resumed group) wake a sender.
    directory.on_change(sender.wake)
    await listen_for_nudges(broker.connection, sender)
    await to_telegram.start()
    wiring.to_telegram = to_telegram

    await start_subscribers(broker, timeout_s=settings.nats_startup_timeout_s)
    sender.start()
    inbound_task = asyncio.create_task(inbound.run(), name="inbound")
    log.info("relay_started")
    freeze_startup_heap()
    try:
        stop = asyncio.create_task(wait_for_stop_signal())
        await asyncio.wait({stop, inbound_task}, return_when=asyncio.FIRST_COMPLETED)
        if inbound_task.done():
            inbound_task.result()  # it only ends by failing
        stop.cancel()
    finally:
        log.info("relay_stopping")
        # Most of the 10 s a stop may take: the Planfix call in flight is let finish.
        await inbound.stop(inbound_task, grace_s=INBOUND_STOP_GRACE_S)
        await sender.stop()
        await directory.stop()
        await broker.stop()
        await health.stop()
        await planfix.aclose()
        await bot.session.close()
        mongo.close()
