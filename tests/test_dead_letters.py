"""Dead letters from ``bridge_lib.eventbus.consume``, against a real NATS: a message whose every
allowed delivery failed is stored in the DEADLETTER stream with why, then terminated; a message
that succeeds is not. (Undecodable messages and permanent failures are covered end to end in
``test_ops.py``; the retry budget is too long to exhaust there, so it is shrunk here.)
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import pytest

from bridge_lib.eventbus import (
    Delivery,
    EventPublisher,
    TransientFailure,
    make_broker,
)
from contracts import subjects
from contracts.events import (
    DeadLetterReason,
    MessageDeadLettered,
    TelegramMessageReceived,
    TelegramUser,
    root_envelope,
    telegram_message_key,
    utc_now,
)
from contracts.subjects import TELEGRAM_STREAM
from tests.support import LoopThread, consuming_group_messages, eventually, read_stream_events

MAX_DELIVER = 2


class FlakyHandler:
    """Fails while ``failing`` is set; remembers every delivery it saw."""

    def __init__(self) -> None:
        self.failing = True
        self.deliveries: list[Delivery] = []

    async def __call__(self, event: TelegramMessageReceived, delivery: Delivery) -> None:
        self.deliveries.append(delivery)
        if self.failing:
            raise TransientFailure("Planfix is down (simulated)")


@pytest.fixture
def flaky_consumer(
    loop: LoopThread, nats_url: str, unique_chat_id: int
) -> Iterator[tuple[FlakyHandler, str]]:
    handler = FlakyHandler()
    with consuming_group_messages(
        loop, nats_url, unique_chat_id, handler, name="test-dead-letters", max_deliver=MAX_DELIVER
    ) as durable:
        yield handler, durable


def publish_message(
    loop: LoopThread, nats_url: str, chat_id: int, text: str, *, message_id: int = 1
) -> TelegramMessageReceived:
    key = telegram_message_key(chat_id, message_id)
    event = TelegramMessageReceived(
        **root_envelope(key, caused_by="test"),
        chat_id=chat_id,
        message_id=message_id,
        sender=TelegramUser(id=5, full_name="Ivan"),
        text=text,
        sent_at=utc_now(),
    )

    async def publish() -> None:
        broker = make_broker(nats_url, name="test-publisher")
        await broker.connect()
        try:
            await EventPublisher(broker).publish(
                event, subject=subjects.telegram_message_received(chat_id), msg_id=key
            )
        finally:
            await broker.stop()

    loop.run(publish())
    return event


def dead_letters_of(loop: LoopThread, nats_url: str, durable: str) -> list[MessageDeadLettered]:
    found: list[Any] = [e for _, e in loop.run(read_stream_events(nats_url, subjects.dead_letter(durable)))]
    return [e for e in found if isinstance(e, MessageDeadLettered)]


def test_a_message_whose_retry_budget_runs_out_is_dead_lettered_with_why(
    loop: LoopThread, nats_url: str, unique_chat_id: int, flaky_consumer: tuple[FlakyHandler, str]
) -> None:
    handler, durable = flaky_consumer

    event = publish_message(loop, nats_url, unique_chat_id, "never gets through")

    [dead] = eventually(lambda: dead_letters_of(loop, nats_url, durable), timeout_s=20, what="dead letter")
    assert dead.reason == DeadLetterReason.RETRIES_EXHAUSTED
    assert dead.num_delivered == MAX_DELIVER
    assert dead.consumer == durable
    assert dead.stream == TELEGRAM_STREAM.name
    assert dead.original_subject == subjects.telegram_message_received(unique_chat_id)
    assert dead.original_event_id == event.event_id
    assert dead.correlation_id == event.correlation_id
    assert "Planfix is down" in dead.detail
    assert b"never gets through" in base64.b64decode(dead.body_b64)
    assert dead.original_headers["Nats-Msg-Id"] == telegram_message_key(unique_chat_id, 1)
    assert [d.num_delivered for d in handler.deliveries] == [1, 2]


def test_a_message_that_succeeds_on_a_retry_is_not_dead_lettered(
    loop: LoopThread, nats_url: str, unique_chat_id: int, flaky_consumer: tuple[FlakyHandler, str]
) -> None:
    handler, durable = flaky_consumer

    publish_message(loop, nats_url, unique_chat_id, "second time lucky")
    eventually(lambda: len(handler.deliveries) == 1, what="first delivery")
    handler.failing = False

    eventually(lambda: len(handler.deliveries) == 2, timeout_s=20, what="redelivery")
    assert dead_letters_of(loop, nats_url, durable) == []
