"""A durable consumer read in batches, in stream order, by one replica at a time.

For a reader whose handler gains from seeing what waits together (one store round trip per
question for a whole batch instead of one per message) and to whom order matters:

- one replica reads at a time (a lease in NATS KV); the others stand by;
- ``max_ack_pending`` is one batch, and the next batch is fetched once this one is settled;
- a holder that died left messages unacknowledged, which JetStream would hand out again only
  after ``ack_wait``, newer ones first: the next holder recreates the consumer from just after
  the acknowledgement floor instead (the handler is idempotent, so what was done is not redone);
- a batch whose handler fails is carried again one message at a time, each retried *here*
  (a ``nak`` would let newer messages overtake it) until it is handled or set aside as a dead
  letter, by the same verdicts ``eventbus.consume`` gives.

``BatchReader`` is the loop (lease, subscription, rewind, fetches, stop), also the relay's
Telegram -> Planfix consumer's; ``OrderedBatches`` hands a fetch's events to a pair of handlers.
A reader to whom order means nothing runs without the lease, on every replica, never rewound.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

import msgspec
import nats.errors
import nats.js.errors
import structlog
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from bridge_lib import metrics
from bridge_lib.eventbus import (
    Ack,
    DeadLetter,
    Delivery,
    Retry,
    delivery_of,
    handling,
    note_outage,
    settle,
    verdict_on_failure,
)
from bridge_lib.lease import Lease, LeaseLost
from contracts.events import DeadLetterReason, Event, decode_event
from contracts.subjects import ConsumerSpec

log = structlog.get_logger("ordered_batches")

E = TypeVar("E", bound=Event)
T = TypeVar("T")
# Longest wait for the consumer to be (re)created before the loop starts again.
SUBSCRIBE_TIMEOUT_S = 30.0
# How long a fetch waits for a first message before asking again.
FETCH_WAIT_S = 5.0


class Stopping(Exception):
    """The service is stopping: leave what is not settled for the next holder."""


@dataclasses.dataclass(frozen=True)
class Handlers(Generic[E]):
    """``batch``: the events of one fetch, in stream order, carried as one unit (raising leaves
    them to ``one``); ``one``: a single event, with its delivery."""

    batch: Callable[[Sequence[E]], Awaitable[None]]
    one: Callable[[E, Delivery], Awaitable[None]]


class BatchReader:
    """The loop of a reader of batches: the lease (none for a reader every replica runs), the
    subscription (rewound on taking over, when ordered), fetches until stopped. What a fetch's
    messages become is the subclass's ``_handle``; it settles every one of them."""

    def __init__(
        self,
        js: Any,
        consumer: ConsumerSpec,
        *,
        lease: Lease | None,
        fetch_size: int = 0,
        linger_s: float = 0.0,
    ) -> None:
        self._js = js
        self._consumer = consumer
        self._lease: Lease | _EveryReplica = lease or _EveryReplica()
        # Messages a fetch asks for (at most ``in_flight``, the consumer's max_ack_pending).
        self._fetch_size = fetch_size or consumer.in_flight
        # After a fetch that was not full, wait this long before the next: for a reader to whom
        # a moment means nothing, what arrives meanwhile comes in one fetch, not one each.
        self._linger_s = linger_s
        self._stopping = asyncio.Event()
        self._carrying = False
        # Where a rewind deleted the consumer to start again from, until it is made again: a try
        # cut off in between (a NATS node lost) must not make it anew from the stream's start.
        self._rewound_to: int | None = None

    async def run(self) -> None:
        """Consume while holding the lease; stand by while another replica holds it. A NATS
        hiccup or a failure of the loop is logged and the loop starts again a moment later."""
        try:
            while not self._stopping.is_set():
                try:
                    await self._lease.acquire()
                except Exception as error:
                    log.warning("lease_acquire_failed", error=f"{type(error).__name__}: {error}")
                    await asyncio.sleep(1.0)
                    continue
                keep = asyncio.create_task(self._lease.keep(), name=f"{self._consumer.durable}-lease")
                work = asyncio.create_task(self._consume(), name=self._consumer.durable)
                try:
                    done, _ = await asyncio.wait({keep, work}, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    for task in (keep, work):
                        await cancelled(task)
                for task in done:
                    failure = None if task.cancelled() else task.exception()
                    if failure is not None and not isinstance(failure, LeaseLost):
                        log.warning(
                            "batch_consumer_restarting",
                            consumer=self._consumer.durable,
                            error=f"{type(failure).__name__}: {failure}",
                        )
                await asyncio.sleep(0.5)
        finally:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._lease.release(), 2.0)

    async def stop(self, task: asyncio.Task[None], *, grace_s: float) -> None:
        """Stop fetching and let the batch in hand finish for up to ``grace_s``; whatever is not
        settled then stays unacknowledged, and the next holder starts from it."""
        self._stopping.set()
        if self._carrying and not task.done():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait({task}, timeout=grace_s)
        await cancelled(task)

    async def _consume(self) -> None:
        subscription = await within(self._subscribe(), SUBSCRIBE_TIMEOUT_S)
        log.info("batch_consumer_started", consumer=self._consumer.durable)
        try:
            while not self._stopping.is_set():
                try:
                    messages = await self._fetch_unless_stopping(subscription)
                except nats.errors.TimeoutError:
                    continue
                except Stopping:
                    return
                except nats.errors.Error as error:
                    log.warning(
                        "batch_fetch_failed", consumer=self._consumer.durable, error=type(error).__name__
                    )
                    await asyncio.sleep(1.0)
                    return
                if not messages:
                    # A pull can end empty (a stream leader moving in a cluster): nothing to do.
                    continue
                messages += await self._more(subscription, messages)
                self._carrying = True
                try:
                    await self._handle(messages)
                except Stopping:
                    log.info("batch_consumer_stopped_mid_batch", consumer=self._consumer.durable)
                    return
                finally:
                    self._carrying = False
                if self._linger_s and len(messages) < self._fetch_size:
                    try:
                        await self._pause(self._linger_s)
                    except Stopping:
                        return
        finally:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(subscription.unsubscribe(), 5.0)

    async def _subscribe(self) -> Any:
        spec = self._consumer
        start_seq = await self._restart_point()
        config = ConsumerConfig(
            durable_name=spec.durable,
            filter_subject=spec.filter_subject,
            ack_policy=AckPolicy.EXPLICIT,
            deliver_policy=DeliverPolicy.ALL if start_seq is None else DeliverPolicy.BY_START_SEQUENCE,
            opt_start_seq=start_seq,
            ack_wait=spec.ack_wait_s,
            max_deliver=spec.max_deliver,
            max_ack_pending=spec.in_flight,
        )
        await self._bring_to_batch_size(config)
        subscription = await self._js.pull_subscribe(
            spec.filter_subject, durable=spec.durable, stream=spec.stream, config=config
        )
        self._rewound_to = None
        return subscription

    async def _bring_to_batch_size(self, config: ConsumerConfig) -> None:
        """A consumer made by an earlier version read one message at a time: it is given this
        batch size in place (``max_ack_pending`` is one of the settings a consumer may change)."""
        spec = self._consumer
        try:
            info = await self._js.consumer_info(spec.stream, spec.durable)
        except nats.js.errors.NotFoundError:
            return
        if info.config.max_ack_pending != spec.in_flight:
            changed = dataclasses.replace(info.config, max_ack_pending=spec.in_flight)
            await self._js.add_consumer(spec.stream, config=changed)
            log.info("consumer_updated", consumer=spec.durable, max_ack_pending=spec.in_flight)

    async def _restart_point(self) -> int | None:
        """Just after the acknowledgement floor, when an earlier holder left messages
        unacknowledged (the consumer is then deleted, to be made again from there)."""
        spec = self._consumer
        if not spec.ordered:
            return None  # other replicas read it too; what a dead one left comes after ack_wait
        try:
            info = await self._js.consumer_info(spec.stream, spec.durable)
        except nats.js.errors.NotFoundError:
            return self._rewound_to
        # A pull answered while a stream's leader moved can leave messages delivered and not
        # counted as pending: anything delivered past the floor counts.
        floor = acknowledged_up_to(info)
        if not info.num_ack_pending and int(info.delivered.stream_seq) <= floor:
            return None
        start_seq = floor + 1
        log.warning(
            "batch_consumer_rewound",
            consumer=spec.durable,
            in_flight=info.num_ack_pending,
            delivered_stream_seq=int(info.delivered.stream_seq),
            from_stream_seq=start_seq,
        )
        self._rewound_to = start_seq if self._rewound_to is None else min(start_seq, self._rewound_to)
        await self._js.delete_consumer(spec.stream, spec.durable)
        return self._rewound_to

    async def _fetch_unless_stopping(self, subscription: Any) -> list[Any]:
        fetch = asyncio.ensure_future(subscription.fetch(self._fetch_size, timeout=FETCH_WAIT_S))
        stopping = asyncio.ensure_future(self._stopping.wait())
        try:
            await asyncio.wait({fetch, stopping}, return_when=asyncio.FIRST_COMPLETED)
        except BaseException:
            fetch.cancel()
            fetch.add_done_callback(outcome_collected)
            raise
        finally:
            stopping.cancel()
        if not fetch.done():
            # What this pull brings meanwhile stays unacknowledged for the next holder.
            await cancelled(fetch)
            raise Stopping
        return list(fetch.result())

    async def _pause(self, seconds: float) -> None:
        """Sleep, unless the service stops meanwhile."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)
        if self._stopping.is_set():
            raise Stopping

    async def _more(self, subscription: Any, messages: list[Any]) -> list[Any]:
        """What else to fetch before the batch is handled (nothing, unless a subclass waits for
        the rest of something)."""
        return []

    async def _handle(self, messages: list[Any]) -> None:
        raise NotImplementedError


class OrderedBatches(BatchReader, Generic[E]):
    """Events read in batches (``BatchReader``), each run of them carried as one unit."""

    def __init__(
        self,
        js: Any,
        consumer: ConsumerSpec,
        event_type: type[E] | tuple[type[Any], ...],
        handlers: Handlers[E],
        *,
        lease: Lease | None,
        wanted: Callable[[bytes], bool] | None = None,
        linger_s: float = 0.0,
    ) -> None:
        """``lease``: None for a reader to whom order means nothing (``ConsumerSpec.ordered``
        False): every replica reads then, and nothing is rewound. ``wanted``: a test of the raw
        body; a message failing it is acknowledged unread. ``linger_s``: ``BatchReader``'s."""
        super().__init__(js, consumer, lease=lease, linger_s=linger_s)
        self._event_type = event_type
        self._handlers = handlers
        self._wanted = wanted
        self._not_wanted = metrics.EVENTS_IN.labels(consumer.durable, "not_wanted", "skipped")

    # --- one batch ----------------------------------------------------------------------------

    async def _handle(self, messages: list[Any]) -> None:
        """Settle every message of the fetch, in order: runs of ordinary events as one batch; a
        replay asking for effects again alone, marked as the current delivery."""
        run: list[tuple[E, Any, Delivery]] = []
        for raw in messages:
            readable = await self._readable(raw)
            if readable is None:
                continue
            if readable[2].force_effects:
                await self._carry_batch(run)
                run = []
                await self._carry_one(*readable)
                continue
            run.append(readable)
        await self._carry_batch(run)

    async def _readable(self, raw: Any) -> tuple[E, Any, Delivery] | None:
        """The message's event, or None once a message that is not for this consumer is settled."""
        if self._wanted is not None and not self._wanted(raw.data):
            # Most of a busy stream, for a reader that looks for a rare few: not even its
            # headers are read.
            await raw.ack()
            self._not_wanted.inc()
            return None
        delivery = delivery_of(raw, self._consumer.durable)
        if delivery.meant_for_another:
            await settle(raw, delivery, "replay", Ack(counted_as="skipped"))
            return None
        try:
            event = decode_event(raw.data)
        except (msgspec.DecodeError, msgspec.ValidationError) as error:
            log.error("undecodable_event", consumer=delivery.consumer, error=str(error), subject=raw.subject)
            await settle(raw, delivery, "undecodable", DeadLetter(DeadLetterReason.UNDECODABLE, str(error)))
            return None
        if not isinstance(event, self._event_type):
            await settle(raw, delivery, event.tag, Ack(counted_as="skipped"))
            return None
        return event, raw, delivery  # type: ignore[return-value]

    async def _carry_batch(self, run: list[tuple[E, Any, Delivery]]) -> None:
        if not run:
            return
        if len(run) == 1:
            await self._carry_one(*run[0])
            return
        started = time.perf_counter()
        try:
            async with self._in_progress([raw for _, raw, _ in run]):
                with structlog.contextvars.bound_contextvars(
                    consumer=self._consumer.durable, batch_events=len(run)
                ):
                    await self._handlers.batch([event for event, _, _ in run])
        except Exception:
            log.exception("batch_failed_carried_one_by_one", consumer=self._consumer.durable, events=len(run))
            for event, raw, delivery in run:
                await self._carry_one(event, raw, delivery)
            return
        elapsed = time.perf_counter() - started
        for event, raw, delivery in run:
            _observe(delivery, event, elapsed / len(run))
            await settle(raw, delivery, event.tag, Ack())
        log.info(
            "batch_handled", consumer=self._consumer.durable, events=len(run), ms=round(elapsed * 1000, 1)
        )

    async def _carry_one(self, event: E, raw: Any, delivery: Delivery) -> None:
        """Handle one event until it is done or set aside, retrying here: nothing newer may pass."""
        attempt = 0
        while True:
            started = time.perf_counter()
            context = {
                "consumer": delivery.consumer,
                "stream_seq": delivery.stream_seq,
                "correlation_id": event.correlation_id,
                "event_type": event.tag,
                "event_id": event.event_id,
            }
            with handling(delivery), structlog.contextvars.bound_contextvars(**context):
                try:
                    await self._handlers.one(event, delivery)
                except Exception as error:
                    tried = msgspec.structs.replace(delivery, num_delivered=delivery.num_delivered + attempt)
                    verdict = verdict_on_failure(error, event, tried)
                else:
                    _observe(delivery, event, time.perf_counter() - started)
                    log.info("event_handled", ms=round((time.perf_counter() - started) * 1000, 1))
                    await settle(raw, delivery, event.tag, Ack())
                    return
                if isinstance(verdict, DeadLetter):
                    await settle(raw, delivery, event.tag, verdict)
                    return
            assert isinstance(verdict, Retry)
            metrics.RETRIES.labels(delivery.consumer, "crash" if verdict.crashed else "transient").inc()
            note_outage(delivery.consumer, waiting=not verdict.crashed)
            with contextlib.suppress(Exception):
                await raw.in_progress()
            await self._pause(verdict.delay_s)
            attempt += 1

    @contextlib.asynccontextmanager
    async def _in_progress(self, raws: list[Any]) -> AsyncIterator[None]:
        """Keep a long batch from being handed out again while it is being carried."""

        async def heartbeat() -> None:
            while True:
                await asyncio.sleep(self._consumer.ack_wait_s / 3)
                for raw in raws:
                    with contextlib.suppress(Exception):
                        await raw.in_progress()

        beating = asyncio.create_task(heartbeat())
        try:
            yield
        finally:
            await cancelled(beating)


