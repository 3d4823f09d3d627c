"""The relay's Telegram -> Planfix step when Planfix fails mid-post: nothing lost, nothing twice.

The ``Carrier`` runs in the test's loop with its real collaborators: motor against the store, the
real ``PlanfixClient`` against the fake Planfix, the real aiogram ``Bot`` against the fake
Telegram, a real NATS for its effect events. Only the bindings are fixed (one task).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from motor.motor_asyncio import AsyncIOMotorClient

from bridge_lib.eventbus import EventPublisher, TransientFailure, ensure_streams, make_broker
from bridge_lib.planfix import PlanfixClient
from bridge_lib.telegram import make_bot
from contracts.events import (
    TelegramMessageReceived,
    TelegramUser,
    event_id_for,
    planfix_source_object_id,
    telegram_message_key,
    utc_now,
)
from sandbox.fake_planfix import FakePlanfix
from sandbox.fake_telegram import FakeTelegram
from services.relay.to_planfix.carrier import Carrier
from services.relay.to_planfix.files import FileUploader
from services.relay.to_planfix.ledger import CommentLedger
from services.relay.to_planfix.plan import plan_batch
from tests.conftest import BOT_TOKEN, PLANFIX_TOKEN
from tests.support import LoopThread, envelope, eventually, stays

SOURCE_ID = "0c6b7f0e-2d7a-4f0e-9a56-6a3f1c9b8e11"


@dataclass
class Relay:
    carrier: Carrier
    ledger: CommentLedger
    task_number: int
    loop: LoopThread

    def carry(self, messages: list[TelegramMessageReceived], *, attempt: int) -> None:
        """As the consumer carries a batch: planned against the ledger, then step by step."""

        async def go() -> None:
            leads = await self.ledger.leads([message.source_key for message in messages])
            bindings = {(message.chat_id, message.thread_id): self.task_number for message in messages}
            for step in plan_batch(messages, bindings, leads).steps:
                await self.carrier.carry(step, leads, attempts=attempt)

        self.loop.run(go())

    def carry_answer_lost(
        self, message: TelegramMessageReceived, planfix: FakePlanfix, *, comments: int
    ) -> None:
        """The first attempt: Planfix creates the comment while the client gives up waiting (the
        attempt fails); back once Planfix finished, the task holding ``comments`` comments."""
        planfix.delay_next(1.5)
        with pytest.raises(TransientFailure):
            self.carry([message], attempt=1)
        eventually(
            lambda: len(planfix.comments(self.task_number)) == comments,
            what="Planfix finished the slow request",
        )


@pytest.fixture
def relay(
    loop: LoopThread, mongo_url: str, nats_url: str, fake_planfix: FakePlanfix, fake_telegram: FakeTelegram
) -> Iterator[Relay]:
    client: AsyncIOMotorClient[dict[str, Any]] = AsyncIOMotorClient(
        mongo_url, tz_aware=True, io_loop=loop.loop
    )
    name = f"test_relay_{uuid.uuid4().hex[:8]}"
    broker = make_broker(nats_url, name="test-relay")
    planfix = PlanfixClient(
        base_url=fake_planfix.base_url, token=PLANFIX_TOKEN, timeout_s=1.0, retry_attempts=1
    )
    bot = make_bot(BOT_TOKEN, api_base_url=fake_telegram.base_url)

    async def connect() -> None:
        await broker.connect()
        await ensure_streams(broker)

    loop.run(connect())
    task_number = fake_planfix.add_task("Crash recovery")
    ledger = CommentLedger(client[name])
    carrier = Carrier(
        ledger=ledger,
        files=FileUploader(bot=bot, planfix=planfix),
        planfix=planfix,
        publisher=EventPublisher(broker),
        planfix_source_id=SOURCE_ID,
        zone=ZoneInfo("UTC"),
    )
    try:
        yield Relay(carrier, ledger, task_number, loop)
    finally:
        loop.run(planfix.aclose())
        loop.run(bot.session.close())
        loop.run(broker.stop())
        loop.run(client.drop_database(name))
        client.close()


def messages(chat_id: int, *texts: str) -> list[TelegramMessageReceived]:
    return [
        TelegramMessageReceived(
            **envelope(event_id_for(telegram_message_key(chat_id, number))),
            chat_id=chat_id,
            message_id=number,
            sender=TelegramUser(id=1, full_name="Ivan"),
            text=text,
            sent_at=utc_now(),
        )
        for number, text in enumerate(texts, start=1)
    ]


def test_a_failed_post_is_posted_once_as_planned_when_the_batch_comes_again(
    relay: Relay, fake_planfix: FakePlanfix, unique_chat_id: int
) -> None:
    first, second, third = messages(unique_chat_id, "one", "two", "three")
    fake_planfix.fail_next(1, status=502)
    with pytest.raises(TransientFailure):
        relay.carry([first, second], attempt=1)
    assert fake_planfix.comments(relay.task_number) == []

    # Redelivered with a message that came meanwhile: the planned pair stays one comment.
    relay.carry([first, second, third], attempt=2)

    comments = fake_planfix.comments(relay.task_number)
    assert [("one" in c.description, "two" in c.description, "three" in c.description) for c in comments] == [
        (True, True, False),
        (False, False, True),
    ]


@pytest.mark.parametrize(
    "attempts",
    [
        # NATS redelivers after a delay (1 s, then longer); by then Planfix has finished the request.
        pytest.param((2, 3), id="redelivered"),
        # The next holder of the lease recreated the consumer: the message comes as a first delivery.
        pytest.param((1,), id="when a rewound consumer brings it first"),
    ],
)
def test_a_comment_created_but_not_confirmed_is_found_not_posted_again(
    relay: Relay, fake_planfix: FakePlanfix, unique_chat_id: int, attempts: tuple[int, ...]
) -> None:
    [message] = messages(unique_chat_id, "answer lost")
    relay.carry_answer_lost(message, fake_planfix, comments=1)

    for attempt in attempts:
        relay.carry([message], attempt=attempt)

    stays(lambda: len(fake_planfix.comments(relay.task_number)) == 1, for_s=1.0, what="one comment")
    [comment] = fake_planfix.comments(relay.task_number)
    assert "answer lost" in comment.description
    assert comment.source_object_id == planfix_source_object_id(message.source_key)


def test_a_comment_lost_in_transit_on_a_task_with_600_comments_is_still_found_not_posted_again(
    relay: Relay, fake_planfix: FakePlanfix, unique_chat_id: int
) -> None:
    # The lookup after a crash reads newest first: a long task's oldest pages never hold it.
    for number in range(600):
        fake_planfix.add_employee_comment(relay.task_number, f"<p>earlier {number}</p>", fire_webhook=False)
    [message] = messages(unique_chat_id, "posted just before the crash")
    relay.carry_answer_lost(message, fake_planfix, comments=601)

    relay.carry([message], attempt=2)

    stays(lambda: len(fake_planfix.comments(relay.task_number)) == 601, for_s=1.0, what="still 601 comments")
    ours = [c for c in fake_planfix.comments(relay.task_number) if "before the crash" in c.description]
    assert len(ours) == 1
