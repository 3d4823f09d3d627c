"""A fold of one stream kept live in memory: replayed from its first message through an ordered
consumer, then followed. The relay's bindings and people and the binder's people are each one of
these over the fold ``contracts`` defines for that stream, so a lookup is a dictionary read.

A miss may only mean "not caught up yet": ``catch_up`` waits until everything the stream held at
the moment of the question has been applied (``TransientFailure`` when NATS cannot say).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sized
from typing import Any, Generic, TypeVar

import msgspec
import nats.errors
import structlog
from nats.js.api import DeliverPolicy

from bridge_lib.eventbus import REPLAY_INTO_HEADER, TransientFailure
from contracts.events import AnyEvent, decode_event
from contracts.subjects import StreamSpec

log = structlog.get_logger("followed_fold")
S = TypeVar("S", bound=Sized)


class FollowedFold(Generic[S]):
    def __init__(
        self,
        *,
        stream: StreamSpec,
        subject_filter: str,
        initial: S,
        evolve: Callable[[S, AnyEvent], S],
        on_change: Callable[[S, AnyEvent], None] = lambda value, event: None,
    ) -> None:
        self._stream = stream
        self._filter = subject_filter
        self._value = initial
        self._evolve = evolve
        # Told the new value and the event after each event that changed it.
        self._on_change = on_change
        self._applied_seq = 0
        self._progress = asyncio.Condition()
        self._subscription: Any = None
        self._js: Any = None

    @property
    def value(self) -> S:
        return self._value

    async def start(self, js: Any, *, timeout_s: float = 10.0, startup_timeout_s: float = 120.0) -> None:
        """Replay the stream and catch up. A cluster losing a node or moving a stream's leader
        answers nothing for a while: start-up waits it out (up to ``startup_timeout_s``) rather
        than crash a service that a restart would find in the same state."""
        self._js = js
        loop = asyncio.get_running_loop()
        deadline = loop.time() + startup_timeout_s
        while True:
            try:
                if self._subscription is None:
                    self._subscription = await js.subscribe(
                        self._filter,
                        ordered_consumer=True,
                        deliver_policy=DeliverPolicy.ALL,
                        cb=self._on_message,
                    )
                await self.catch_up(timeout_s)
                log.info("fold_ready", stream=self._stream.name, size=len(self._value))
                return
            except (TransientFailure, nats.errors.Error, TimeoutError) as error:
                if loop.time() >= deadline:
                    raise
                log.warning(
                    "fold_start_retry", stream=self._stream.name, error=f"{type(error).__name__}: {error}"
                )
                await asyncio.sleep(1.0)

    async def stop(self) -> None:
        if self._subscription is not None:
            await self._subscription.unsubscribe()

    def apply(self, event: AnyEvent) -> None:
        before = self._value
        self._value = self._evolve(before, event)
        if self._value is not before:
            self._on_change(self._value, event)

    async def catch_up(self, timeout_s: float = 10.0) -> None:
        """Wait until every event the stream holds by now has been applied."""
        if self._js is None:
            return  # never started: a fold fed by hand (tests)
        try:
            info = await self._js.stream_info(self._stream.name)
            target = info.state.last_seq
            async with self._progress:
                await asyncio.wait_for(
                    self._progress.wait_for(lambda: self._applied_seq >= target), timeout_s
                )
        except Exception as error:
            # NATS slow or away: the caller's work is retried later rather than judged on a stale fold.
            raise TransientFailure(
                f"{self._stream.name} fold could not catch up: {type(error).__name__}"
            ) from error

    async def _on_message(self, msg: Any) -> None:
        try:
            event: AnyEvent | None = decode_event(msg.data)
        except (msgspec.DecodeError, msgspec.ValidationError) as error:
            log.error("undecodable_event_skipped", stream=self._stream.name, error=str(error))
            event = None
        # A copy an operator replayed into one consumer (``bridge events replay --into``) is not
        # a new fact: the fold already holds the original.
        if event is not None and not (msg.headers or {}).get(REPLAY_INTO_HEADER):
            self.apply(event)
        async with self._progress:
            self._applied_seq = msg.metadata.sequence.stream
            self._progress.notify_all()