class _EveryReplica:
    """In place of a lease, for a reader every replica runs."""

    async def acquire(self) -> None:
        return None

    async def keep(self) -> None:
        await asyncio.Event().wait()

    async def release(self) -> None:
        return None


def _observe(delivery: Delivery, event: Event, seconds: float) -> None:
    metrics.HANDLING_SECONDS.labels(delivery.consumer, event.tag).observe(seconds)
    age = (datetime.now(UTC) - event.occurred_at).total_seconds()
    metrics.EVENT_AGE_SECONDS.labels(delivery.consumer, event.tag).observe(max(0.0, age))


def acknowledged_up_to(info: Any) -> int:
    """The stream sequence a consumer has settled everything up to. A consumer made to start at
    a sequence reports an acknowledgement floor of 0 until it acknowledges something, though
    nothing before its start is its to deliver."""
    starts_after = int(getattr(info.config, "opt_start_seq", None) or 1) - 1
    return max(int(info.ack_floor.stream_seq), starts_after)


async def within(awaitable: Awaitable[T], seconds: float) -> T:
    """The awaitable's result, or TimeoutError after ``seconds`` even when it does not end on
    being cancelled (JetStream API calls while a stream's leader moves were seen to linger)."""
    task = asyncio.ensure_future(awaitable)
    done, _ = await asyncio.wait({task}, timeout=seconds)
    if not done:
        task.cancel()
        task.add_done_callback(outcome_collected)
        raise TimeoutError(f"not done within {seconds} s")
    return task.result()


async def cancelled(task: asyncio.Future[Any], *, patience_s: float = 5.0) -> None:
    """Cancel a task and wait for it, for at most ``patience_s`` (then it is left to end on its
    own); what it raises while being cancelled is only logged (nats-py's ``fetch`` can raise an
    IndexError instead of CancelledError when cancelled)."""
    if task.done():
        return
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=patience_s)
    if not done:
        log.warning("task_left_to_end_on_its_own", patience_s=patience_s)
        task.add_done_callback(outcome_collected)
        return
    try:
        task.result()
    except (asyncio.CancelledError, LeaseLost):
        pass
    except Exception as error:
        log.warning("stopped_with_error", error=f"{type(error).__name__}: {error}")


def outcome_collected(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()
