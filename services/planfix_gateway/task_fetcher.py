"""A task's state, read through the REST API when a scenario says the task changed, a group is
bound to it or the re-read's reconciliation pass finds it due, and stored when it differs from
the last one stored (issue 18).

* ``planfix.webhook.task.<task>`` (the scenario's notice, the task's number only),
  ``binding.bound.<chat>`` (a group was bound: its card needs a state to start from) and
  ``reread`` (each bound task once per ``PLANFIX_RECONCILE_QUIET_INTERVAL_MIN``, for changes no
  notice announced) -> one ``GET /task/{id}`` with the card's fields, paced with every other
  Planfix call, one read of a task at a time, all through ``TaskFetcher.read``.
* The task's last known state is the last event on ``planfix.task.changed.<task>``
  (``bridge_lib.task_state``): a state equal to it stores nothing; a different one is stored as
  ``PlanfixTaskStateChanged`` with the previous state beside it, under a key made of the state
  and the sequence of the state it follows, so a redelivery (or a second replica) stores it once.
* A notice received before a read of the same task started is answered by that read: several
  notices for one change (a burst of scenario requests, Planfix's retries queued behind it) cost
  one request, not one each.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any, Literal

import msgspec
import structlog
from faststream.nats import NatsRouter

from bridge_lib import metrics
from bridge_lib.eventbus import Delivery, EventPublisher, PermanentFailure, TransientFailure, consume_durably
from bridge_lib.health import consumer_ref
from bridge_lib.planfix import (
    PlanfixAuthError,
    PlanfixClient,
    PlanfixRejected,
    PlanfixUnavailable,
    TaskNotFound,
)
from bridge_lib.task_state import KnownState, last_task_state
from contracts import subjects
from contracts.events import (
    Event,
    PlanfixTaskState,
    PlanfixTaskStateChanged,
    PlanfixTaskWebhookReceived,
    TaskBound,
    TaskStateSeen,
    envelope_after,
    planfix_task_state_key,
    root_envelope,
    utc_now,
)
from contracts.subjects import FETCHER_TASK_BOUND, FETCHER_TASK_WEBHOOKS

log = structlog.get_logger("planfix_gateway.task_fetcher")

CONSUMERS = (consumer_ref(FETCHER_TASK_WEBHOOKS), consumer_ref(FETCHER_TASK_BOUND))


async def no_wait() -> None:
    """A ``before_fetch`` that waits for nothing."""


def state_hash(state: PlanfixTaskState) -> str:
    return hashlib.sha256(msgspec.json.encode(state)).hexdigest()[:16]


def changed(previous: PlanfixTaskState | None, current: PlanfixTaskState) -> bool:
    """Whether ``current`` is worth storing: the first state of a task, or a different one."""
    return previous is None or previous != current


# What one read came to: answered by a later read (no request), the task gone or not visible,
# the same state as stored, the task's first state stored, a change stored, or a state another
# read had just stored.
ReadOutcome = Literal["answered", "skipped", "unchanged", "first", "stored", "repeat"]


class TaskFetcher:
    def __init__(
        self,
        *,
        planfix: PlanfixClient,
        publisher: EventPublisher,
        jetstream: Callable[[], Any],
        before_fetch: Callable[[], Awaitable[None]] = no_wait,
    ) -> None:
        self._planfix = planfix
        self._publisher = publisher
        # The JetStream context, asked for when first needed (the broker connects after build).
        self._jetstream = jetstream
        self._before_fetch = before_fetch
        # When the last read of each task started: a notice received before it is answered.
        self._read_started: dict[int, datetime] = {}
        # One read of a task at a time (a notice and the reconciliation pass): each compares with
        # the state the other stored.
        self._reading: dict[int, asyncio.Lock] = {}
        # Planfix requests made, for the cost per change (``bench`` and tests read it).
        self.reads = 0

    async def on_notice(self, notice: PlanfixTaskWebhookReceived, delivery: Delivery) -> None:
        await self._consume(notice, notice.task_number, TaskStateSeen.WEBHOOK)

    async def on_bound(self, event: TaskBound, delivery: Delivery) -> None:
        await self._consume(event, event.task_number, TaskStateSeen.BOUND)

    async def reconcile(self, task_number: int) -> ReadOutcome:
        """The reconciliation pass's read of a bound task (``reread``); Planfix's errors are the
        pass's to handle. A change found here is one the task scenario did not announce (a first
        state is not: the task was bound before it was read, or its state aged out of the stream)."""
        outcome = await self.read(task_number, TaskStateSeen.RECONCILE)
        if outcome == "stored":
            metrics.PLANFIX_TASK_CHANGES_RECONCILED.inc()
            log.warning(
                "task_change_found_by_reconciliation",
                task_number=task_number,
                hint="no notice announced it: check the Planfix task scenario and the webhook URL",
            )
        return outcome

    async def _consume(self, cause: Event, task_number: int, seen: TaskStateSeen) -> None:
        structlog.contextvars.bind_contextvars(task_number=task_number, seen_on=str(seen))
        try:
            await self.read(task_number, seen, cause)
        except PlanfixUnavailable as error:
            raise TransientFailure(str(error)) from error
        except PlanfixAuthError as error:
            log.error("planfix_token_rejected", error=str(error))
            raise TransientFailure(str(error)) from error
        except PlanfixRejected as error:
            raise PermanentFailure(str(error)) from error

    async def read(self, task_number: int, seen: TaskStateSeen, cause: Event | None = None) -> ReadOutcome:
        """Read the task and store its state if it differs from the last one stored. ``cause``:
        the event asking for it, answered without a request when a read started after it."""
        reading = self._reading.setdefault(task_number, asyncio.Lock())
        async with reading:
            started = self._read_started.get(task_number)
            if cause is not None and started is not None and started > cause.occurred_at:
                log.info("task_notice_answered_by_a_later_read", task_number=task_number)
                return "answered"
            await self._before_fetch()
            known = await last_task_state(self._jetstream(), task_number)
            self._read_started[task_number] = utc_now()
            state = await self._fetch(task_number)
            if state is None:
                return "skipped"
            return await self._store(task_number, state, known, seen, cause)

    async def _store(
        self,
        task_number: int,
        state: PlanfixTaskState,
        known: KnownState | None,
        seen: TaskStateSeen,
        cause: Event | None,
    ) -> ReadOutcome:
        previous = known.event.state if known is not None else None
        if not changed(previous, state):
            log.info("task_state_unchanged", task_number=task_number, seen_on=str(seen))
            return "unchanged"
        # The same key whichever read finds the state first: it is stored once.
        key = planfix_task_state_key(task_number, state_hash(state), known.seq if known is not None else 0)
        envelope = (
            envelope_after(cause, key)
            if cause is not None
            else root_envelope(key, caused_by=f"{seen}:task/{task_number}")
        )
        event = PlanfixTaskStateChanged(
            **envelope, task_number=task_number, state=state, previous=previous, seen_on=seen
        )
        stored = await self._publisher.publish(
            event, subject=subjects.planfix_task_changed(task_number), msg_id=key
        )
        log.info(
            "task_state_stored",
            task_number=task_number,
            seen_on=str(seen),
            duplicate=not stored,
            status=state.status_name,
            deadline=state.deadline,
        )
        if not stored:
            return "repeat"
        return "first" if previous is None else "stored"

    async def _fetch(self, task_number: int) -> PlanfixTaskState | None:
        """The task's state (one ``GET /task/{id}``), or None when there is nothing to show."""
        self.reads += 1
        try:
            state, _people = await self._planfix.get_task_state(task_number)
        except TaskNotFound:
            log.info("task_not_found_skipped", task_number=task_number)
            return None
        except PlanfixRejected as error:
            # Access denied: the robot may not see the task; nothing to show.
            if error.code == 6 and not isinstance(error, PlanfixAuthError):
                log.warning("task_not_visible_skipped", task_number=task_number, code=error.code)
                return None
            raise
        return state


def build_router(fetcher: TaskFetcher) -> NatsRouter:
    router = NatsRouter()
    consume_durably(router, FETCHER_TASK_WEBHOOKS, PlanfixTaskWebhookReceived, fetcher.on_notice)
    consume_durably(router, FETCHER_TASK_BOUND, TaskBound, fetcher.on_bound)
    return router
