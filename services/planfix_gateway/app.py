"""Wiring: NATS streams, the comment fetcher, the webhook HTTP server, and an orderly stop.

Start-up order: NATS (waits for it if it is down), streams, a Planfix self-check (a bad token
stops the service with exit 2; an unreachable Planfix only warns, the fetcher retries), the
fetchers, then the HTTP listener. SIGTERM/SIGINT stop the listener first (no new notices), then
the comment fetcher (its batch in hand let finish for a moment), then drain NATS, and the
process exits 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import uuid
from dataclasses import dataclass
from functools import partial
from typing import Any

import structlog
from aiohttp import web
from faststream.nats import NatsBroker, NatsRouter

from bridge_lib.eventbus import EventPublisher, ensure_streams, start_subscribers
from bridge_lib.jetstream_ready import JetStreamNotReady
from bridge_lib.kvstore import bucket_when_ready
from bridge_lib.lease import Lease
from bridge_lib.ordered_batches import OrderedBatches
from bridge_lib.planfix import PlanfixClient
from bridge_lib.planfix_setup import checked_planfix_client
from bridge_lib.runtime import broker_and_health, log_startup_failed
from contracts.events import PlanfixCommentWebhookReceived
from contracts.subjects import FETCHER_COMMENT_WEBHOOKS, LEASES_BUCKET, PLANFIX_COMMENT_MARKS_BUCKET
from services.planfix_gateway.config import PlanfixGatewaySettings
from services.planfix_gateway.fetcher import CONSUMER as FETCHER_CONSUMER
from services.planfix_gateway.fetcher import CommentFetcher, reader
from services.planfix_gateway.in_order import InOrderCarrier, LastStoredCache, last_stored_in
from services.planfix_gateway.reconcile import BucketMarks
from services.planfix_gateway.reread import (
    LEASE_KEY,
    LEASE_TTL_S,
    CommentRereader,
    WatchFeed,
    Watchlist,
    requests_per_day,
)
from services.planfix_gateway.task_fetcher import CONSUMERS as TASK_CONSUMERS
from services.planfix_gateway.task_fetcher import TaskFetcher
from services.planfix_gateway.task_fetcher import build_router as build_task_router
from services.planfix_gateway.webhook import RequestBudget, WebhookReceiver

log = structlog.get_logger("planfix_gateway")

SERVICE = "planfix_gateway"
EXIT_OK = 0
EXIT_FAILED = 1
EXIT_CONFIG = 2
# Planfix sends an account's scenario requests one at a time, so while ours waits the others
# wait too, in order. A non-200 costs far more: no request leaves the account for 3 minutes and
# this one comes again only after 15 minutes, behind later comments. So the notice is tried for
# a while (long enough for a NATS stream to elect a new leader after a node died, each attempt
# short so a dead leader is left quickly) before the answer is 503.
WEBHOOK_PUBLISH_TIMEOUT_S = 12.0
WEBHOOK_PUBLISH_ATTEMPT_S = 1.5
# Below the fetcher's ack_wait (60 s), so a stuck publish is retried before NATS redelivers.
FETCHER_PUBLISH_GIVE_UP_S = 30.0
STOP_TIMEOUT_S = 10.0
# One replica reads the stored notices at a time (``fetcher.reader``).
FETCHER_LEASE_KEY = "planfix_comment_fetcher"
# What the batch in hand gets to finish at a stop; what is not stored by then is redone by the
# next holder (every store is idempotent).
FETCHER_STOP_GRACE_S = 5.0


async def run(settings: PlanfixGatewaySettings) -> int:
    """Run until SIGTERM/SIGINT; the process exit code."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    async with contextlib.AsyncExitStack() as stack:
        # Start-up can wait a long time (NATS down): a stop signal must still end it.
        startup = asyncio.create_task(_start(settings, stack))
        stopped = asyncio.create_task(stop.wait())
        await asyncio.wait({startup, stopped}, return_when=asyncio.FIRST_COMPLETED)
        if not startup.done():
            log.info("stopped_during_startup")
            startup.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await startup
            return EXIT_OK
        try:
            exit_code = startup.result()
        except JetStreamNotReady as error:
            log_startup_failed(error)
            exit_code = EXIT_FAILED
        except Exception:
            log.exception("startup_failed")
            exit_code = EXIT_FAILED
        if exit_code is not None:
            stopped.cancel()
            return exit_code
        await stopped
        log.info("planfix_gateway_stopping")
    log.info("planfix_gateway_stopped")
    return EXIT_OK


@dataclass(frozen=True)
class Gateway:
    """The webhook receiver, the comment fetcher's reader and the task fetcher's subscribers,
    built together; the task fetcher also serves the reconciliation pass (``reread``)."""

    receiver: WebhookReceiver
    comments: OrderedBatches[PlanfixCommentWebhookReceived]
    router: NatsRouter
    tasks: TaskFetcher


