"""Never give up on what can still succeed, and never let one bad message hold the rest.

``bridge_lib.eventbus`` tells an outage (Planfix, the store or NATS away: waited out however long
it lasts, the delay growing to ``RETRY_MAX_DELAY_S`` or to the wait Planfix names) from a handler
crash or a permanent refusal (set aside as a dead letter after ``CRASH_LIMIT`` crashes in a row,
or at once), so a poison message no longer holds its stream behind ``max_ack_pending=1`` for
98 minutes. In-memory table tests first, then the same through a real NATS.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from typing import Any

import nats
import nats.errors
import pytest
from nats.js.api import ConsumerConfig

from bridge_lib import eventbus, metrics
from bridge_lib.eventbus import (
    DeadLetter,
    Delivery,
    PermanentFailure,
    Retry,
    TransientFailure,
    ensure_streams,
    failure_kind,
    make_broker,
    outage_delay_s,
)
from bridge_lib.pacing import NoPacing
from bridge_lib.planfix import DailyLimitReached
from contracts.events import DeadLetterReason, TelegramMessageReceived
from contracts.subjects import TELEGRAM_STREAM
from tests.support import LoopThread, consuming_group_messages, eventually, jetstream
from tests.test_dead_letters import dead_letters_of, publish_message


class ConnectionFailure(Exception):
    """Stands for pymongo's (named, not imported, by the classification)."""


ConnectionFailure.__module__ = "pymongo.errors"


class ServerSelectionTimeoutError(ConnectionFailure):
    pass


ServerSelectionTimeoutError.__module__ = "pymongo.errors"


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (TransientFailure("Planfix 503"), "outage"),
        (TimeoutError(), "outage"),
        (ConnectionRefusedError(), "outage"),
        (nats.errors.TimeoutError(), "outage"),
        (ServerSelectionTimeoutError("no primary"), "outage"),
        (PermanentFailure("task deleted"), "permanent"),
        (nats.errors.MaxPayloadError(), "permanent"),
        (KeyError("text"), "crash"),
        (ValueError("bad"), "crash"),
    ],
)
def test_failures_are_outages_crashes_or_permanent(error: Exception, kind: str) -> None:
    assert failure_kind(error) == kind


def test_an_outage_waits_longer_and_longer_up_to_the_cap() -> None:
    eventbus.set_retry_max_delay(300)
    delays = [outage_delay_s(n) for n in (1, 2, 3, 6, 9, 10, 50, 10_000)]
    assert delays == [1, 2, 4, 32, 256, 300, 300, 300]


def test_an_outage_that_names_its_end_waits_that_long_within_the_cap() -> None:
    eventbus.set_retry_max_delay(300)
    over_daily_cap = TransientFailure("Planfix over its daily cap")
    over_daily_cap.__cause__ = DailyLimitReached("code 22", reset_after_s=90)
    assert outage_delay_s(1, over_daily_cap) == 90
    over_cap = TransientFailure("cap", retry_after_s=7200)
    assert outage_delay_s(1, over_cap) == 300


def _delivery(seq: int, delivered: int, consumer: str = "c") -> Delivery:
    return Delivery(stream_seq=seq, num_delivered=delivered, consumer=consumer)


def test_a_crashing_message_is_set_aside_after_the_crash_limit_and_outages_never_count() -> None:
    event = object()
    verdicts = [
        eventbus.verdict_on_failure(KeyError("x"), event, _delivery(7, n))  # type: ignore[arg-type]
        for n in range(1, eventbus.CRASH_LIMIT + 1)
    ]
    assert all(isinstance(v, Retry) and v.crashed for v in verdicts[:-1])
    assert isinstance(verdicts[-1], DeadLetter)
    assert verdicts[-1].reason == DeadLetterReason.RETRIES_EXHAUSTED
    assert "5 times in a row" in verdicts[-1].detail

    # A thousand deliveries of an outage: still a retry, never a dead letter.
    for n in range(1, 1000, 37):
        verdict = eventbus.verdict_on_failure(TransientFailure("down"), event, _delivery(8, n))  # type: ignore[arg-type]
        assert isinstance(verdict, Retry)
        assert not verdict.crashed


