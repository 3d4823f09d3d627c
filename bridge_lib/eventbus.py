"""NATS JetStream plumbing shared by the services: streams, publishing, consuming.

* ``make_broker`` builds a FastStream ``NatsBroker`` that reconnects forever (a NATS outage
  pauses the service; it does not kill it).
* ``ensure_streams`` creates or updates the streams of ``contracts.subjects``.
* ``EventPublisher.publish`` sends an event with its deterministic ``Nats-Msg-Id`` and waits for
  the stream's ack, retrying with the same id until it is stored (a retry can never become a
  second event).
* ``consume`` runs one handler for one JetStream message with an explicit outcome: ack on
  success, ``nak`` with a growing delay on a transient failure, ``term`` on a message that can
  never succeed (undecodable, or a ``PermanentFailure``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import msgspec
import nats.errors
import nats.js.errors
import structlog
from faststream.nats import JStream, NatsBroker, PullSub
from faststream.nats.annotations import NatsMessage
from nats.js.api import AckPolicy as JsAckPolicy
from nats.js.api import ConsumerConfig, StorageType, StreamConfig

from contracts.events import AnyEvent, Event, decode_event
from contracts.subjects import ALL_STREAMS, StreamSpec

log = structlog.get_logger("eventbus")

# Headers carried by every event message, besides the body.
MSG_ID_HEADER = "Nats-Msg-Id"
EVENT_TYPE_HEADER = "Bridge-Event-Type"
CORRELATION_HEADER = "Bridge-Correlation-Id"


def make_broker(nats_url: str, *, name: str) -> NatsBroker:
    return NatsBroker(
        nats_url,
        name=name,
        # -1: keep reconnecting through an outage; the orchestrator decides when to give up.
        max_reconnect_attempts=-1,
        reconnect_time_wait=1,
        connect_timeout=5,
        logger=None,
    )


def stream_config(spec: StreamSpec, *, replicas: int = 1) -> StreamConfig:
    return StreamConfig(
        name=spec.name,
        description=spec.description,
        subjects=list(spec.subjects),
        storage=StorageType.FILE,
        duplicate_window=spec.duplicate_window_s,
        max_age=spec.max_age_s,
        num_replicas=replicas,
    )


def jstream(spec: StreamSpec) -> JStream:
    """The stream as FastStream sees it; ``declare=False`` because ``ensure_streams`` owns it."""
    return JStream(name=spec.name, subjects=list(spec.subjects), declare=False)


async def ensure_streams(broker: NatsBroker, *, replicas: int = 1) -> None:
    js = broker.connection.jetstream()
    for spec in ALL_STREAMS:
        config = stream_config(spec, replicas=replicas)
        try:
            await js.update_stream(config)
        except nats.js.errors.NotFoundError:
            await js.add_stream(config)


def durable_pull(durable: str, *, ack_wait_s: float = 60.0, max_deliver: int = 200) -> dict[str, Any]:
    """Subscriber options for a durable pull consumer that handles one message at a time.

    One at a time keeps the order of a group's messages; ``ack_wait`` is longer than the
    slowest outbound call (Planfix timeout x retries), so a slow call is not redelivered.
    """
    return {
        "durable": durable,
        "pull_sub": PullSub(batch_size=1, timeout=5.0),
        "config": ConsumerConfig(
            durable_name=durable,
            ack_policy=JsAckPolicy.EXPLICIT,
            ack_wait=ack_wait_s,
            max_deliver=max_deliver,
            max_ack_pending=1000,
        ),
    }


class EventPublisher:
    def __init__(self, broker: NatsBroker, *, give_up_after_s: float = 300.0) -> None:
        self._broker = broker
        self._give_up_after_s = give_up_after_s

    async def publish(self, event: Event, *, subject: str, msg_id: str) -> bool:
        """Store ``event`` on ``subject``; returns False when the stream already had ``msg_id``."""
        payload = msgspec.json.encode(event)
        headers = {
            MSG_ID_HEADER: msg_id,
            EVENT_TYPE_HEADER: event.tag,
            CORRELATION_HEADER: event.correlation_id,
            "content-type": "application/json",
        }
        deadline = time.monotonic() + self._give_up_after_s
        delay = 0.2
        while True:
            try:
                js = self._broker.connection.jetstream()
                ack = await js.publish(subject, payload, headers=headers, timeout=5.0)
            except (
                nats.errors.TimeoutError,
                nats.errors.NoRespondersError,
                nats.errors.ConnectionClosedError,
                nats.errors.OutboundBufferLimitError,
                nats.js.errors.ServiceUnavailableError,
            ) as error:
                if time.monotonic() > deadline:
                    raise
                log.warning("publish_retry", subject=subject, msg_id=msg_id, error=type(error).__name__)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            duplicate = bool(ack.duplicate)
            log.debug("published", subject=subject, msg_id=msg_id, event_type=event.tag, duplicate=duplicate)
            return not duplicate


class TransientFailure(Exception):
    """Try this message again later (the outside world is down or slow)."""


class PermanentFailure(Exception):
    """This message can never succeed; stop redelivering it."""


E = TypeVar("E", bound=Event)


def retry_delay_s(num_delivered: int) -> float:
    # 1, 2, 4 ... capped at 30 s: a few-minute outage drains soon after it ends.
    return float(min(30, 2 ** max(0, num_delivered - 1)))


class Delivery(msgspec.Struct, frozen=True):
    """Where a message sits in its stream and how often it was delivered."""

    stream_seq: int
    num_delivered: int

    @property
    def is_redelivery(self) -> bool:
        return self.num_delivered > 1


async def consume(
    msg: NatsMessage,
    event_type: type[E] | tuple[type[Any], ...],
    handler: Callable[[Any, Delivery], Awaitable[None]],
) -> None:
    """Decode, handle and settle one JetStream message (FastStream subscriber, MANUAL ack)."""
    metadata = msg.raw_message.metadata
    delivery = Delivery(stream_seq=metadata.sequence.stream, num_delivered=metadata.num_delivered)
    with structlog.contextvars.bound_contextvars(
        subject=msg.raw_message.subject, stream_seq=delivery.stream_seq, delivery=delivery.num_delivered
    ):
        try:
            event: AnyEvent = decode_event(msg.body)
        except (msgspec.DecodeError, msgspec.ValidationError) as error:
            log.error(
                "undecodable_event_terminated", error=str(error), body=msg.body[:200].decode(errors="replace")
            )
            await msg.reject()
            return
        with structlog.contextvars.bound_contextvars(
            correlation_id=event.correlation_id, event_type=event.tag, event_id=event.event_id
        ):
            if not isinstance(event, event_type):
                log.warning("unexpected_event_type_skipped")
                await msg.ack()
                return
            await _handle(msg, event, delivery, handler)


async def _handle(
    msg: NatsMessage, event: Event, delivery: Delivery, handler: Callable[[Any, Delivery], Awaitable[None]]
) -> None:
    started = time.perf_counter()
    try:
        await handler(event, delivery)
    except PermanentFailure as error:
        log.error("event_failed_permanently", error=str(error))
        await msg.reject()
    except TransientFailure as error:
        delay = retry_delay_s(delivery.num_delivered)
        log.warning("event_retry_later", error=str(error), retry_in_s=delay)
        await msg.nack(delay=delay)
    except Exception:
        delay = retry_delay_s(delivery.num_delivered)
        log.exception("event_handler_crashed", retry_in_s=delay)
        await msg.nack(delay=delay)
    else:
        await msg.ack()
        log.info("event_handled", ms=round((time.perf_counter() - started) * 1000, 1))