def build(
    settings: PlanfixGatewaySettings, broker: NatsBroker, planfix: PlanfixClient, *, lease: Lease
) -> Gateway:
    receiver = WebhookReceiver(
        secret=settings.planfix_webhook_secret.get_secret_value(),
        max_body=settings.planfix_webhook_max_body,
        publisher=EventPublisher(
            broker, give_up_after_s=WEBHOOK_PUBLISH_TIMEOUT_S, attempt_timeout_s=WEBHOOK_PUBLISH_ATTEMPT_S
        ),
        publish_timeout_s=WEBHOOK_PUBLISH_TIMEOUT_S,
        header=settings.planfix_webhook_header,
        budget=(
            RequestBudget(settings.planfix_webhook_rate_per_s, settings.planfix_webhook_burst)
            if settings.planfix_webhook_rate_per_s > 0
            else None
        ),
    )
    publisher = EventPublisher(broker, give_up_after_s=FETCHER_PUBLISH_GIVE_UP_S)
    fetcher = CommentFetcher(
        planfix=planfix,
        source_id=settings.planfix_source_id,
        relay_hidden=settings.planfix_relay_hidden_comments,
        publisher=publisher,
        before_fetch=receiver.no_burst_pending,
        in_order=in_order_carrier(settings, broker, planfix, publisher, receiver),
    )
    tasks = TaskFetcher(
        planfix=planfix,
        publisher=EventPublisher(broker, give_up_after_s=FETCHER_PUBLISH_GIVE_UP_S),
        jetstream=lambda: broker.connection.jetstream(),
        before_fetch=receiver.no_burst_pending,
    )
    return Gateway(
        receiver=receiver,
        comments=reader(broker.connection.jetstream(), fetcher, lease),
        router=build_task_router(tasks),
        tasks=tasks,
    )


def in_order_carrier(
    settings: PlanfixGatewaySettings,
    broker: NatsBroker,
    planfix: PlanfixClient,
    publisher: EventPublisher,
    receiver: WebhookReceiver,
) -> InOrderCarrier:
    async def last_stored(task_number: int) -> int | None:
        return await last_stored_in(broker.connection.jetstream(), task_number)

    cached = LastStoredCache(last_stored)
    return InOrderCarrier(
        planfix=planfix,
        publisher=publisher,
        source_id=settings.planfix_source_id,
        relay_hidden=settings.planfix_relay_hidden_comments,
        last_stored=cached,
        before_read=receiver.no_burst_pending,
        on_stored=cached.stored,
    )


async def _start(settings: PlanfixGatewaySettings, stack: contextlib.AsyncExitStack) -> int | None:
    """Start everything, registering each teardown on ``stack``; an exit code if start-up failed."""
    # The comment fetcher's consumer is read by its own loop, the task fetcher's are named before
    # their subscribers exist: not ready until each is made.
    broker, health = await broker_and_health(
        SERVICE, settings, extra_consumers=[FETCHER_CONSUMER, *TASK_CONSUMERS]
    )
    stack.push_async_callback(_stop_broker, broker)
    stack.push_async_callback(health.stop)
    log.info("nats_connecting")
    await broker.connect()
    await ensure_streams(
        broker, replicas=settings.nats_stream_replicas, timeout_s=settings.nats_startup_timeout_s
    )
    planfix = await checked_planfix_client(settings, broker.connection.jetstream(), settings)
    if planfix is None:
        return EXIT_CONFIG
    stack.push_async_callback(planfix.aclose)

    js = broker.connection.jetstream()
    lease_bucket = await bucket_when_ready(js, LEASES_BUCKET, settings)
    gateway = build(settings, broker, planfix, lease=Lease(lease_bucket, FETCHER_LEASE_KEY, owner=_owner()))
    receiver = gateway.receiver
    broker.include_router(gateway.router)
    await start_subscribers(broker, timeout_s=settings.nats_startup_timeout_s)
    # Stopped after the listener (no new notices) and before the Planfix client and NATS close.
    comments = asyncio.create_task(gateway.comments.run(), name="comment-fetcher")
    stack.push_async_callback(partial(gateway.comments.stop, grace_s=FETCHER_STOP_GRACE_S), comments)

    runner = web.AppRunner(receiver.app(), access_log=None)  # the access log would show the secret path
    await runner.setup()
    stack.push_async_callback(runner.cleanup)
    site = web.TCPSite(
        runner, settings.planfix_webhook_host, settings.planfix_webhook_port, shutdown_timeout=STOP_TIMEOUT_S
    )
    try:
        await site.start()
    except OSError as error:
        log.error(
            "webhook_listen_failed",
            host=settings.planfix_webhook_host,
            port=settings.planfix_webhook_port,
            error=str(error),
            hint="is PLANFIX_WEBHOOK_PORT used by another process?",
        )
        return EXIT_FAILED
    if settings.planfix_reread_interval_min > 0:
        rereading = asyncio.create_task(
            _reread(settings, broker, planfix, receiver, gateway.tasks), name="reread"
        )
        stack.push_async_callback(_cancel, rereading)
    else:
        log.info("reread_off", hint="edits and deletions come only from scenario notices, if any")
    log.info(
        "planfix_gateway_started",
        host=settings.planfix_webhook_host,
        port=settings.planfix_webhook_port,
        webhook_path="/planfix/webhook/<PLANFIX_WEBHOOK_SECRET>",
        # The header's name only: its value is a secret.
        webhook_header=settings.planfix_webhook_header_name,
    )
    return None


