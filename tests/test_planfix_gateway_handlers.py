"""The Planfix gateway's fetcher in memory: a stored webhook notice handed to the handler the
gateway's reader falls back to for one notice (``CommentFetcher.handle``), Planfix answered by a
stub, the events kept by a recording publisher. No NATS, no HTTP; milliseconds.

tests/test_planfix_gateway.py runs the same path through a real process, NATS and the fake Planfix.
"""

from __future__ import annotations

from typing import cast

import pytest

from bridge_lib.eventbus import Delivery, EventPublisher, TransientFailure
from bridge_lib.planfix import CommentNotFound, PlanfixClient, PlanfixComment, PlanfixUnavailable
from contracts import subjects
from contracts.events import (
    PlanfixCommentAction,
    PlanfixCommentAdded,
    PlanfixCommentDeleted,
    PlanfixCommentUpdated,
    PlanfixCommentWebhookReceived,
    PlanfixPerson,
    derived_key,
    event_id_for,
    planfix_comment_deleted_key,
    planfix_comment_key,
    planfix_webhook_key,
    root_envelope,
)
from services.planfix_gateway.fetcher import DURABLE, CommentFetcher
from tests.in_memory import RecordingPublisher

TASK, COMMENT = 4821, 90017
SOURCE_ID = "bridge-source"


class StubPlanfix:
    """``get_comment`` answers from a dict; a missing id is ``CommentNotFound``."""

    def __init__(self, *comments: PlanfixComment, unavailable: bool = False) -> None:
        self.comments = {comment.id: comment for comment in comments}
        self.asked: list[tuple[int, str | None]] = []
        self._unavailable = unavailable

    async def get_comment(self, comment_id: int, *, source_id: str | None = None) -> PlanfixComment:
        self.asked.append((comment_id, source_id))
        if self._unavailable:
            raise PlanfixUnavailable("Planfix answered 503")
        if comment_id not in self.comments:
            raise CommentNotFound(f"comment {comment_id}")
        return self.comments[comment_id]


def comment(**fields: object) -> PlanfixComment:
    defaults: dict[str, object] = {
        "id": COMMENT,
        "task_number": TASK,
        "description": "<p>Done, see the draft</p>",
        "owner_id": "user:5",
        "owner_name": "Pavel",
    }
    return PlanfixComment(**{**defaults, **fields})  # type: ignore[arg-type]


def notice(action: PlanfixCommentAction = PlanfixCommentAction.ADDED) -> PlanfixCommentWebhookReceived:
    key = planfix_webhook_key(COMMENT) if action is PlanfixCommentAction.ADDED else f"notice:{action}"
    return PlanfixCommentWebhookReceived(
        **root_envelope(key, caused_by=key), task_number=TASK, comment_id=COMMENT, action=action
    )


def delivery() -> Delivery:
    return Delivery(consumer=DURABLE, stream_seq=7, num_delivered=1)


async def deliver(planfix: StubPlanfix, stored: PlanfixCommentWebhookReceived) -> RecordingPublisher:
    publisher = RecordingPublisher()
    fetcher = CommentFetcher(
        planfix=cast(PlanfixClient, planfix), publisher=cast(EventPublisher, publisher), source_id=SOURCE_ID
    )
    await fetcher.handle(stored, delivery())
    return publisher


async def test_a_stored_notice_becomes_the_comment_it_names() -> None:
    planfix = StubPlanfix(comment())
    stored = notice()

    publisher = await deliver(planfix, stored)

    [published] = publisher.published
    added = cast(PlanfixCommentAdded, published.event)
    assert (published.subject, published.msg_id) == (
        subjects.planfix_comment_added(TASK),
        planfix_comment_key(COMMENT),
    )
    assert added.event_id == event_id_for(planfix_comment_key(COMMENT))
    assert (added.correlation_id, added.causation_id) == (stored.correlation_id, stored.event_id)
    assert (added.text_html, added.author) == (
        "<p>Done, see the draft</p>",
        PlanfixPerson(id="user:5", name="Pavel"),
    )
    assert (added.source_id, added.source_object_id) == (None, None)
    assert planfix.asked == [(COMMENT, SOURCE_ID)]


async def test_a_comment_the_bridge_wrote_is_marked_as_ours() -> None:
    publisher = await deliver(StubPlanfix(comment(source_object_id="tg-1")), notice())

    added = cast(PlanfixCommentAdded, publisher.published[0].event)
    assert (added.source_id, added.source_object_id) == (SOURCE_ID, "tg-1")


@pytest.mark.parametrize(
    "found",
    [comment(is_hidden=True), comment(is_deleted=True), None],
    ids=["hidden", "deleted", "gone"],
)
async def test_hidden_deleted_or_vanished_comments_are_not_carried(found: PlanfixComment | None) -> None:
    planfix = StubPlanfix(*([found] if found else []))

    publisher = await deliver(planfix, notice())

    assert publisher.published == []
    assert planfix.asked == [(COMMENT, SOURCE_ID)]


async def test_an_update_notice_carries_the_content_as_it_is_now() -> None:
    stored = notice(PlanfixCommentAction.UPDATED)

    publisher = await deliver(StubPlanfix(comment(description="<p>Done, final</p>")), stored)

    [published] = publisher.published
    assert (published.subject, published.msg_id) == (
        subjects.planfix_comment_updated(TASK),
        derived_key(stored, "updated"),
    )
    assert cast(PlanfixCommentUpdated, published.event).text_html == "<p>Done, final</p>"


async def test_a_delete_notice_counts_only_once_planfix_confirms_it() -> None:
    still_there = await deliver(StubPlanfix(comment()), notice(PlanfixCommentAction.DELETED))
    gone = await deliver(StubPlanfix(), notice(PlanfixCommentAction.DELETED))

    assert still_there.published == []
    [published] = gone.published
    assert isinstance(published.event, PlanfixCommentDeleted)
    assert (published.subject, published.msg_id) == (
        subjects.planfix_comment_deleted(TASK),
        planfix_comment_deleted_key(COMMENT),
    )


async def test_planfix_away_leaves_the_notice_for_a_later_delivery() -> None:
    planfix = StubPlanfix(comment(), unavailable=True)

    with pytest.raises(TransientFailure):  # the reader tries it again later
        await deliver(planfix, notice())

    assert planfix.asked == [(COMMENT, SOURCE_ID)]
