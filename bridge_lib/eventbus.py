"""NATS JetStream plumbing shared by the services: streams, publishing, consuming, settling.

* ``EventPublisher.publish`` stores an event under its deterministic ``Nats-Msg-Id``, retrying
  with the same id until the stream acknowledges it (a retry never becomes a second event).
* ``consume`` runs one handler for one message; ``settle`` is how every message leaves a
  consumer: ack, ``nak`` with a growing delay, or a dead letter on ``deadletter.<consumer>``
  and then ``term`` (nothing is dropped silently).
* Failures come in two kinds (``failure_kind``). An outage (``TransientFailure``, NATS or the
  store unreachable, a time-out) is waited out as long as it takes, the delay growing to
  ``RETRY_MAX_DELAY_S`` (or to the time the failure names, e.g. Planfix's ``timeToReset``); it
  never dead-letters. A crash (any other exception) or a permanent refusal does: after
  ``CRASH_LIMIT`` crashes in a row, or at once, so one poison message does not hold its group.

Replays (``bridge events replay``, ``bridge dlq retry``) carry ``Bridge-Replay-Id``, seen in
``Delivery.replay_id`` and ``current_delivery()``; with ``Bridge-Force-Effects`` too, effect stores
act again (``forcing_effects()``) and the resulting events get fresh message ids.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import contextvars
import dataclasses
import time
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime
from functools import partial
from typing import Any, NamedTuple, Protocol, TypeVar

import msgspec
import nats.errors
import nats.js.errors
import structlog
from faststream.middlewares import AckPolicy
from faststream.nats import JStream, NatsBroker, NatsRouter, PullSub
from faststream.nats.annotations import NatsMessage
from faststream.security import BaseSecurity, SASLPlaintext
from nats.js.api import AckPolicy as JsAckPolicy
from nats.js.api import ConsumerConfig, DiscardPolicy, StorageType, StreamConfig

from bridge_lib import metrics
from bridge_lib.jetstream_ready import when_jetstream_ready
from bridge_lib.redaction import redact
from contracts.events import (
    AnyEvent,
    DeadLetterReason,
    Event,
    MessageDeadLettered,
    dead_letter_key,
    decode_event,
    event_id_for,
)
from contracts.subjects import ALL_STREAMS, ConsumerSpec, StreamSpec, dead_letter, subject_for

log = structlog.get_logger("eventbus")

# Headers carried by every event message, besides the body.
MSG_ID_HEADER = "Nats-Msg-Id"
EVENT_TYPE_HEADER = "Bridge-Event-Type"
CORRELATION_HEADER = "Bridge-Correlation-Id"
# Set by the `bridge` CLI on re-published messages: a replay (its id) and whether to redo effects.
REPLAY_HEADER = "Bridge-Replay-Id"
FORCE_EFFECTS_HEADER = "Bridge-Force-Effects"
# `bridge events replay --into <durable>`: only that consumer handles the copy; the others skip it.
REPLAY_INTO_HEADER = "Bridge-Replay-Into"
# Stream sequence of the dead letter a `bridge dlq retry` re-published.
RETRY_OF_HEADER = "Bridge-Dead-Letter-Retry-Of"

# JSStreamNameExistErr: "stream name already in use with a different configuration".
STREAM_NAME_IN_USE = 10058
# JetStream's answer to a publish into a stream at its byte cap ("maximum bytes exceeded").
STREAM_FULL = 10077

# max_deliver of each durable consumer this process declared (see ``durable_pull``): consume()
# must know when a delivery is the last one, because after it JetStream stops redelivering.
# The services' consumers have none (-1): an outage is waited out, crashes are counted here.
_max_deliver_by_consumer: dict[str, int] = {}

# A handler that raised something other than an outage this many times in a row for one message
# (in this process) is a bug or a poison message: it is set aside so the ones after it can go.
CRASH_LIMIT = 5
# The longest pause between two tries of a message waiting out an outage (``RETRY_MAX_DELAY_S``).
DEFAULT_RETRY_MAX_DELAY_S = 300.0
_retry_max_delay_s = DEFAULT_RETRY_MAX_DELAY_S
# Crashes in a row per (consumer, stream sequence); forgotten once the message is settled.
_crashes: dict[tuple[str, int], int] = {}
_CRASHES_KEPT = 1000


def server_urls(nats_url: str) -> list[str]:
    """``NATS_URL`` may list a cluster's nodes separated by commas."""
    return [url.strip() for url in nats_url.split(",") if url.strip()]


