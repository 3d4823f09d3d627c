"""A bind request still being decided: the messages written right after ``/task`` wait for it.

People write ``/task Fix the printer`` and, a second later, "it jams on tray 2". The binder needs
a Planfix round trip or two before the binding is stored, and the relay may see the message
first: without this it would be let go as from an unbound group. So before a group's messages
are let go, the group's last bind request is looked at (the last message on
``telegram.bind.requested.<chat id>``): a ``/task`` written before these messages, younger than
``wait_s`` and not decided yet (no ``TaskBound`` or ``BindRejected`` caused by it) is waited for,
a short poll at a time, up to ``wait_s`` after it was written. Only the groups with no binding and
no request in flight are let go at once. Messages written *before* the ``/task`` stay unbound.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import msgspec
import structlog

from bridge_lib.last_event import last_event
from contracts.events import AnyEvent, BindRejected, BindRequested, TaskBound
from contracts.subjects import (
    BINDING_STREAM,
    TELEGRAM_STREAM,
    binding_bound,
    binding_rejected,
    telegram_bind_requested,
)
from services.relay.directory import BindingDirectory, BoundTask

log = structlog.get_logger("relay.pending_binds")

# How long after a /task its group's messages may wait for the binder's decision.
BIND_WAIT_S = 30.0
_POLL_S = 0.2


class BindOutcome(msgspec.Struct, frozen=True):
    """What a group's messages follow after the wait: the task (None: still unbound) and the
    message id of the ``/task`` waited for (messages before it were written while unbound)."""

    task: BoundTask | None
    request_message_id: int


class PendingBinds:
    def __init__(
        self,
        js: Any,
        directory: BindingDirectory,
        *,
        wait_s: float = BIND_WAIT_S,
        pause: Callable[[float], Awaitable[None]] | None = None,
    ) -> None:
        self._js = js
        self._directory = directory
        self._wait_s = wait_s
        # Sleeps between looks; the consumer's own, which ends the wait when the service stops.
        self._pause = pause

    async def outcome(
        self, chat_id: int, thread_id: int | None, newest_message_id: int
    ) -> BindOutcome | None:
        """None when no bind request of this group is in flight for these messages; else wait for
        its decision (bounded) and return what the messages follow."""
        request = await self._request_in_flight(chat_id, thread_id, newest_message_id)
        if request is None:
            return None
        age = (datetime.now(UTC) - request.occurred_at).total_seconds()
        deadline = time.monotonic() + max(0.0, self._wait_s - age)
        log.info("messages_wait_for_bind_request", chat_id=chat_id, request_message_id=request.message_id)
        while True:
            bound = await self._directory.task_for(chat_id, thread_id)
            if bound is not None:
                return BindOutcome(bound, request.message_id)
            if await self._decided(request):
                return BindOutcome(None, request.message_id)
            if time.monotonic() >= deadline:
                log.warning("bind_request_not_decided_in_time", chat_id=chat_id, waited_s=self._wait_s)
                return BindOutcome(None, request.message_id)
            await (self._pause or asyncio.sleep)(_POLL_S)

    async def _request_in_flight(
        self, chat_id: int, thread_id: int | None, newest_message_id: int
    ) -> BindRequested | None:
        request = await self._last(TELEGRAM_STREAM.name, telegram_bind_requested(chat_id))
        if not isinstance(request, BindRequested):
            return None  # none, or the last word was an /unbind
        if request.thread_id is not None and request.thread_id != thread_id:
            return None  # a bind of another forum topic
        if request.message_id > newest_message_id:
            return None  # these messages were written before it
        if (datetime.now(UTC) - request.occurred_at).total_seconds() >= self._wait_s:
            return None
        # Decided already or not, ``outcome`` looks at the directory first: a binding it stored
        # just now must not be missed for having been decided.
        return request

    async def _decided(self, request: BindRequested) -> bool:
        """The binder bound or refused it (a binding since removed is decided too)."""
        for subject, decision in (
            (binding_bound(request.chat_id), TaskBound),
            (binding_rejected(request.chat_id), BindRejected),
        ):
            event = await self._last(BINDING_STREAM.name, subject)
            if isinstance(event, decision) and event.causation_id == request.event_id:
                return True
        return False

    async def _last(self, stream: str, subject: str) -> AnyEvent | None:
        found = await last_event(self._js, stream, subject)
        return found.event if found is not None else None
