"""Wiring: three durable consumers (Telegram messages, Planfix comments, binding decisions),
the binding directory, effect records in MongoDB, and the Planfix and Telegram clients."""

from __future__ import annotations

import structlog
from faststream import Context
from faststream.middlewares import AckPolicy
from faststream.nats import NatsRouter
from faststream.nats.annotations import NatsMessage
from motor.motor_asyncio import AsyncIOMotorClient

from bridge_lib.eventbus import EventPublisher, consume, durable_pull, ensure_streams, jstream, make_broker
from bridge_lib.planfix_setup import paced_planfix_client
from bridge_lib.runtime import wait_for_stop_signal
from bridge_lib.telegram import make_bot
from contracts import subjects
from contracts.events import BindRejected, PlanfixCommentAdded, TaskBound, TelegramMessageReceived
from contracts.subjects import BINDING_STREAM, PLANFIX_STREAM, TELEGRAM_STREAM
from services.relay.config import RelaySettings
from services.relay.directory import BindingDirectory
from services.relay.effects import EffectStore
from services.relay.to_planfix import ToPlanfix
from services.relay.to_telegram import ToTelegram

log = structlog.get_logger("relay")
router = NatsRouter()


@router.subscriber(
    subjects.ALL_TELEGRAM_MESSAGES,
    stream=jstream(TELEGRAM_STREAM),
    ack_policy=AckPolicy.MANUAL,
    **durable_pull("relay-telegram-messages"),
)
async def on_telegram_message(msg: NatsMessage, to_planfix: ToPlanfix = Context()) -> None:
    await consume(msg, TelegramMessageReceived, to_planfix.carry_telegram_message)


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
    bot = make_bot(
        settings.telegram_bot_token.get_secret_value(),
        api_base_url=settings.telegram_api_base_url,
        timeout_s=30.0,
    )
    broker = make_broker(settings.nats_url, name="relay")
    broker.include_router(router)
    await broker.connect()
    await ensure_streams(broker)
    planfix = await paced_planfix_client(settings, broker.connection.jetstream())
    directory = BindingDirectory()
    await directory.start(broker.connection.jetstream())
    publisher = EventPublisher(broker)
    broker.context.set_global(
        "to_planfix",
        ToPlanfix(
            directory=directory,
            effects=effects,
            planfix=planfix,
            publisher=publisher,
            planfix_source_id=settings.planfix_source_id,
        ),
    )
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
    log.info("relay_started")
    try:
        await wait_for_stop_signal()
    finally:
        log.info("relay_stopping")
        await directory.stop()
        await broker.stop()
        await planfix.aclose()
        await bot.session.close()
        mongo.close()
