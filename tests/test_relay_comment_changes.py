"""The relay's Planfix comment handler in memory: a batch of comment events, as the relay's
ordered batch consumer hands it over (``to_telegram.handlers.comment_changes``), and what it
queues for the groups, read from an outbox kept in a dictionary. No NATS server, no store.
The consumer itself, on a real JetStream: ``test_ordered_batches.py``."""

from __future__ import annotations

import asyncio

from contracts.events import (
    PlanfixCommentAdded,
    PlanfixPerson,
    TaskBound,
    TelegramUser,
    root_envelope,
)
from services.relay.directory import BindingDirectory
from services.relay.effects import OwnComments
from services.relay.to_telegram.handlers import ToTelegram
from services.relay.to_telegram.items import OutboxItem
from services.relay.to_telegram.sender import Outbox

OUR_SOURCE_ID = "0c6b7f0e-2d7a-4f0e-9a56-6a3f1c9b8e11"
TASK, CHAT = 4821, -100777


class MemoryOutbox(Outbox):
    def __init__(self, gone_out: frozenset[str] = frozenset()) -> None:
        self.items: dict[str, OutboxItem] = {}
        self.gone_out = gone_out
        self.store_calls = 0

    async def finished_among(self, keys: list[str]) -> set[str]:
        self.store_calls += 1
        return set(keys) & self.gone_out

    async def enqueue_all(self, items: list[OutboxItem], *, finished_checked: bool = False) -> set[str]:
        self.store_calls += 1
        return {item.key for item in items if self.items.setdefault(item.key, item) is item}


class OwnCommentIds(OwnComments):
    def __init__(self, ids: frozenset[int] = frozenset()) -> None:
        self.ids = ids
        self.asked: list[list[int]] = []

    async def among(self, comment_ids: list[int]) -> set[int]:
        self.asked.append(comment_ids)
        return set(comment_ids) & self.ids


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


def deliver(
    *batches: list[PlanfixCommentAdded],
    own: frozenset[int] = frozenset(),
    gone_out: frozenset[str] = frozenset(),
) -> tuple[MemoryOutbox, list[int], OwnCommentIds]:
    """Each batch handed to the handler as the consumer would, one after the other."""
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
    outbox, woken, own_comments = MemoryOutbox(gone_out), list[int](), OwnCommentIds(own)
    handlers = ToTelegram(
        directory=directory,
        own_comments=own_comments,
        outbox=outbox,
        wake=woken.append,
        planfix_source_id=OUR_SOURCE_ID,
        planfix_web_url="https://acc.planfix.com/",
        language="en",
    )

    async def scenario() -> None:
        for batch in batches:
            await handlers.carry_comment_changes(batch)

    asyncio.run(scenario())
    return outbox, woken, own_comments


def test_a_comment_in_a_bound_task_is_queued_for_the_group_with_its_author_line() -> None:
    outbox, woken, _ = deliver([added(9001, "<p>The printer is <strong>fixed</strong></p>")])

    [item] = outbox.items.values()
    assert item.key == f"telegram-message:pf:comment:9001:{CHAT}:0"
    assert item.text == "<b>Olga</b> · Planfix:\nThe printer is <b>fixed</b>"
    assert item.short_caption == "<b>Olga</b> · Planfix"
    assert (item.chat_id, item.task_number, item.comment_id) == (CHAT, TASK, 9001)
    assert woken == [CHAT]


def test_a_comment_the_bridge_wrote_itself_is_never_echoed_and_a_repeat_adds_nothing() -> None:
    ours = added(9002, "<p>from Telegram</p>", source_id=OUR_SOURCE_ID)
    theirs = added(9003, "<p>from Planfix</p>")

    outbox, _, _ = deliver([ours, theirs], [theirs])

    assert [item.comment_id for item in outbox.items.values()] == [9003]


def test_a_batch_asks_the_store_each_question_once_and_queues_in_the_batchs_order() -> None:
    comments = [added(9100 + n, f"<p>comment {n}</p>") for n in range(20)]
    ours_by_record = 9105
    sent_before = f"telegram-message:pf:comment:9107:{CHAT}:0"

    outbox, woken, own_comments = deliver(
        comments, own=frozenset({ours_by_record}), gone_out=frozenset({sent_before})
    )

    queued = [item.comment_id for item in outbox.items.values()]
    assert queued == [9100 + n for n in range(20) if n not in (5, 7)]
    # Ours by our record, and already gone out: neither queued; one question of each kind.
    assert own_comments.asked == [[9100 + n for n in range(20)]]
    assert outbox.store_calls == 2  # which went out already, then one insert of them all
    assert woken == [CHAT]


def test_a_comment_carrying_our_source_id_is_ours_without_asking_the_store() -> None:
    ours = added(9201, "<p>from Telegram</p>", source_id=OUR_SOURCE_ID)

    outbox, _, own_comments = deliver([ours])

    assert outbox.items == {}
    assert own_comments.asked == [[]]