async def undecoded(msg: Any) -> Any:
    """FastStream's decoding step, left out: a handler gets the message itself (``consume``
    decodes the body with msgspec, into the event type the subject promises)."""
    return msg


def make_broker(
    nats_url: str, *, name: str, retry_max_delay_s: float | None = None, **connect_options: Any
) -> NatsBroker:
    """The service's broker; ``retry_max_delay_s`` (``RETRY_MAX_DELAY_S``) caps the pause between
    two tries of a message waiting out an outage, for every consumer of this process.
    ``connect_options``: credentials and TLS, as ``nats.connect`` takes them
    (``NatsSettings.nats_connect_options()``); FastStream takes user, password and TLS as one
    "security" object."""
    if retry_max_delay_s is not None:
        set_retry_max_delay(retry_max_delay_s)
    options = dict(connect_options)
    user, password, tls = options.pop("user", None), options.pop("password", None), options.pop("tls", None)
    if user is not None:
        options["security"] = SASLPlaintext(username=user, password=password or "", ssl_context=tls)
    elif tls is not None:
        options["security"] = BaseSecurity(ssl_context=tls)
    return NatsBroker(
        server_urls(nats_url),
        name=name,
        **options,
        # Handlers take the message and nothing else (their collaborators come from the closure
        # that built them): FastDepends' injection costs a worker-thread hop per message.
        apply_types=False,
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
        max_bytes=spec.max_bytes,
        # Full: refuse the new message (the publisher retries), never drop a stored one.
        discard=DiscardPolicy.NEW,
        num_replicas=replicas,
    )


def jstream(spec: StreamSpec) -> JStream:
    """The stream as FastStream sees it; ``declare=False`` because ``ensure_streams`` owns it."""
    return JStream(name=spec.name, subjects=list(spec.subjects), declare=False)


async def ensure_streams(broker: NatsBroker, *, replicas: int = 1, timeout_s: float = 60.0) -> None:
    """Create or update every stream, waiting up to ``timeout_s`` for a cluster still forming.

    Raises ``JetStreamNotReady`` when JetStream keeps answering "not ready" until then.
    """
    js = broker.connection.jetstream()
    started = time.monotonic()
    for spec in ALL_STREAMS:
        config = stream_config(spec, replicas=replicas)
        await when_jetstream_ready(
            f"stream {spec.name}",
            partial(_create_or_update_stream, js, config),
            timeout_s=timeout_s,
            since=started,
        )


async def _create_or_update_stream(js: Any, config: StreamConfig) -> None:
    # Create first: JetStream accepts the same configuration again and changes nothing, so a
    # service needs leave to update only streams whose configuration it really changes (under
    # the deployment's NATS users, only a stream's publishers may: tools/nats_auth.py).
    try:
        await js.add_stream(config)
    except nats.js.errors.BadRequestError as error:
        if error.err_code != STREAM_NAME_IN_USE:
            raise
        # It exists with another configuration (a release changed it): bring it to ours.
        await js.update_stream(config)


async def start_subscribers(broker: NatsBroker, *, timeout_s: float = 60.0) -> None:
    """``broker.start()``, once every durable consumer of its subscribers exists and answers.

    FastStream creates a missing consumer inside ``broker.start()`` with one API request; on a
    cluster still forming that request times out and the service would exit. Declared here
    first, with the same patience as the streams, ``broker.start()`` only finds them.
    """
    js = broker.connection.jetstream()
    started = time.monotonic()
    for subscriber in broker.subscribers:
        options = getattr(subscriber, "extra_options", None) or {}
        durable, stream = options.get("durable"), options.get("stream")
        config = getattr(subscriber, "config", None)
        if not (durable and stream and isinstance(config, ConsumerConfig)):
            continue
        subject = str(subscriber.subject.broker_address)  # type: ignore[attr-defined]
        # As nats-py's pull_subscribe would create it: named after the durable, filtered on the subject.
        wanted = dataclasses.replace(config, name=durable, durable_name=durable)
        if not (wanted.filter_subject or wanted.filter_subjects):
            wanted.filter_subject = subject
        await when_jetstream_ready(
            f"consumer {durable} on stream {stream}",
            partial(_declare_consumer, js, stream, wanted),
            timeout_s=timeout_s,
            since=started,
        )
    await broker.start()


