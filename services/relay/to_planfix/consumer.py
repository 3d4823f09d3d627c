"""The relay's Telegram -> Planfix consumer: batches from one durable pull consumer, in order.

Batches, not one message at a time, because combining a backlog into one comment needs to see
the backlog: each fetch takes what waits (up to ``batch``), and a batch ending in an album part
younger than ``album_window_s`` waits that long for the album's other parts. A step that fails is
retried *here*, before anything after it, because a ``nak`` would let JetStream hand out newer
messages of the group first. One replica consumes at a time (a lease in NATS KV): Planfix allows
about one request per second per account, so more would add no throughput, only disorder.
The loop around it (lease, subscription, rewind on taking over, stop) is
``bridge_lib.ordered_batches.BatchReader``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import msgspec
import nats.errors
import nats.js.errors
import structlog

from bridge_lib import metrics
from bridge_lib.eventbus import (
    Ack,
    DeadLetter,
    PermanentFailure,
    delivery_of,
    failure_kind,
    forcing_effects,
    handling,
    note_outage,
    outage_delay_s,
    retry_delay_s,
    settle,
)
from bridge_lib.lease import Lease
from bridge_lib.ordered_batches import BatchReader, Stopping
from contracts.events import (
    DeadLetterReason,
    TelegramMessageEdited,
    TelegramMessageReceived,
    TelegramReactionChanged,
    decode_event,
    telegram_message_key,
)
from contracts.subjects import (
    RELAY_TELEGRAM_INBOUND,
)
from services.relay.directory import BindingDirectory
from services.relay.to_planfix.authors import Authors
from services.relay.to_planfix.carrier import Carrier
from services.relay.to_planfix.ledger import CommentLedger
from services.relay.to_planfix.pending_binds import BIND_WAIT_S, PendingBinds
from services.relay.to_planfix.plan import (
    BatchPlan,
    CombineLimits,
    Group,
    InboundEvent,
    Step,
    album_key,
    plan_batch,
)
from services.relay.to_planfix.replies import QuotedComments

log = structlog.get_logger("relay.inbound")

DURABLE = RELAY_TELEGRAM_INBOUND.durable
ACK_WAIT_S = 60.0
# A unit whose handler raises something other than a TransientFailure this many times in a row
# is a bug, not an outage: it is dead-lettered so the messages after it can go.
CRASH_ATTEMPTS = 10
_HEARTBEAT_S = ACK_WAIT_S / 3


class InboundConsumer(BatchReader):
    def __init__(
        self,
        js: Any,
        *,
        directory: BindingDirectory,
        ledger: CommentLedger,
        carrier: Carrier,
        lease: Lease,
        limits: CombineLimits,
        batch: int = 100,
        album_window_s: float = 1.5,
        concurrency: int = 16,
        authors: Authors | None = None,
        bind_wait_s: float = BIND_WAIT_S,
        quotes: QuotedComments | None = None,
    ) -> None:
        super().__init__(js, RELAY_TELEGRAM_INBOUND, lease=lease, fetch_size=batch)
        self._quotes = quotes
        self._pending_binds = PendingBinds(js, directory, wait_s=bind_wait_s, pause=self._pause)
        self._directory = directory
        self._ledger = ledger
        self._carrier = carrier
        self._limits = limits
        self._album_window_s = album_window_s
        # Steps of different tasks carried at once (Planfix round trips and store writes overlap).
        self._slots = asyncio.Semaphore(max(1, concurrency))
        self._authors = authors

    async def _more(self, subscription: Any, messages: list[Any]) -> list[Any]:
        """More messages while the newest one is an album part younger than the window."""
        more: list[Any] = []
        while True:
            newest = (more or messages)[-1]
            if b'"media_group_id":"' not in newest.data:
                return more
            age = time.time() - newest.metadata.timestamp.timestamp()
            if age >= self._album_window_s:
                return more
            try:
                more += await subscription.fetch(self._fetch_size, timeout=self._album_window_s - age + 0.05)
            except nats.errors.TimeoutError:
                return more

    async def _handle(self, messages: list[Any]) -> None:
        """Carry a batch: each task's units settled in order, tasks side by side.

        A replay an operator sent with ``--force-effects`` is carried on its own, marked as the
        current delivery, so the effects it asks for are made again (see ``forcing_effects``).
        """
        forced = [message for message in messages if delivery_of(message, DURABLE).force_effects]
        await self._handle_batch([m for m in messages if m not in forced])
        for message in forced:
            with handling(delivery_of(message, DURABLE)):
                await self._handle_batch([message])

    async def _handle_batch(self, messages: list[Any]) -> None:
        if not messages:
            return
        events: list[InboundEvent] = []
        raw_of: dict[str, Any] = {}
        for message in messages:
            delivery = delivery_of(message, DURABLE)
            if delivery.meant_for_another:
                await settle(message, delivery, "replay", Ack(counted_as="skipped"))
                continue
            try:
                event = decode_event(message.data)
            except (msgspec.DecodeError, msgspec.ValidationError) as error:
                log.error("undecodable_event", error=str(error), subject=message.subject)
                verdict = DeadLetter(DeadLetterReason.UNDECODABLE, str(error))
                await settle(message, delivery, "undecodable", verdict)
                continue
            if not isinstance(
                event, TelegramMessageReceived | TelegramMessageEdited | TelegramReactionChanged
            ):
                await settle(message, delivery, event.tag, Ack(counted_as="skipped"))
                continue
            if isinstance(event, TelegramMessageReceived) and self._quotes is not None:
                event = await self._quotes.requote(event)
            events.append(event)
            raw_of[event.event_id] = message
        if not events:
            return
        heartbeat = asyncio.create_task(self._heartbeat(list(raw_of.values())))
        try:
            bindings, written_unbound = await self._bindings(events, raw_of)
            for event in written_unbound:
                log.info("unbound_group_not_relayed", chat_id=event.chat_id, message_id=event.message_id)
                raw = raw_of[event.event_id]
                await settle(raw, delivery_of(raw, DURABLE), event.tag, Ack(counted_as="skipped"))
            let_go = {event.event_id for event in written_unbound}
            events = [event for event in events if event.event_id not in let_go]
            plan, leads = await self._plan(events, raw_of, bindings)
            await self._carry_chains([list(plan.skipped), *map(list, plan.chains)], leads, raw_of)
            # Last: an edit or a reaction may be about a message of this very batch.
            await self._carry_chains([[plan.rewrite] if plan.rewrite else []], leads, raw_of)
        finally:
            heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await heartbeat

    async def _carry_chains(
        self, chains: list[list[Step]], leads: dict[str, str], raw_of: dict[str, Any]
    ) -> None:
        """Carry each chain's steps in order, the chains side by side (at most ``concurrency``
        steps at a time); return when every chain is done.

        A chain is one task's steps: a task's comments keep their order, while a task waiting
        for its Planfix round trip (or retrying through an outage) holds up no other task. The
        next batch starts only when all are done, so nothing newer overtakes a step being retried.
        """
        chains = [chain for chain in chains if chain]
        if len(chains) <= 1:
            for chain in chains:
                await self._carry_chain(chain, leads, raw_of)
            return
        outcomes = await asyncio.gather(
            *(self._carry_chain(chain, leads, raw_of) for chain in chains), return_exceptions=True
        )
        failures = [outcome for outcome in outcomes if isinstance(outcome, BaseException)]
        for failure in failures:
            if not isinstance(failure, Stopping):
                raise failure
        if failures:
            raise Stopping

    async def _carry_chain(self, chain: list[Step], leads: dict[str, str], raw_of: dict[str, Any]) -> None:
        for step in chain:
            async with self._slots:
                if self._stopping.is_set():
                    raise Stopping
                raws = [raw_of[event.event_id] for event in step.events]
                attempts = max(raw.metadata.num_delivered for raw in raws)
                with structlog.contextvars.bound_contextvars(
                    consumer=DURABLE,
                    correlation_id=step.events[0].correlation_id,
                    event_type=step.events[0].tag,
                    batch_events=len(step.events),
                ):
                    await self._carry_and_settle(step, leads, raws, attempts)

    async def _bindings(
        self, events: list[InboundEvent], raw_of: dict[str, Any]
    ) -> tuple[dict[Group, int | None], list[InboundEvent]]:
        """The task of each group with new messages in the batch (None: unbound), and the messages
        written before a ``/task`` whose outcome they waited for (let go as unbound).

        A group with no binding but a bind request in flight waits for its outcome (bounded,
        ``PendingBinds``); the groups wait side by side, and the batch after this one waits too,
        so a group's order holds. While the directory or NATS is away, wait for it."""
        attempts = max(raw.metadata.num_delivered for raw in raw_of.values())
        newest: dict[Group, int] = {}
        for event in events:
            if isinstance(event, TelegramMessageReceived):
                group = (event.chat_id, event.thread_id)
                newest[group] = max(newest.get(group, 0), event.message_id)
        while True:
            try:
                bindings: dict[Group, int | None] = {}
                for group in newest:
                    bound = await self._directory.task_for(*group)
                    bindings[group] = bound.task_number if bound else None
                unbound = [group for group, task in bindings.items() if task is None]
                outcomes = await asyncio.gather(
                    *(self._pending_binds.outcome(*group, newest[group]) for group in unbound)
                )
                break
            except Stopping:
                raise
            except Exception:
                retry_in = retry_delay_s(attempts)
                log.exception("batch_bindings_not_read", retry_in_s=retry_in)
                await self._pause(retry_in)
                attempts += 1
        written_unbound: list[InboundEvent] = []
        for group, outcome in zip(unbound, outcomes, strict=True):
            if outcome is None or outcome.task is None:
                continue
            bindings[group] = outcome.task.task_number
            written_unbound += [
                event
                for event in events
                if isinstance(event, TelegramMessageReceived)
                and (event.chat_id, event.thread_id) == group
                and event.message_id < outcome.request_message_id
            ]
        return bindings, written_unbound

    async def _plan(
        self, events: list[InboundEvent], raw_of: dict[str, Any], bindings: dict[Group, int | None]
    ) -> tuple[BatchPlan, dict[str, str]]:
        """The batch's plan and what its keys lead to; while the ledger is away, wait for it."""
        attempts = max(raw.metadata.num_delivered for raw in raw_of.values())
        while True:
            try:
                leads = await self._ledger.leads(_keys_of(events))
                received = [event for event in events if isinstance(event, TelegramMessageReceived)]
                owners = self._authors.owner_keys(received) if self._authors is not None else None
                plan = plan_batch(
                    events, bindings, leads, limits=self._limits, forced=forcing_effects(), owners=owners
                )
                return plan, leads
            except Exception:
                retry_in = retry_delay_s(attempts)
                log.exception("batch_not_planned", retry_in_s=retry_in)
                await self._pause(retry_in)
                attempts += 1

    async def _carry_and_settle(
        self, step: Step, leads: dict[str, str], raws: list[Any], attempts: int
    ) -> None:
        """Carry one step, retrying it until it is done, then settle its messages."""
        crashes = 0
        while True:
            started = time.perf_counter()
            try:
                await self._carrier.carry(step, leads, attempts=attempts)
            except Exception as error:
                kind = failure_kind(error)
                if kind == "permanent":
                    detail = (
                        str(error)
                        if isinstance(error, PermanentFailure)
                        else f"{type(error).__name__}: {error}"
                    )
                    log.error("event_failed_permanently", error=detail)
                    await self._give_up(step, raws, DeadLetterReason.PERMANENT_FAILURE, detail)
                    return
                # An outage (Planfix, the store, NATS away) is waited out, never given up on.
                transient = kind == "outage"
                crashes = 0 if transient else crashes + 1
                if crashes >= CRASH_ATTEMPTS:
                    log.exception("event_handler_kept_crashing", attempts=attempts)
                    detail = f"handler failed {crashes} times: {type(error).__name__}: {error}"
                    await self._give_up(step, raws, DeadLetterReason.RETRIES_EXHAUSTED, detail)
                    return
                delay = outage_delay_s(attempts, error) if transient else retry_delay_s(attempts)
                if transient:
                    log.warning("event_retry_later", error=str(error), retry_in_s=delay)
                else:
                    log.exception("event_handler_crashed", retry_in_s=delay)
                metrics.RETRIES.labels(DURABLE, "transient" if transient else "crash").inc()
                note_outage(DURABLE, waiting=transient)
                for event in step.events:
                    metrics.EVENTS_IN.labels(DURABLE, event.tag, "retry").inc()
                await self._pause(delay)
                # The next try looks up what the failed one may have done (a comment Planfix
                # created before the answer was lost) before doing it again.
                attempts += 1
                continue
            # Only the step's last acknowledgement waits for JetStream's confirmation: a
            # consumer takes one connection's acknowledgements in the order they were sent, so
            # once the last is confirmed the step's floor has moved.
            settled = list(zip(step.events, raws, strict=True))
            for index, (event, raw) in enumerate(settled, start=1):
                verdict = Ack(confirmed=index == len(settled))
                await settle(raw, delivery_of(raw, DURABLE), event.tag, verdict)
            elapsed = time.perf_counter() - started
            now = time.time()
            for event in step.events:
                metrics.EVENT_AGE_SECONDS.labels(DURABLE, event.tag).observe(
                    max(0.0, now - event.occurred_at.timestamp())
                )
                # A combined comment's time is shared by the messages it carried.
                metrics.HANDLING_SECONDS.labels(DURABLE, event.tag).observe(elapsed / len(step.events))
            log.info("event_handled", ms=round(elapsed * 1000, 1))
            return

    @staticmethod
    async def _give_up(step: Step, raws: list[Any], reason: DeadLetterReason, detail: str) -> None:
        for event, raw in zip(step.events, raws, strict=True):
            await settle(raw, delivery_of(raw, DURABLE), event.tag, DeadLetter(reason, detail, event))

    async def _heartbeat(self, raws: list[Any]) -> None:
        """Tell NATS the batch is still being worked on, so a slow pace is not a redelivery."""
        while True:
            await asyncio.sleep(_HEARTBEAT_S)
            for raw in raws:
                with contextlib.suppress(Exception):
                    await raw.in_progress()


def _keys_of(events: list[InboundEvent]) -> list[str]:
    """What may lead to a comment already: the batch's messages, their albums, what edits and
    reactions are about."""
    keys: dict[str, None] = {}
    for event in events:
        keys[telegram_message_key(event.chat_id, event.message_id)] = None
        if isinstance(event, TelegramMessageReceived) and event.media_group_id:
            keys[album_key(event.chat_id, event.media_group_id)] = None
    return list(keys)
