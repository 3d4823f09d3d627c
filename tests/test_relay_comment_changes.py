"""The relay's Planfix comment consumer in memory: FastStream's ``TestNatsBroker`` delivers an
event to the relay's own subscriber (``to_telegram.handlers.router``), and what it queues for
the groups is read from an outbox kept in a dictionary. No NATS server, no store."""

from __future__ import annotations

import asyncio
from typing import Any

from faststream.nats import TestNatsBroker

from bridge_lib.eventbus import make_broker
from contracts.events import (
    PlanfixCommentAdded,
    PlanfixPerson,
    TaskBound,
    TelegramUser,
    encode_event,
    root_envelope,
)
from contracts.subjects import PLANFIX_STREAM, planfix_comment_added
from services.relay.directory import BindingDirectory
from services.relay.effects import OwnComments
from services.relay.to_telegram.handlers import ToTelegram, router
from services.relay.to_telegram.items import OutboxItem
from services.relay.to_telegram.sender import Outbox

OUR_SOURCE_ID = "0c6b7f0e-2d7a-4f0e-9a56-6a3f1c9b8e11"
TASK, CHAT = 4821, -100777
# A JetStream delivery's reply subject: where ``consume`` reads the stream position and attempts.
JS_REPLY = f"$JS.ACK.{PLANFIX_STREAM.name}.relay-planfix-comment-changes.1.42.42.1700000000000000000.0"


class MemoryOutbox(Outbox):
    def __init__(self) -> None:
        self.items: dict[str, OutboxItem] = {}

    async def enqueue(self, item: OutboxItem) -> bool:
        return self.items.setdefault(item.key, item) is item


class NoOwnComments(OwnComments):
    def __init__(self) -> None:
        pass

    async def includes(self, comment_id: int) -> bool:
        return False


def added(comment_id: int, text_html: str, *, source_id: str | None = None) -> PlanfixCommentAdded:
    key = f"test:comment:{comment_id}"
    return PlanfixCommentAdded(
        **root_envelope(key, caused_by=key),
        task_number=TASK,
        comment_id=comment_id,
        text_html=text_html,
        author=PlanfixPerson(id="user:5", name="Olga"),
        source_id=source_id,
    )


def deliver(*events: PlanfixCommentAdded) -> tuple[MemoryOutbox, list[int], Any]:
    directory = BindingDirectory()
    directory.apply(
        TaskBound(
            **root_envelope("test:bound", caused_by="test:bound"),
            chat_id=CHAT,
            task_number=TASK,
            task_title="Printer",
            created_task=False,
            requested_by=TelegramUser(id=1, full_name="Anna"),
        )
    )
    outbox, woken = MemoryOutbox(), list[int]()
    handlers = ToTelegram(
        directory=directory,
        own_comments=NoOwnComments(),
        outbox=outbox,
        wake=woken.append,
        planfix_source_id=OUR_SOURCE_ID,
        planfix_web_url="https://acc.planfix.com/",
        language="en",
    )
    consumers = router(handlers)
    broker = make_broker("nats://127.0.0.1:4222", name="test-relay")
    broker.include_router(consumers)

    async def scenario() -> Any:
        async with TestNatsBroker(broker) as test_broker:
            for event in events:
                await test_broker.publish(
                    encode_event(event), subject=planfix_comment_added(TASK), reply_to=JS_REPLY
                )
            # The comment consumer's handler (declared first), as FastStream recorded its calls.
            # Calls to the relay's subscribers, as FastStream recorded them (the comment one only).
            return sum(subscriber.calls[0].handler.mock.call_count for subscriber in consumers.subscribers)

    return outbox, woken, asyncio.run(scenario())


def test_a_comment_in_a_bound_task_is_queued_for_the_group_with_its_author_line() -> None:
    outbox, woken, handled = deliver(added(9001, "<p>The printer is <strong>fixed</strong></p>"))

    assert handled == 1
    [item] = outbox.items.values()
    assert item.key == f"telegram-message:pf:comment:9001:{CHAT}:0"
    assert item.text == "<b>Olga</b> · Planfix:\nThe printer is <b>fixed</b>"
    assert item.short_caption == "<b>Olga</b> · Planfix"
    assert (item.chat_id, item.task_number, item.comment_id) == (CHAT, TASK, 9001)
    assert woken == [CHAT]


def test_a_comment_the_bridge_wrote_itself_is_never_echoed_and_a_repeat_adds_nothing() -> None:
    ours = added(9002, "<p>from Telegram</p>", source_id=OUR_SOURCE_ID)
    theirs = added(9003, "<p>from Planfix</p>")

    outbox, _, handled = deliver(ours, theirs, theirs)

    assert handled == 3
    assert [item.comment_id for item in outbox.items.values()] == [9003]