def test_a_permanent_refusal_is_set_aside_at_once() -> None:
    verdict = eventbus.verdict_on_failure(PermanentFailure("no such task"), object(), _delivery(9, 1))  # type: ignore[arg-type]
    assert isinstance(verdict, DeadLetter)
    assert verdict.reason == DeadLetterReason.PERMANENT_FAILURE


class _Raw:
    """Just enough of a nats-py JetStream message for ``settle``."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    async def term(self) -> None:
        self.calls.append("term")

    async def nak(self, delay: float | None = None) -> None:
        self.calls.append("nak")

    async def in_progress(self) -> None:
        self.calls.append("in_progress")

    async def ack(self) -> None:
        self.calls.append("ack")


def test_a_dead_letter_that_cannot_be_stored_on_the_last_delivery_keeps_the_message(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """JetStream ignores a nak past max_deliver: the message is held, in progress, until stored."""
    outcomes = iter([False, False, True])

    async def store(*_: Any) -> bool:
        return next(outcomes)

    async def no_sleep(_: float) -> None:
        return None

    monkeypatch.setattr(eventbus, "store_dead_letter", store)
    monkeypatch.setattr(asyncio, "sleep", no_sleep)
    monkeypatch.setitem(eventbus._max_deliver_by_consumer, "last", 3)
    raw = _Raw()
    verdict = DeadLetter(DeadLetterReason.RETRIES_EXHAUSTED, "down")
    asyncio.run(eventbus.settle(raw, _delivery(1, 3, "last"), "t", verdict))
    assert raw.calls == ["in_progress", "in_progress", "term"]


def test_over_the_daily_cap_the_client_pauses_instead_of_calling() -> None:
    async def scenario() -> float:
        pacer = NoPacing()
        await pacer.pause(120)
        return await pacer.paused_for()

    assert 119 < asyncio.run(scenario()) <= 120


# --- through a real NATS ---------------------------------------------------------------------------


class PoisonHandler:
    """Crashes on every message whose text says "poison"; records what it handled, in order."""

    def __init__(self) -> None:
        self.handled: list[str] = []
        self.outage_left = 0

    async def __call__(self, event: TelegramMessageReceived, delivery: Delivery) -> None:
        if "poison" in (event.text or ""):
            raise KeyError("a field this version does not expect")
        if self.outage_left > 0:
            self.outage_left -= 1
            raise TransientFailure("Planfix is down (simulated)")
        self.handled.append(event.text or "")


@pytest.fixture
def poison_consumer(
    loop: LoopThread, nats_url: str, unique_chat_id: int, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[PoisonHandler, str]]:
    # Short pauses so the test takes seconds: three crashes (1 s + 2 s), outages 0.2 s apart.
    monkeypatch.setattr(eventbus, "CRASH_LIMIT", 3)
    eventbus.set_retry_max_delay(0.2)
    handler = PoisonHandler()
    try:
        with consuming_group_messages(loop, nats_url, unique_chat_id, handler, name="test-poison") as durable:
            yield handler, durable
    finally:
        eventbus.set_retry_max_delay(eventbus.DEFAULT_RETRY_MAX_DELAY_S)


def test_a_poison_message_is_set_aside_quickly_and_the_groups_later_messages_go_on_in_order(
    loop: LoopThread, nats_url: str, unique_chat_id: int, poison_consumer: tuple[PoisonHandler, str]
) -> None:
    handler, durable = poison_consumer
    publish_message(loop, nats_url, unique_chat_id, "first", message_id=1)
    publish_message(loop, nats_url, unique_chat_id, "poison", message_id=2)
    for index in range(3, 6):
        publish_message(loop, nats_url, unique_chat_id, f"after {index}", message_id=index)

    eventually(lambda: len(handler.handled) == 4, timeout_s=30, what="the later messages handled")
    assert handler.handled == ["first", "after 3", "after 4", "after 5"]
    [dead] = dead_letters_of(loop, nats_url, durable)
    assert dead.reason == DeadLetterReason.RETRIES_EXHAUSTED
    assert "KeyError" in dead.detail
    assert "3 times in a row" in dead.detail


def test_an_outage_is_waited_out_past_any_delivery_count_and_nothing_is_dead_lettered(
    loop: LoopThread, nats_url: str, unique_chat_id: int, poison_consumer: tuple[PoisonHandler, str]
) -> None:
    handler, durable = poison_consumer
    handler.outage_left = 25  # past the old max_deliver of a test consumer, at 0.2 s a try
    publish_message(loop, nats_url, unique_chat_id, "waits", message_id=1)
    publish_message(loop, nats_url, unique_chat_id, "then this", message_id=2)

    eventually(lambda: len(handler.handled) == 2, timeout_s=40, what="both handled after the outage")
    assert handler.handled == ["waits", "then this"]
    assert dead_letters_of(loop, nats_url, durable) == []


def test_a_consumer_made_with_a_delivery_limit_loses_it_at_start(loop: LoopThread, nats_url: str) -> None:
    durable = f"test-old-{uuid.uuid4().hex[:8]}"

    async def scenario() -> int:
        async with jetstream(nats_url) as js:
            broker = make_broker(nats_url, name="test-upgrade")
            await broker.connect()
            await ensure_streams(broker)
            await broker.stop()
            old = ConsumerConfig(durable_name=durable, max_deliver=200, max_ack_pending=1, ack_wait=60)
            await js.add_consumer(TELEGRAM_STREAM.name, config=old)
            await eventbus._declare_consumer(
                js, TELEGRAM_STREAM.name, ConsumerConfig(durable_name=durable, max_deliver=-1)
            )
            info = await js.consumer_info(TELEGRAM_STREAM.name, durable)
            await js.delete_consumer(TELEGRAM_STREAM.name, durable)
            return int(info.config.max_deliver or 0)

    assert loop.run(scenario()) == -1


def test_a_poison_message_too_large_for_a_dead_letter_is_set_aside_naming_where_it_stays(
    loop: LoopThread, nats_url: str, unique_chat_id: int, poison_consumer: tuple[PoisonHandler, str]
) -> None:
    """Its body in base64 would be over NATS's 1 MB payload limit: the dead letter says where the
    message stays instead, and the group's next message goes on."""
    handler, durable = poison_consumer
    publish_message(loop, nats_url, unique_chat_id, "poison " + "x" * 900_000, message_id=1)
    publish_message(loop, nats_url, unique_chat_id, "next", message_id=2)

    eventually(lambda: handler.handled == ["next"], timeout_s=30, what="the next message handled")
    [dead] = dead_letters_of(loop, nats_url, durable)
    assert dead.body_b64 == ""
    assert f"stays in stream {TELEGRAM_STREAM.name} at sequence {dead.stream_seq}" in dead.detail


def test_the_outage_gauge_counts_how_long_a_consumer_has_waited_and_drops_to_0_after() -> None:
    gauge = metrics.CONSUMER_OUTAGE_SECONDS.labels("test-outage-gauge")

    async def scenario() -> tuple[float, float]:
        raw = _Raw()
        delivery = _delivery(1, 1, "test-outage-gauge")
        await eventbus.settle(raw, delivery, "t", Retry(0.1))
        await asyncio.sleep(0.05)
        await eventbus.settle(raw, delivery, "t", Retry(0.1))
        waited = gauge._value.get()
        await eventbus.settle(raw, delivery, "t", eventbus.Ack())
        return waited, gauge._value.get()

    waited, after = asyncio.run(scenario())
    assert waited >= 0.05
    assert after == 0