async def _reread(
    settings: PlanfixGatewaySettings,
    broker: NatsBroker,
    planfix: PlanfixClient,
    receiver: WebhookReceiver,
    tasks: TaskFetcher,
) -> None:
    """Re-read bound tasks' recent comments for edits and deletions, and reconcile their
    comments and states (``reread``), for ever.

    Started after the webhook listener and outside start-up: its stream replay must neither
    delay the first answers to Planfix nor stop the service when NATS is slow.
    """
    interval_s = settings.planfix_reread_interval_min * 60
    active_s = settings.planfix_reread_active_h * 3600
    js = broker.connection.jetstream()
    while True:
        # A fresh fold each try: events applied by a half-finished replay must not count twice.
        watchlist = Watchlist(
            relay_hidden=settings.planfix_relay_hidden_comments, max_watched=settings.planfix_reread_watch_max
        )
        feed = WatchFeed(watchlist, active_s=active_s)
        try:
            await feed.start(js, timeout_s=settings.nats_startup_timeout_s)
            lease_bucket = await bucket_when_ready(js, LEASES_BUCKET, settings)
            marks = (
                BucketMarks(await bucket_when_ready(js, PLANFIX_COMMENT_MARKS_BUCKET, settings))
                if settings.planfix_reconcile
                else None
            )
            break
        except Exception as error:
            await feed.stop()
            log.warning("reread_not_ready", error=f"{type(error).__name__}: {error}")
            await asyncio.sleep(5.0)
    try:
        rereader = CommentRereader(
            planfix=planfix,
            publisher=EventPublisher(broker, give_up_after_s=FETCHER_PUBLISH_GIVE_UP_S),
            watchlist=watchlist,
            source_id=settings.planfix_source_id,
            interval_s=interval_s,
            active_s=active_s,
            max_per_day=settings.planfix_reread_max_per_day,
            relay_hidden=settings.planfix_relay_hidden_comments,
            before_read=receiver.no_burst_pending,
            catch_up=feed.catch_up,
            marks=marks,
            quiet_interval_s=settings.planfix_reconcile_quiet_interval_min * 60,
            grace_s=settings.planfix_reconcile_grace_s,
            webhooks_drained=partial(fetcher_drained, js),
            task_states=tasks,
        )
        log.info(
            "reread_on",
            interval_min=settings.planfix_reread_interval_min,
            active_h=settings.planfix_reread_active_h,
            requests_per_pass=round(rereader.requests_per_pass, 1),
            # What 10 active tasks cost a day, for the operator weighing the daily cap.
            requests_per_day_for_10_tasks=requests_per_day(
                10, interval_s, settings.planfix_reread_max_per_day
            ),
            max_requests_per_day=settings.planfix_reread_max_per_day,
            reconcile=settings.planfix_reconcile,
            quiet_interval_min=settings.planfix_reconcile_quiet_interval_min,
        )
        await rereader.run(Lease(lease_bucket, LEASE_KEY, owner=_owner(), ttl_s=LEASE_TTL_S))
    finally:
        await feed.stop()


def _owner() -> str:
    """This replica, as a lease holder."""
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


async def fetcher_drained(js: Any) -> bool:
    """No webhook notice waits for the fetcher (none queued, none in its hands)."""
    try:
        info = await js.consumer_info(FETCHER_COMMENT_WEBHOOKS.stream, FETCHER_COMMENT_WEBHOOKS.durable)
    except Exception as error:
        log.info("fetcher_queue_unknown", error=type(error).__name__)
        return False
    return not info.num_pending and not info.num_ack_pending


async def _cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        pass
    except Exception as error:  # a stop must not fail on what a background task left behind
        log.warning("background_task_failed", task=task.get_name(), error=f"{type(error).__name__}: {error}")


async def _stop_broker(broker: NatsBroker) -> None:
    # Drain lets the in-flight fetch finish and acks go out; bounded, as NATS may be gone.
    try:
        await asyncio.wait_for(broker.stop(), STOP_TIMEOUT_S)
    except Exception as error:
        log.warning("nats_stop_incomplete", error=f"{type(error).__name__}: {error}")