async def _declare_consumer(js: Any, stream: str, config: ConsumerConfig) -> None:
    try:
        info = await js.consumer_info(stream, config.durable_name)
    except nats.js.errors.NotFoundError:
        await js.add_consumer(stream, config=config)
        # Answered by the new consumer's leader: once it answers, broker.start() can bind to it.
        await js.consumer_info(stream, config.durable_name)
        return
    if (info.config.max_deliver or -1) != (config.max_deliver or -1):
        # Made by an older version (max_deliver=200, about 98 minutes of an outage): brought to
        # this one's (max_deliver is one of the settings a consumer may change in place).
        await js.add_consumer(stream, config=dataclasses.replace(info.config, max_deliver=config.max_deliver))
        log.info("consumer_updated", consumer=config.durable_name, max_deliver=config.max_deliver)


def durable_pull(
    durable: str, *, ack_wait_s: float = 60.0, max_deliver: int = -1, in_flight: int = 1
) -> dict[str, Any]:
    """Subscriber options for a durable pull consumer that handles one message at a time.

    One at a time keeps the order of a group's messages; ``ack_wait`` is longer than the
    slowest outbound call (Planfix timeout x retries), so a slow call is not redelivered.
    ``max_ack_pending=1``: JetStream hands out nothing new while a message is unacknowledged, so
    when a replica dies mid-message the next delivery is that message again (after
    ``ack_wait``), not a newer one; and several replicas on one durable still go in order.
    ``max_deliver=-1``: no delivery is the last one; ``consume`` decides when to give up.
    ``in_flight`` above 1 (``ConsumerSpec.in_flight``): fetched that many at a time, order aside.
    """
    _max_deliver_by_consumer[durable] = max_deliver
    return {
        "durable": durable,
        "decoder": undecoded,
        "pull_sub": PullSub(batch_size=in_flight, timeout=5.0),
        "config": ConsumerConfig(
            durable_name=durable,
            ack_policy=JsAckPolicy.EXPLICIT,
            ack_wait=ack_wait_s,
            max_deliver=max_deliver,
            max_ack_pending=in_flight,
        ),
    }


# A publish that JetStream did not take for now: tried again with the same message id.
_JETSTREAM_AWAY: tuple[type[Exception], ...] = (
    nats.errors.TimeoutError,
    nats.errors.NoRespondersError,
    nats.errors.ConnectionClosedError,
    nats.errors.OutboundBufferLimitError,
    nats.js.errors.ServiceUnavailableError,
    # The stream has no leader for a moment (a node of the cluster died).
    nats.js.errors.NoStreamResponseError,
)


class Connected(Protocol):
    """A broker, or anything else holding a nats-py connection (made once it connects)."""

    @property
    def connection(self) -> Any: ...


class Publisher(Protocol):
    """What a handler needs of ``EventPublisher`` (tests pass a recorder of their own)."""

    async def publish(self, event: Event, *, subject: str, msg_id: str) -> bool: ...


