"""Wiring: NATS subscriber for bind requests -> ``Binder`` (MongoDB + Planfix) -> binding events."""

from __future__ import annotations

from typing import get_args

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
from bridge_lib.health import mongo_ping, start_health_server
from bridge_lib.metrics import track_planfix_budget
from bridge_lib.planfix_setup import paced_planfix_client, planfix_self_check
from bridge_lib.runtime import wait_for_stop_signal
from contracts import subjects
from contracts.events import BindRequested, TelegramGroupEvent, UnbindRequested
from contracts.subjects import TELEGRAM_STREAM
from services.binder.config import BinderSettings
from services.binder.group_life import GroupLife
from services.binder.handlers import Binder
from services.binder.store import BindingStore

log = structlog.get_logger("binder")
router = NatsRouter()


class Wiring:
    """What the subscribers hand their messages to, set by ``run`` before they start."""

    binder: Binder
    group_life: GroupLife


wiring = Wiring()


@router.subscriber(
    subjects.ALL_BIND_REQUESTS,
    stream=jstream(TELEGRAM_STREAM),
    ack_policy=AckPolicy.MANUAL,
    **durable_pull("binder-bind-requests"),
)
async def on_bind_requested(msg: NatsMessage) -> None:
    await consume(msg, (BindRequested, UnbindRequested), wiring.binder.handle_bind_request)


@router.subscriber(
    subjects.ALL_TELEGRAM_GROUP_EVENTS,
    stream=jstream(TELEGRAM_STREAM),
    ack_policy=AckPolicy.MANUAL,
    **durable_pull("binder-group-changes"),
)
async def on_group_changed(msg: NatsMessage) -> None:
    await consume(msg, get_args(TelegramGroupEvent), wiring.group_life.handle_group_event)


async def run(settings: BinderSettings) -> None:
    mongo: AsyncIOMotorClient[dict[str, object]] = AsyncIOMotorClient(
        settings.mongodb_url, serverSelectionTimeoutMS=10_000, tz_aware=True
    )
    store = BindingStore(mongo[settings.mongodb_database])
    await store.create_indexes()
    broker = make_broker(settings.nats_url, name="binder")
    broker.include_router(router)
    health = await start_health_server(
        service="binder",
        broker=broker,
        host=settings.health_host,
        port=settings.health_port,
        checks={"mongodb": mongo_ping(mongo)},
    )
    await broker.connect()
    await ensure_streams(
        broker, replicas=settings.nats_stream_replicas, timeout_s=settings.nats_startup_timeout_s
    )
    planfix = await paced_planfix_client(
        settings,
        broker.connection.jetstream(),
        replicas=settings.nats_stream_replicas,
        startup_timeout_s=settings.nats_startup_timeout_s,
    )
    track_planfix_budget(planfix)
    if not await planfix_self_check(planfix):
        raise SystemExit(2)
    wiring.group_life = GroupLife(store=store, publisher=EventPublisher(broker))
    wiring.binder = Binder(
        store=store,
        planfix=planfix,
        publisher=EventPublisher(broker),
        account_url=settings.planfix_base_url,
        max_task_title=settings.max_task_title,
        everyone_may_bind=settings.everyone_may_bind,
    )
    await start_subscribers(broker, timeout_s=settings.nats_startup_timeout_s)
    log.info("binder_started")
    try:
        await wait_for_stop_signal()
    finally:
        log.info("binder_stopping")
        await broker.stop()
        await health.stop()
        await planfix.aclose()
        mongo.close()
