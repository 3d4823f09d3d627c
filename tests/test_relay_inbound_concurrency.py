"""The relay's Telegram -> Planfix batches: tasks side by side, each task's comments in order.

One batch from a real JetStream pull consumer holds messages of two groups bound to two tasks,
one comment per message (``max_messages=1``). Planfix is slow for the first comment of task A
(its post waits until the test lets it go): task B's comments go meanwhile, task A's second
comment waits for its first, and every message is acknowledged at the end. The Planfix side is
a recorder in place of ``Carrier.carry``; the planning into steps is the relay's own.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from typing import Any

import nats

from bridge_lib.lease import Lease
from contracts.events import (
    TaskBound,
    TelegramMessageReceived,
    TelegramUser,
    encode_event,
    event_id_for,
    root_envelope,
    telegram_message_key,
    utc_now,
)
from services.relay.directory import BindingDirectory
from services.relay.to_planfix.carrier import Carrier
from services.relay.to_planfix.consumer import InboundConsumer
from services.relay.to_planfix.ledger import CommentLedger
from services.relay.to_planfix.plan import CombineLimits, Post, Step
from tests.support import LoopThread

AUTHOR = TelegramUser(id=7, full_name="Ivan")
CHAT_A, CHAT_B = -100777001, -100777002
TASK_A, TASK_B = 501, 502


class EmptyLedger(CommentLedger):
    """A ledger that knows nothing yet (every message is new)."""

    def __init__(self) -> None:
        pass

    async def leads(self, keys: Sequence[str]) -> dict[str, str]:
        return {}


class SlowForOneComment(Carrier):
    """``carry`` records what it posts, and holds one comment."""

    def __init__(self, held: str) -> None:
        self.held = held
        self.release = asyncio.Event()
        self.started: list[str] = []
        self.finished: list[str] = []
        self.progressed = asyncio.Event()

    async def carry(self, step: Step, leads: dict[str, str], *, attempts: int) -> None:
        assert isinstance(step, Post)
        text = step.messages[0].text
        self.started.append(text)
        if text == self.held:
            await self.release.wait()
        await asyncio.sleep(0)  # a round trip's worth of yielding
        self.finished.append(text)
        self.progressed.set()

    async def until_finished(self, texts: set[str], timeout_s: float = 30.0) -> None:
        async with asyncio.timeout(timeout_s):
            while not texts <= set(self.finished):
                self.progressed.clear()
                await self.progressed.wait()


def bound(chat_id: int, task_number: int) -> TaskBound:
    key = f"test:bound:{chat_id}"
    return TaskBound(
        **root_envelope(key, caused_by=key),
        chat_id=chat_id,
        task_number=task_number,
        task_title="t",
        created_task=False,
        requested_by=AUTHOR,
    )


def message(chat_id: int, message_id: int, text: str) -> TelegramMessageReceived:
    return TelegramMessageReceived(
        event_id=event_id_for(telegram_message_key(chat_id, message_id)),
        occurred_at=utc_now(),
        correlation_id=f"c{message_id}",
        causation_id="u",
        chat_id=chat_id,
        message_id=message_id,
        sender=AUTHOR,
        text=text,
        sent_at=utc_now(),
    )


def test_a_slow_comment_of_one_task_holds_up_only_that_tasks_later_comments(
    loop: LoopThread, nats_url: str
) -> None:
    directory = BindingDirectory()
    directory.apply(bound(CHAT_A, TASK_A))
    directory.apply(bound(CHAT_B, TASK_B))
    planfix = SlowForOneComment(held="A1")
    stream = f"TEST_INBOUND_{uuid.uuid4().hex[:8]}"

    async def scenario() -> dict[str, Any]:
        client = await nats.connect(nats_url)
        try:
            js = client.jetstream()
            await js.add_stream(name=stream, subjects=[f"{stream}.>"])
            written = [(CHAT_A, 1, "A1"), (CHAT_B, 1, "B1"), (CHAT_A, 2, "A2"), (CHAT_B, 2, "B2")]
            for chat_id, message_id, text in written:
                await js.publish(f"{stream}.m", encode_event(message(chat_id, message_id, text)))
            subscription = await js.pull_subscribe(f"{stream}.>", durable="relay", stream=stream)
            batch = await subscription.fetch(10, timeout=5)
            consumer = InboundConsumer(
                js,
                directory=directory,
                ledger=EmptyLedger(),
                carrier=planfix,
                lease=Lease.__new__(Lease),
                limits=CombineLimits(max_messages=1),
            )
            handled = asyncio.create_task(consumer._handle(batch))

            await planfix.until_finished({"B1", "B2"})
            while_held = {"started": list(planfix.started), "finished": list(planfix.finished)}
            planfix.release.set()
            await handled
            info = await subscription.consumer_info()
            await js.delete_stream(stream)
            return {**while_held, "order": planfix.finished, "unacknowledged": info.num_ack_pending}
        finally:
            await client.close()

    seen = loop.run(scenario())

    assert "A1" in seen["started"]
    assert "A2" not in seen["started"]
    assert "A1" not in seen["finished"]
    assert seen["order"].index("A1") < seen["order"].index("A2")
    assert seen["order"].index("B1") < seen["order"].index("B2")
    assert sorted(seen["order"]) == ["A1", "A2", "B1", "B2"]
    assert seen["unacknowledged"] == 0