class EventPublisher:
    def __init__(
        self, broker: Connected, *, give_up_after_s: float = 300.0, attempt_timeout_s: float = 5.0
    ) -> None:
        self._broker = broker
        self._give_up_after_s = give_up_after_s
        # How long one publish waits for JetStream's ack before it is tried again (same msg id).
        self._attempt_timeout_s = attempt_timeout_s

    def _jetstream(self) -> Any:
        return self._broker.connection.jetstream()

    async def publish(self, event: Event, *, subject: str | None = None, msg_id: str | None = None) -> bool:
        """Store ``event``; returns False when the stream already had it.

        The event knows its route: its subject comes from the catalogue
        (``contracts.subjects.subject_for``), its ``Nats-Msg-Id`` is its id, which derives from
        the source key, so a repeat is dropped. ``subject``/``msg_id`` override them (replays).
        """
        subject = subject or subject_for(event)
        msg_id = msg_id or event.event_id
        payload = msgspec.json.encode(event)
        headers = {
            MSG_ID_HEADER: msg_id,
            EVENT_TYPE_HEADER: event.tag,
            CORRELATION_HEADER: event.correlation_id,
            "content-type": "application/json",
        }
        delivery = current_delivery()
        if delivery is not None and delivery.replay_id:
            headers[REPLAY_HEADER] = delivery.replay_id
            if delivery.force_effects:
                # A forced replay redoes effects on purpose; its events must not be dropped as repeats.
                headers[MSG_ID_HEADER] = f"{msg_id}:replay:{delivery.replay_id}"
                headers[FORCE_EFFECTS_HEADER] = "true"
        stored = await self._publish_with_retries(subject, payload, headers)
        metrics.EVENTS_OUT.labels(event.tag, "stored" if stored else "duplicate").inc()
        log.debug(
            "published",
            subject=subject,
            msg_id=headers[MSG_ID_HEADER],
            event_type=event.tag,
            duplicate=not stored,
        )
        return stored

    async def _publish_with_retries(self, subject: str, payload: bytes, headers: dict[str, str]) -> bool:
        msg_id = headers[MSG_ID_HEADER]
        deadline = time.monotonic() + self._give_up_after_s
        delay = 0.2
        while True:
            try:
                js = self._jetstream()
                ack = await js.publish(subject, payload, headers=headers, timeout=self._attempt_timeout_s)
            except _JETSTREAM_AWAY as error:
                if time.monotonic() > deadline:
                    raise
                if getattr(error, "err_code", None) == STREAM_FULL:
                    # Its byte cap reached (contracts.subjects): an operator must make room.
                    log.error("stream_full", subject=subject, msg_id=msg_id, retry_in_s=delay)
                else:
                    log.warning("publish_retry", subject=subject, msg_id=msg_id, error=type(error).__name__)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            return not bool(ack.duplicate)


