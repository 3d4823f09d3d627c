"""A task's comments are stored in Planfix's order whatever order their notices come in: a notice
reads the task's newest comments and stores every one above the last kept, oldest first; a late
notice adds nothing and costs no request. In memory: a stand-in Planfix and a recording
publisher; the stack's version is the fault suite's kill of the gateway mid-burst."""

from __future__ import annotations

from typing import cast

import pytest

from bridge_lib.planfix import PlanfixClient
from contracts.events import (
    PlanfixCommentAdded,
    PlanfixCommentWebhookReceived,
    planfix_comment_key,
    planfix_webhook_key,
    root_envelope,
)
from services.planfix_gateway.fetcher import CommentFetcher
from services.planfix_gateway.in_order import FIRST_PAGE, InOrderCarrier, comments_to_carry
from tests.test_planfix_reread import SOURCE_ID, RecordingPublisher, StandInPlanfix, comment

TASK = 4821


def notice(comment_id: int, task: int = TASK) -> PlanfixCommentWebhookReceived:
    key = planfix_webhook_key(comment_id)
    return PlanfixCommentWebhookReceived(
        **root_envelope(key, caused_by=key), task_number=task, comment_id=comment_id
    )


class Kept:
    """The PLANFIX stream as the carrier reads it: the last comment stored per task."""

    def __init__(self, publisher: RecordingPublisher, last: dict[int, int] | None = None) -> None:
        self._publisher = publisher
        self._before = dict(last or {})

    async def last_stored(self, task: int) -> int | None:
        stored = [
            event.comment_id
            for _, event in self._publisher.stored.values()
            if isinstance(event, PlanfixCommentAdded) and event.task_number == task
        ]
        ids = [*stored, *([self._before[task]] if task in self._before else [])]
        return max(ids) if ids else None


def fetcher_over(planfix: StandInPlanfix, publisher: RecordingPublisher, kept: Kept) -> CommentFetcher:
    async def nothing() -> None:
        return None

    carrier = InOrderCarrier(
        planfix=planfix,
        publisher=publisher,
        source_id=SOURCE_ID,
        relay_hidden=False,
        last_stored=kept.last_stored,
        before_read=nothing,
    )
    return CommentFetcher(
        planfix=cast(PlanfixClient, planfix), publisher=publisher, source_id=SOURCE_ID, in_order=carrier
    )


def stored_ids(publisher: RecordingPublisher) -> list[int]:
    return [e.comment_id for _, e in publisher.stored.values() if isinstance(e, PlanfixCommentAdded)]


@pytest.mark.parametrize(
    ("floor", "expected"),
    [
        (10, [11, 14, 15]),  # 12 deleted, 13 hidden: never carried
        (14, [15]),
        (15, []),
        (0, [11, 14, 15]),
    ],
)
def test_what_a_reading_carries_is_above_the_floor_oldest_first(floor: int, expected: list[int]) -> None:
    listed = [
        comment(15),
        comment(14, ours=True),
        comment(13, hidden=True),
        comment(12, deleted=True),
        comment(11),
    ]
    assert [c.id for c in comments_to_carry(listed, floor=floor, relay_hidden=False)] == expected


def test_hidden_comments_are_carried_where_hidden_ones_are_relayed() -> None:
    listed = [comment(12, hidden=True), comment(11)]
    assert [c.id for c in comments_to_carry(listed, floor=10, relay_hidden=True)] == [11, 12]


async def test_notices_lost_while_the_gateway_was_down_do_not_let_a_later_one_jump_the_queue() -> None:
    planfix = StandInPlanfix([comment(i) for i in range(100, 110)])
    publisher = RecordingPublisher()
    kept = Kept(publisher, {TASK: 100})
    fetcher = fetcher_over(planfix, publisher, kept)

    # 101..107 were announced while nothing answered; 108 is the first notice after the restart.
    await fetcher.handle(notice(108), None)  # type: ignore[arg-type]

    assert stored_ids(publisher) == list(range(101, 110))
    assert planfix.requests == [f"list {TASK}"]


async def test_a_late_notice_of_a_comment_already_kept_adds_nothing_and_asks_planfix_nothing() -> None:
    planfix = StandInPlanfix([comment(i) for i in range(100, 110)])
    publisher = RecordingPublisher()
    fetcher = fetcher_over(planfix, publisher, Kept(publisher, {TASK: 100}))
    await fetcher.handle(notice(109), None)  # type: ignore[arg-type]
    planfix.requests.clear()

    for late in (103, 101, 109):  # as Planfix resends them, 15 minutes on
        await fetcher.handle(notice(late), None)  # type: ignore[arg-type]

    assert stored_ids(publisher) == list(range(101, 110))
    assert planfix.requests == []


async def test_the_announced_comment_carries_its_own_story_and_the_others_their_own() -> None:
    planfix = StandInPlanfix([comment(i) for i in range(100, 103)])
    publisher = RecordingPublisher()
    fetcher = fetcher_over(planfix, publisher, Kept(publisher, {TASK: 100}))
    announced = notice(102)

    await fetcher.handle(announced, None)  # type: ignore[arg-type]

    earlier = publisher.stored[planfix_comment_key(101)][1]
    own = publisher.stored[planfix_comment_key(102)][1]
    assert (own.correlation_id, own.causation_id) == (announced.correlation_id, announced.event_id)
    assert earlier.correlation_id == earlier.event_id != announced.correlation_id


async def test_a_long_gap_is_read_back_page_by_page_to_the_last_kept_comment() -> None:
    newest = 100 + FIRST_PAGE + 30
    planfix = StandInPlanfix([comment(i) for i in range(100, newest + 1)])
    publisher = RecordingPublisher()
    fetcher = fetcher_over(planfix, publisher, Kept(publisher, {TASK: 100}))

    await fetcher.handle(notice(newest), None)  # type: ignore[arg-type]

    assert stored_ids(publisher) == list(range(101, newest + 1))
    assert planfix.requests == [f"list {TASK}", f"list {TASK} from {FIRST_PAGE}"]


async def test_a_task_with_nothing_kept_starts_at_the_announced_comment() -> None:
    planfix = StandInPlanfix([comment(i) for i in range(100, 105)])
    publisher = RecordingPublisher()
    fetcher = fetcher_over(planfix, publisher, Kept(publisher))

    await fetcher.handle(notice(103), None)  # type: ignore[arg-type]

    # 100..102 were written before the bridge kept anything of the task; 104 is already there.
    assert stored_ids(publisher) == [103, 104]


async def test_a_comment_the_task_list_does_not_show_is_fetched_alone() -> None:
    planfix = StandInPlanfix([comment(100), comment(101)])
    publisher = RecordingPublisher()
    planfix.unlisted_tasks.add(TASK)
    fetcher = fetcher_over(planfix, publisher, Kept(publisher, {TASK: 99}))

    await fetcher.handle(notice(101), None)  # type: ignore[arg-type]

    assert stored_ids(publisher) == [101]
    assert planfix.requests == [f"list {TASK}", "get 101"]
