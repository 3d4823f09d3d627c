"""The relay's courier in memory: the Bot API calls it makes for an outbox item, recorded by an
aiogram session instead of sent (as aiogram's own ``tests/mocked_bot.py`` does). The pace and
the group leases use a dictionary for a bucket and a clock the test moves; the outbox and the
sent-comment records are dictionaries too. Nothing here opens a socket."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

import nats.js.errors
import pytest
from aiogram import Bot
from aiogram.exceptions import TelegramRetryAfter
from aiogram.methods import SendMediaGroup, SendMessage, TelegramMethod

from bridge_lib.lease import LeaseLost, Leases
from bridge_lib.planfix import PlanfixClient
from contracts.events import TelegramMessageKind
from services.relay.to_telegram.courier import (
    CombinedMessage,
    Courier,
    SentComment,
    SentComments,
    TelegramPace,
    group_lease_key,
)
from services.relay.to_telegram.items import Action, OutboxItem
from services.relay.to_telegram.sender import Outbox
from services.relay.to_telegram.telegram_text import COMBINED_SEPARATOR, TEXT_LIMIT, visible_length
from tests.in_memory import Clock, RecordingSession

CHAT = -100555


class SucceedingSession(RecordingSession):
    """Records every Bot API call; answers it as the test queued (``answer``), else with a success:
    a new message for a send, ``True`` for an edit or a deletion."""

    def __init__(self) -> None:
        super().__init__()
        self._message_ids = iter(range(1000, 10_000))

    def unasked(self, method: TelegramMethod[Any]) -> tuple[int, str]:
        return 200, json.dumps({"ok": True, "result": self._result(method)})

    def _result(self, method: TelegramMethod[Any]) -> Any:
        if isinstance(method, SendMediaGroup):
            return [self._message() for _ in method.media]
        return self._message() if type(method).__name__.startswith("Send") else True

    def _message(self) -> dict[str, Any]:
        return {"message_id": next(self._message_ids), "date": 0, "chat": {"id": CHAT, "type": "supergroup"}}


@dataclass
class Entry:
    value: bytes
    revision: int


class MemoryBucket:
    """What the pace and the leases use of a NATS key-value bucket, in a dictionary."""

    def __init__(self) -> None:
        self.entries: dict[str, Entry] = {}
        self._revision = 0

    async def get(self, key: str) -> Entry:
        if key not in self.entries:
            raise nats.js.errors.KeyNotFoundError()
        return self.entries[key]

    async def put(self, key: str, value: bytes) -> int:
        self._revision += 1
        self.entries[key] = Entry(value, self._revision)
        return self._revision

    async def create(self, key: str, value: bytes) -> int:
        if key in self.entries:
            raise nats.js.errors.KeyWrongLastSequenceError()
        return await self.put(key, value)

    async def update(self, key: str, value: bytes, last: int) -> int:
        if key not in self.entries or self.entries[key].revision != last:
            raise nats.js.errors.KeyWrongLastSequenceError()
        return await self.put(key, value)


class MemoryOutbox(Outbox):
    def __init__(self) -> None:
        self.steps: dict[str, dict[int, list[int]]] = {}

    async def step_done(self, key: str, step: int, message_ids: list[int]) -> None:
        self.steps.setdefault(key, {})[step] = message_ids


class MemorySent(SentComments):
    def __init__(self) -> None:
        self.sent: dict[int, SentComment] = {}
        self.combined_messages: dict[int, CombinedMessage] = {}

    async def save_all(self, sent: list[SentComment]) -> None:
        self.sent.update((one.comment_id, one) for one in sent)

    async def save_combined(self, message: CombinedMessage) -> None:
        self.combined_messages[message.message_id] = message


@dataclass
class Rig:
    courier: Courier
    session: SucceedingSession
    bucket: MemoryBucket
    clock: Clock
    outbox: MemoryOutbox
    sent: MemorySent


@pytest.fixture
def rig() -> Rig:
    session = SucceedingSession()
    bot = Bot("42:TEST", session=session)
    bucket, clock = MemoryBucket(), Clock()
    pace = TelegramPace(
        bucket, group_limit=20, group_window_s=60, bot_per_second=30, clock=clock.time, sleep=clock.sleep
    )
    outbox, sent = MemoryOutbox(), MemorySent()
    courier = Courier(
        bot=bot,
        planfix=PlanfixClient(base_url="http://planfix.invalid/rest/", token="t"),  # no files: never called
        outbox=outbox,
        sent=sent,
        pace=pace,
        leases=Leases(bucket, owner="relay-a", ttl_s=120, clock=clock.time),
        task_url=lambda number: f"https://acc.planfix.com/task/{number}",
    )
    return Rig(courier, session, bucket, clock, outbox, sent)


def comment(text: str, *, comment_id: int = 7, reply_to: int | None = None) -> OutboxItem:
    return OutboxItem(
        key=f"telegram-message:pf:comment:{comment_id}:{CHAT}:0",
        chat_id=CHAT,
        action=Action.SEND,
        kind=TelegramMessageKind.PLANFIX_COMMENT,
        correlation_id="c",
        causation_id="e",
        text=text,
        comment_id=comment_id,
        reply_to_message_id=reply_to,
    )


def sent_texts(session: SucceedingSession) -> list[str]:
    return [call.text for call in session.calls if isinstance(call, SendMessage)]


def test_a_long_comment_goes_in_parts_in_order_each_step_recorded(rig: Rig) -> None:
    text = "<b>Anna</b> · Planfix:\n" + "\n\n".join(f"paragraph {n} " + "word " * 150 for n in range(8))

    message_ids = asyncio.run(rig.courier.send(comment(text, reply_to=3)))

    calls = rig.session.calls
    assert [type(call) for call in calls] == [SendMessage, SendMessage]
    assert all(visible_length(call.text) <= TEXT_LIMIT for call in calls if isinstance(call, SendMessage))
    assert [call.parse_mode for call in calls if isinstance(call, SendMessage)] == ["HTML", "HTML"]
    first, second = (call for call in calls if isinstance(call, SendMessage))
    assert first.reply_parameters is not None
    assert first.reply_parameters.message_id == 3
    assert second.reply_parameters is None
    assert message_ids == [1000, 1001]
    # Every step but the last is recorded as it is done; the last is recorded by finishing.
    assert rig.outbox.steps == {comment(text).key: {0: [1000]}}
    assert rig.sent.sent[7].text_message_ids == [1000, 1001]
    # The group's next turn: two messages' worth of its pace (60 s / 20) after the last answer.
    assert float(rig.bucket.entries[f"chat.{CHAT}"].value) == rig.clock.now + 3.0


def test_what_telegram_cannot_parse_goes_again_as_plain_text(rig: Rig) -> None:
    rig.session.answer(
        SendMessage, error_code=400, description="Bad Request: can't parse entities: unexpected end tag"
    )

    asyncio.run(rig.courier.send(comment("<b>Anna</b> · Planfix:\n1 < 2")))

    assert [(call.text, call.parse_mode) for call in rig.session.calls if isinstance(call, SendMessage)] == [
        ("<b>Anna</b> · Planfix:\n1 < 2", "HTML"),
        ("Anna · Planfix:\n1 < 2", None),
    ]


def test_comments_waiting_together_go_as_one_message_each_keeping_its_author_line(rig: Rig) -> None:
    items = [comment("<b>Anna</b>: one", comment_id=1), comment("<b>Ivan</b>: two", comment_id=2)]

    message_id = asyncio.run(rig.courier.send_combined(items))

    assert sent_texts(rig.session) == [COMBINED_SEPARATOR.join(["<b>Anna</b>: one", "<b>Ivan</b>: two"])]
    assert [part.comment_id for part in rig.sent.combined_messages[message_id].parts] == [1, 2]
    assert all(rig.sent.sent[n].combined for n in (1, 2))


def test_a_429_holds_the_group_for_exactly_retry_after(rig: Rig) -> None:
    rig.session.answer(
        SendMessage, error_code=429, description="Too Many Requests: retry after 17", retry_after=17
    )

    async def scenario() -> None:
        with pytest.raises(TelegramRetryAfter):
            await rig.courier.send(comment("first try"))
        rig.clock.slept.clear()
        await rig.courier.send(comment("first try"))

    asyncio.run(scenario())

    assert rig.clock.slept == [5.0, 5.0, 5.0, 2.0]  # naps of at most 5 s, re-reading the bucket
    assert sent_texts(rig.session) == ["first try", "first try"]


def test_nothing_is_sent_to_a_group_another_replica_holds(rig: Rig) -> None:
    async def scenario() -> None:
        other = Leases(rig.bucket, owner="relay-b", ttl_s=120, clock=rig.clock.time)
        assert await other.acquire(group_lease_key(CHAT))
        with pytest.raises(LeaseLost):
            await rig.courier.send(comment("not mine to send"))

    asyncio.run(scenario())

    assert rig.session.calls == []


def test_a_message_telegram_took_counts_as_sent_when_its_pace_cannot_be_shared(rig: Rig) -> None:
    # NATS losing a node right after the send: the pace's bucket times out. The message is out,
    # so its step is recorded and nothing is sent again; the group's pace still holds here.
    put = rig.bucket.put

    async def failing_for_groups(key: str, value: bytes) -> int:
        if key.startswith("chat."):
            raise nats.errors.TimeoutError
        return await put(key, value)

    async def scenario() -> list[int]:
        ids = await rig.courier.send(comment("out once"))
        rig.bucket.put = failing_for_groups  # type: ignore[method-assign]
        ids += await rig.courier.send(comment("and once more", comment_id=8))
        return ids

    ids = asyncio.run(scenario())

    assert len(ids) == 2
    assert sent_texts(rig.session) == ["out once", "and once more"]
    assert rig.clock.slept == [3.0]  # the second waited its turn: 60 s / 20 messages