class TransientFailure(Exception):
    """Try this message again later (the outside world is down or slow); never dead-lettered.

    ``retry_after_s``: how long the outside world said to wait, when it did."""

    def __init__(self, message: str = "", *, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class PermanentFailure(Exception):
    """This message can never succeed; stop redelivering it."""


E = TypeVar("E", bound=Event)


def retry_delay_s(num_delivered: int, *, cap_s: float = 30.0) -> float:
    # 1, 2, 4 ... capped: a short outage drains soon after it ends.
    return float(min(cap_s, 2 ** min(max(0, num_delivered - 1), 20)))


def set_retry_max_delay(seconds: float) -> None:
    """``RETRY_MAX_DELAY_S``: the longest pause between two tries while an outage lasts."""
    global _retry_max_delay_s
    if seconds <= 0:
        raise ValueError("the retry delay cap must be positive")
    _retry_max_delay_s = float(seconds)


def outage_delay_s(num_delivered: int, error: BaseException | None = None) -> float:
    """How long a message waits before its next try while the outside world is away: growing to
    ``RETRY_MAX_DELAY_S``, and at least as long as the failure itself says (Planfix's
    ``timeToReset`` over the daily cap, a throttle's ``Retry-After``), within the same cap."""
    delay = retry_delay_s(num_delivered, cap_s=_retry_max_delay_s)
    hint = retry_hint_s(error) if error is not None else None
    if hint is not None:
        delay = max(delay, min(hint, _retry_max_delay_s))
    return delay


def crash_delay_s(crashes: int) -> float:
    # 1, 2, 4, 8: a poison message is set aside within about 15 s.
    return float(min(8, 2 ** max(0, crashes - 1)))


def retry_hint_s(error: BaseException) -> float | None:
    """The wait a failure (or what caused it) names: ``retry_after_s`` or ``reset_after_s``."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        for name in ("retry_after_s", "reset_after_s"):
            value = getattr(current, name, None)
            if isinstance(value, int | float) and value > 0:
                return float(value)
        current = current.__cause__ or current.__context__
    return None


# Exceptions that mean "the other side is away", not "the handler is wrong": NATS and the
# store unreachable, a time-out. pymongo's are named, not imported (not every service uses it).
_OUTAGE_ERRORS: tuple[type[BaseException], ...] = (
    TimeoutError,
    ConnectionError,
    nats.errors.StaleConnectionError,
    *_JETSTREAM_AWAY,
)
_PYMONGO_OUTAGES = frozenset(
    {"ConnectionFailure", "ExecutionTimeout", "WTimeoutError", "WaitQueueTimeoutError"}
)


def failure_kind(error: BaseException) -> str:
    """``outage`` (wait as long as it takes), ``permanent`` (set aside now) or ``crash``."""
    if isinstance(error, PermanentFailure | nats.errors.MaxPayloadError):
        return "permanent"
    if isinstance(error, (TransientFailure, *_OUTAGE_ERRORS)):
        return "outage"
    if any(
        cls.__module__.startswith("pymongo") and cls.__name__ in _PYMONGO_OUTAGES
        for cls in type(error).__mro__
    ):
        return "outage"
    return "crash"


class Delivery(msgspec.Struct, frozen=True):
    """Where a message sits in its stream, how often it was delivered, and whether it is a replay."""

    stream_seq: int
    num_delivered: int
    consumer: str = ""
    # Set when an operator re-published the message (``bridge events replay`` / ``dlq retry``).
    replay_id: str | None = None
    # The replay asks for effects to be carried out again even where records say they were done.
    force_effects: bool = False
    # The replay is meant for this durable consumer only (None: for every consumer of the subject).
    replay_into: str | None = None

    @property
    def meant_for_another(self) -> bool:
        """A replay an operator sent into another consumer: this one acknowledges and skips it."""
        return self.replay_into is not None and self.replay_into != self.consumer


_current_delivery: contextvars.ContextVar[Delivery | None] = contextvars.ContextVar(
    "bridge_current_delivery", default=None
)


def current_delivery() -> Delivery | None:
    """The delivery being handled in this task, if any (set by ``consume``)."""
    return _current_delivery.get()


@contextlib.contextmanager
def handling(delivery: Delivery) -> Iterator[None]:
    """Make ``delivery`` the current one (for consumers that settle messages themselves)."""
    token = _current_delivery.set(delivery)
    try:
        yield
    finally:
        _current_delivery.reset(token)


def delivery_of(raw: Any, consumer: str) -> Delivery:
    """The ``Delivery`` of a nats-py JetStream message (stream position, attempts, replay marks)."""
    headers = dict(raw.headers or {})
    return Delivery(
        stream_seq=raw.metadata.sequence.stream,
        num_delivered=raw.metadata.num_delivered,
        consumer=consumer,
        replay_id=headers.get(REPLAY_HEADER) or None,
        force_effects=headers.get(FORCE_EFFECTS_HEADER, "").lower() == "true",
        replay_into=headers.get(REPLAY_INTO_HEADER) or None,
    )


def forcing_effects() -> bool:
    """True while handling a replay whose operator asked for effects to be carried out again."""
    delivery = _current_delivery.get()
    return delivery is not None and delivery.force_effects


async def consume(
    msg: NatsMessage,
    event_type: type[E] | tuple[type[Any], ...],
    handler: Callable[[Any, Delivery], Awaitable[None]],
    *,
    wanted: Callable[[bytes], bool] | None = None,
) -> None:
    """Decode, handle and settle one JetStream message (FastStream subscriber, MANUAL ack)."""
    raw = msg.raw_message
    delivery = delivery_of(raw, raw.metadata.consumer)
    if wanted is not None and not wanted(msg.body):
        # Most of a busy stream, for a consumer that looks for a rare few: no decoding, no line.
        await settle(raw, delivery, "not_wanted", Ack(counted_as="skipped"))
        return
    # Handlers bind more context (chat, task, comment); none of it may leak into the next message.
    context_before = structlog.contextvars.get_contextvars()
    token = _current_delivery.set(delivery)
    try:
        structlog.contextvars.bind_contextvars(
            subject=raw.subject,
            consumer=delivery.consumer,
            stream_seq=delivery.stream_seq,
            delivery=delivery.num_delivered,
            **({"replay_id": delivery.replay_id} if delivery.replay_id else {}),
        )
        if delivery.meant_for_another:
            log.info("replay_skipped", why="replayed into another consumer", replay_into=delivery.replay_into)
            await settle(raw, delivery, "replay", Ack(counted_as="skipped"))
            return
        try:
            event: AnyEvent = decode_event(msg.body)
        except (msgspec.DecodeError, msgspec.ValidationError) as error:
            log.error("undecodable_event", error=str(error), body=msg.body[:200].decode(errors="replace"))
            await settle(raw, delivery, "undecodable", DeadLetter(DeadLetterReason.UNDECODABLE, str(error)))
            return
        structlog.contextvars.bind_contextvars(
            correlation_id=event.correlation_id,
            event_type=event.tag,
            event_id=event.event_id,
            **_routing_of(event),
        )
        if not isinstance(event, event_type):
            log.info("event_skipped", why="this consumer does not handle this event type")
            await settle(raw, delivery, event.tag, Ack(counted_as="skipped"))
            return
        await _handle(raw, event, delivery, handler)
    finally:
        _current_delivery.reset(token)
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(**context_before)


def consume_durably(
    router: NatsRouter | NatsBroker,
    consumer: ConsumerSpec,
    event_type: type[E] | tuple[type[Any], ...],
    handler: Callable[[Any, Delivery], Awaitable[None]],
    *,
    wanted: Callable[[bytes], bool] | None = None,
) -> None:
    """Subscribe ``handler`` to ``consumer`` as ``contracts.subjects`` declares it: a durable pull
    consumer, one message at a time, each decoded to ``event_type`` and settled by ``consume``.
    ``wanted``: a test of the raw body; a message failing it is acknowledged unread."""
    stream = next(spec for spec in ALL_STREAMS if spec.name == consumer.stream)

    async def on_message(msg: NatsMessage) -> None:
        await consume(msg, event_type, handler, wanted=wanted)

    router.subscriber(
        consumer.filter_subject,
        stream=jstream(stream),
        ack_policy=AckPolicy.MANUAL,
        # The channel's name in the AsyncAPI document: two services may read one filter.
        title=f"{consumer.filter_subject}:{consumer.durable}",
        **durable_pull(
            consumer.durable,
            ack_wait_s=consumer.ack_wait_s,
            max_deliver=consumer.max_deliver,
            in_flight=consumer.in_flight,
        ),
    )(on_message)


def _routing_of(event: Event) -> dict[str, Any]:
    """The chat and task an event is about, for the log line (absent fields are left out)."""
    fields = {name: getattr(event, name, None) for name in ("chat_id", "task_number")}
    return {name: value for name, value in fields.items() if value is not None}


async def _handle(
    raw: Any, event: Event, delivery: Delivery, handler: Callable[[Any, Delivery], Awaitable[None]]
) -> None:
    started = time.perf_counter()
    try:
        await handler(event, delivery)
    except Exception as error:
        verdict = verdict_on_failure(error, event, delivery)
    else:
        verdict = Ack()
        metrics.EVENT_AGE_SECONDS.labels(delivery.consumer, event.tag).observe(
            max(0.0, (datetime.now(UTC) - event.occurred_at).total_seconds())
        )
        log.info("event_handled", ms=round((time.perf_counter() - started) * 1000, 1))
    try:
        await settle(raw, delivery, event.tag, verdict)
    finally:
        metrics.HANDLING_SECONDS.labels(delivery.consumer, event.tag).observe(time.perf_counter() - started)


def verdict_on_failure(error: Exception, event: Event, delivery: Delivery) -> Verdict:
    """What a failed handling leads to: wait out an outage, retry a crash a few times, or set the
    message aside (dead letter) so its group's later messages go on."""
    kind = failure_kind(error)
    key = (delivery.consumer, delivery.stream_seq)
    if kind == "permanent":
        _crashes.pop(key, None)
        log.error("event_failed_permanently", error=f"{type(error).__name__}: {error}")
        return DeadLetter(DeadLetterReason.PERMANENT_FAILURE, _detail(error), event)
    if kind == "outage":
        _crashes.pop(key, None)
        if _is_last_delivery(delivery):  # only where a test or tool set a max_deliver
            log.error("event_retries_exhausted", error=str(error), crashed=False)
            return DeadLetter(DeadLetterReason.RETRIES_EXHAUSTED, str(error), event)
        delay = outage_delay_s(delivery.num_delivered, error)
        log.warning("event_retry_later", error=_detail(error), retry_in_s=delay)
        return Retry(delay)
    crashes = _crashes.get(key, 0) + 1
    if crashes >= CRASH_LIMIT or _is_last_delivery(delivery):
        _crashes.pop(key, None)
        log.exception("event_handler_kept_crashing", crashes=crashes)
        detail = f"handler failed {crashes} times in a row: {_detail(error)}"
        return DeadLetter(DeadLetterReason.RETRIES_EXHAUSTED, detail, event)
    if len(_crashes) >= _CRASHES_KEPT:
        _crashes.pop(next(iter(_crashes)))  # another replica settled those long ago
    _crashes[key] = crashes
    delay = crash_delay_s(crashes)
    log.exception("event_handler_crashed", retry_in_s=delay, crashes=crashes)
    return Retry(delay, crashed=True)


def _detail(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}" if not isinstance(error, TransientFailure) else str(error)


def _is_last_delivery(delivery: Delivery) -> bool:
    max_deliver = _max_deliver_by_consumer.get(delivery.consumer)
    return max_deliver is not None and max_deliver > 0 and delivery.num_delivered >= max_deliver


@dataclasses.dataclass(frozen=True)
class Ack:
    """Done. ``confirmed``: wait for JetStream to confirm (a batch consumer's floor must move
    before it rewinds); ``counted_as``: the outcome in the metrics."""

    confirmed: bool = False
    counted_as: str = "ok"


@dataclasses.dataclass(frozen=True)
class Retry:
    """Deliver again after ``delay_s`` (``crashed``: the handler raised something unexpected)."""

    delay_s: float
    crashed: bool = False


@dataclasses.dataclass(frozen=True)
class DeadLetter:
    """Never deliver again: stored on ``deadletter.<consumer>`` first, then terminated."""

    reason: DeadLetterReason
    detail: str
    event: Event | None = None


Verdict = Ack | Retry | DeadLetter


async def settle(raw: Any, delivery: Delivery, event_type: str, verdict: Verdict) -> None:
    """How a nats-py JetStream message leaves its consumer, counted in the metrics. A dead letter
    that cannot be stored leaves the message to be delivered again: it is never lost."""
    labels = (delivery.consumer, event_type)
    match verdict:
        case Ack(confirmed=confirmed, counted_as=counted_as):
            await (raw.ack_sync() if confirmed else raw.ack())
            metrics.EVENTS_IN.labels(*labels, counted_as).inc()
        case Retry(delay_s=delay_s, crashed=crashed):
            metrics.RETRIES.labels(delivery.consumer, "crash" if crashed else "transient").inc()
            metrics.EVENTS_IN.labels(*labels, "retry").inc()
            note_outage(delivery.consumer, waiting=not crashed)
            await raw.nak(delay=delay_s)
        case DeadLetter(reason=reason, detail=detail, event=event):
            metrics.EVENTS_IN.labels(*labels, "dead_lettered").inc()
            if await store_dead_letter(raw, delivery, event, reason, detail):
                await raw.term()
            elif _is_last_delivery(delivery):
                # JetStream will not deliver it again (a nak past max_deliver is ignored): keep it
                # here, in progress, until the dead letter is stored.
                await _keep_until_dead_lettered(raw, delivery, event, reason, detail)
            else:
                await raw.nak(delay=retry_delay_s(delivery.num_delivered))
    if not isinstance(verdict, Retry):
        note_outage(delivery.consumer, waiting=False)


async def _keep_until_dead_lettered(
    raw: Any, delivery: Delivery, event: Event | None, reason: DeadLetterReason, detail: str
) -> None:
    attempt = 1
    while True:
        with contextlib.suppress(Exception):
            await raw.in_progress()
        await asyncio.sleep(retry_delay_s(attempt, cap_s=10.0))
        attempt += 1
        if await store_dead_letter(raw, delivery, event, reason, detail):
            await raw.term()
            return


# Since when each consumer's oldest message has been waiting out an outage (monotonic clock).
_waiting_since: dict[str, float] = {}


def note_outage(consumer: str, *, waiting: bool) -> None:
    """Keep ``bridge_consumer_outage_seconds`` (the alert metric): how long this consumer's
    current message has been waiting for the outside world to come back; 0 when it is not.
    (``settle`` keeps it; a consumer that retries in place says so itself.)"""
    if not consumer:
        return
    if waiting:
        since = _waiting_since.setdefault(consumer, time.monotonic())
        metrics.CONSUMER_OUTAGE_SECONDS.labels(consumer).set(time.monotonic() - since)
    elif _waiting_since.pop(consumer, None) is not None:
        metrics.CONSUMER_OUTAGE_SECONDS.labels(consumer).set(0)


async def store_dead_letter(
    raw: Any, delivery: Delivery, event: Event | None, reason: DeadLetterReason, detail: str
) -> bool:
    """Publish a nats-py JetStream message to the DEADLETTER stream; False when that failed.

    The caller settles the message: ``term`` once stored, ``nak`` when not (never lose it).
    """
    stream = raw.metadata.stream
    key = dead_letter_key(stream, delivery.stream_seq, delivery.consumer)
    event_id = event_id_for(key)
    dead = MessageDeadLettered(
        event_id=event_id,
        occurred_at=datetime.now(UTC),
        correlation_id=event.correlation_id if event is not None else event_id,
        causation_id=event.event_id if event is not None else f"{stream}:{delivery.stream_seq}",
        consumer=delivery.consumer,
        stream=stream,
        stream_seq=delivery.stream_seq,
        original_subject=raw.subject,
        original_headers=dict(raw.headers or {}),
        body_b64=base64.b64encode(raw.data).decode("ascii"),
        reason=reason,
        detail=redact(detail)[:2000],  # kept for weeks: no token of a URL in an error goes in
        num_delivered=delivery.num_delivered,
        original_event_type=event.tag if event is not None else None,
        original_event_id=event.event_id if event is not None else None,
    )
    # The connection that delivered the message; the dead letter goes out the same way.
    publisher = ConnectionPublisher(raw._client)
    try:
        try:
            await publisher.publish(dead, subject=dead_letter(delivery.consumer), msg_id=key)
        except nats.errors.MaxPayloadError:
            # The body, base64 and with the reason around it, is over NATS's limit: the dead
            # letter says where the message stays instead (the stream keeps it until it ages out).
            dead = msgspec.structs.replace(
                dead,
                body_b64="",
                detail=f"{dead.detail[:1500]} (body left out, too large for a dead letter: it stays "
                f"in stream {stream} at sequence {delivery.stream_seq})",
            )
            await publisher.publish(dead, subject=dead_letter(delivery.consumer), msg_id=key)
    except Exception as error:
        log.error(
            "dead_letter_not_stored",
            error=f"{type(error).__name__}: {error}",
            hint=f"the message stays in stream {stream} at sequence {delivery.stream_seq}; "
            "`bridge events replay --stream ... --from-seq ... --to-seq ...` re-delivers it",
        )
        return False
    metrics.DEAD_LETTERS.labels(delivery.consumer, str(reason)).inc()
    log.error("event_dead_lettered", reason=str(reason), detail=detail[:500])
    return True


class ConnectionPublisher(EventPublisher):
    """An ``EventPublisher`` (same headers, same retries) over a bare nats-py connection."""

    def __init__(self, connection: Any, *, give_up_after_s: float = 30.0) -> None:
        super().__init__(_Connection(connection), give_up_after_s=give_up_after_s)


class _Connection(NamedTuple):
    connection: Any
