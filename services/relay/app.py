"""Wiring: the Telegram -> Planfix batch consumer (``inbound_consumer``, one active replica),
two durable consumers (Planfix comments, binding decisions), the binding directory, effect
records in MongoDB, and the Planfix and Telegram clients."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from zoneinfo import ZoneInfo

import structlog
from faststream import Context
from faststream.middlewares import AckPolicy
from faststream.nats import NatsRouter
from faststream.nats.annotations import NatsMessage
from motor.motor_asyncio import AsyncIOMotorClient

from bridge_lib.eventbus import EventPublisher, consume, durable_pull, ensure_streams, jstream, make_broker
from bridge_lib.health import ConsumerRef, mongo_ping, start_health_server
from bridge_lib.lease import Lease, open_lease_bucket
from bridge_lib.metrics import track_planfix_budget
from bridge_lib.planfix_setup import paced_planfix_client, planfix_self_check
from bridge_lib.runtime import wait_for_stop_signal
from bridge_lib.telegram import make_bot
from contracts import subjects
from contracts.events import BindRejected, PlanfixCommentAdded, TaskBound
from contracts.subjects import ALL_TELEGRAM_MESSAGE_ACTIVITY, BINDING_STREAM, PLANFIX_STREAM, TELEGRAM_STREAM
from services.relay.config import RelaySettings
from services.relay.directory import BindingDirectory
from services.relay.effects import EffectStore
from services.relay.inbound_consumer import DURABLE as INBOUND_DURABLE
from services.relay.inbound_consumer import InboundConsumer
from services.relay.inbound_store import InboundStore
from services.relay.to_planfix import CombineLimits, ToPlanfix
from services.relay.to_telegram import ToTelegram

log = structlog.get_logger("relay")
INBOUND_CONSUMER = ConsumerRef(TELEGRAM_STREAM.name, INBOUND_DURABLE, ALL_TELEGRAM_MESSAGE_ACTIVITY)
router = NatsRouter()


@router.subscriber(
    subjects.ALL_PLANFIX_COMMENTS,
    stream=jstream(PLANFIX_STREAM),
    ack_policy=AckPolicy.MANUAL,
    **durable_pull("relay-planfix-comments"),
)
async def on_planfix_comment(msg: NatsMessage, to_telegram: ToTelegram = Context()) -> None:
    await consume(msg, PlanfixCommentAdded, to_telegram.carry_planfix_comment)


@router.subscriber(
    subjects.ALL_BINDING_EVENTS,
    stream=jstream(BINDING_STREAM),
    ack_policy=AckPolicy.MANUAL,
    **durable_pull("relay-binding-notices"),
)
async def on_binding_decided(msg: NatsMessage, to_telegram: ToTelegram = Context()) -> None:
    await consume(msg, (TaskBound, BindRejected), to_telegram.announce_binding)


async def run(settings: RelaySettings) -> None:
    mongo: AsyncIOMotorClient[dict[str, object]] = AsyncIOMotorClient(
        settings.mongodb_url, serverSelectionTimeoutMS=10_000, tz_aware=True
    )
    effects = EffectStore(mongo[settings.mongodb_database])
    inbound_store = InboundStore(mongo[settings.mongodb_database])
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
    await ensure_streams(broker, replicas=settings.nats_stream_replicas)
    planfix = await paced_planfix_client(settings, broker.connection.jetstream())
    track_planfix_budget(planfix)
    if not await planfix_self_check(planfix):
        raise SystemExit(2)
    directory = BindingDirectory()
    await directory.start(broker.connection.jetstream())
    publisher = EventPublisher(broker)
    js = broker.connection.jetstream()
    to_planfix = ToPlanfix(
        directory=directory,
        effects=effects,
        store=inbound_store,
        planfix=planfix,
        bot=bot,
        publisher=publisher,
        planfix_source_id=settings.planfix_source_id,
        zone=ZoneInfo(settings.relay_timezone),
        limits=CombineLimits(max_messages=settings.relay_combine_max_messages),
    )
    lease = Lease(await open_lease_bucket(js), "relay_inbound", owner=f"{socket.gethostname()}:{os.getpid()}")
    inbound = InboundConsumer(js, to_planfix, lease, album_window_s=settings.relay_album_window_s)
    broker.context.set_global(
        "to_telegram",
        ToTelegram(
            directory=directory,
            effects=effects,
            bot=bot,
            publisher=publisher,
            planfix_source_id=settings.planfix_source_id,
            planfix_web_url=settings.planfix_web_url,
        ),
    )
    await broker.start()
    inbound_task = asyncio.create_task(inbound.run())
    log.info("relay_started")
    try:
        stop = asyncio.create_task(wait_for_stop_signal())
        await asyncio.wait({stop, inbound_task}, return_when=asyncio.FIRST_COMPLETED)
        if inbound_task.done():
            inbound_task.result()  # it only ends by failing
        stop.cancel()
    finally:
        log.info("relay_stopping")
        inbound_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await inbound_task
        await directory.stop()
        await broker.stop()
        await health.stop()
        await planfix.aclose()
        await bot.session.close()
        mongo.close()
