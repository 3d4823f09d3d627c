"""Reconciliation: comments of bound tasks that no webhook announced are found by the re-read's
passes and carried once, oldest first, under the fetcher's own key. Pure decisions as tables,
then passes against a stand-in Planfix and a recording publisher (``test_planfix_reread``)."""

from __future__ import annotations

import pytest

from bridge_lib import metrics
from contracts import subjects
from contracts.events import PlanfixCommentAdded, event_id_for, planfix_comment_key
from services.planfix_gateway.reconcile import MemoryMarks, check_comments, due_tasks, mark_with_pending
from services.planfix_gateway.reread import CommentRereader, Watchlist
from tests.test_planfix_reread import (
    ACTIVE_S,
    NOW,
    SOURCE_ID,
    RecordingPublisher,
    StandInPlanfix,
    added,
    bound,
    comment,
)

TASK = 4821


@pytest.mark.parametrize(
    ("mark", "folded", "expected_missed", "expected_mark"),
    [
        (None, set(), [], 15),  # no mark yet: the task starts at its newest comment
        (10, {11, 12, 13, 14, 15}, [], 15),  # every webhook came
        (10, {11, 13, 15}, [12, 14], 15),  # two never came: carried oldest first
        (12, {11, 13, 15}, [14], 15),  # below the mark: checked before
        (15, set(), [], 15),
    ],
)
def test_comments_above_the_mark_that_were_never_folded_are_missed(
    mark: int | None, folded: set[int], expected_missed: list[int], expected_mark: int
) -> None:
    listed = [comment(i) for i in (15, 14, 13, 12, 11)]  # newest first, as the list answers
    check = check_comments(listed, mark, folded=folded, relay_hidden=False)
    assert [c.id for c in check.missed] == expected_missed
    assert check.new_mark == expected_mark


def test_our_own_deleted_and_hidden_comments_are_never_carried() -> None:
    listed = [comment(11, ours=True), comment(12, deleted=True), comment(13, hidden=True), comment(14)]
    assert [c.id for c in check_comments(listed, 10, folded=set(), relay_hidden=False).missed] == [14]
    assert [c.id for c in check_comments(listed, 10, folded=set(), relay_hidden=True).missed] == [13, 14]


def test_the_mark_stays_below_a_comment_still_in_its_grace() -> None:
    assert mark_with_pending(20, [14, 17]) == 13
    assert mark_with_pending(20, []) == 20
    assert mark_with_pending(None, [3]) is None


def test_active_tasks_are_read_every_pass_quiet_ones_hourly_hurried_ones_at_once() -> None:
    last_read = {1: NOW - 600, 2: NOW - 600, 3: NOW - 3600, 4: NOW - 60}
    due = due_tasks(
        [1, 2, 3, 4, 5],
        {1: NOW - 100},
        last_read,
        now=NOW,
        interval_s=600,
        quiet_interval_s=3600,
        hurried={4},
    )
    # 5 never read comes first; 2 (quiet, read 10 min ago) waits for its hour.
    assert due == [5, 3, 1, 4]


def reconciler(
    planfix: StandInPlanfix,
    watch: Watchlist,
    publisher: RecordingPublisher,
    marks: MemoryMarks,
    clock: list[float],
    drained: list[bool] | None = None,
) -> CommentRereader:
    async def webhooks_drained() -> bool:
        return drained[0] if drained else True

    return CommentRereader(
        planfix=planfix,
        publisher=publisher,
        watchlist=watch,
        source_id=SOURCE_ID,
        interval_s=600,
        active_s=ACTIVE_S,
        max_per_day=100_000,
        clock=lambda: NOW,
        marks=marks,
        grace_s=60,
        webhooks_drained=webhooks_drained,
        monotonic=lambda: clock[0],
    )


async def test_missed_comments_are_carried_once_in_order_after_their_grace() -> None:
    planfix = StandInPlanfix(
        [comment(11), comment(12, "<p>lost</p>"), comment(13, ours=True), comment(14, "<p>lost too</p>")]
    )
    watch = Watchlist()
    for event in (bound(-100, TASK), added(11)):
        watch.apply(event)
    publisher = RecordingPublisher()
    marks = MemoryMarks({TASK: 10})
    clock = [1000.0]
    reconcile = reconciler(planfix, watch, publisher, marks, clock)
    found_before = metrics.PLANFIX_COMMENTS_RECONCILED._value.get()

    first = await reconcile.run_pass()
    assert first.found == 0  # seen missing now; a webhook may still be on its way
    assert marks.marks[TASK] == 11
    assert publisher.stored == {}

    clock[0] += 61
    second = await reconcile.run_pass()
    assert second.found == 2
    carried = [event for _, event in publisher.stored.values() if isinstance(event, PlanfixCommentAdded)]
    assert [e.comment_id for e in carried] == [12, 14]
    assert len(carried) == len(publisher.stored)
    # The webhook path's key and id: a notice that comes after all is dropped as a repeat.
    assert list(publisher.stored) == [planfix_comment_key(12), planfix_comment_key(14)]
    assert carried[0].event_id == event_id_for(planfix_comment_key(12))
    assert publisher.stored[planfix_comment_key(12)][0] == subjects.planfix_comment_added(TASK)
    assert carried[0].text_html == "<p>lost</p>"
    assert marks.marks[TASK] == 14
    assert metrics.PLANFIX_COMMENTS_RECONCILED._value.get() == found_before + 2

    for event in carried:
        watch.apply(event)
    clock[0] += 600
    third = await reconcile.run_pass()
    assert third.found == 0
    assert len(publisher.stored) == 2


async def test_a_comment_whose_webhook_comes_late_is_not_carried() -> None:
    planfix = StandInPlanfix([comment(11), comment(12)])
    watch = Watchlist()
    watch.apply(bound(-100, TASK))
    publisher = RecordingPublisher()
    marks = MemoryMarks({TASK: 10})
    clock = [1000.0]
    reconcile = reconciler(planfix, watch, publisher, marks, clock)

    await reconcile.run_pass()
    for comment_id in (11, 12):  # the notices arrive within the grace
        watch.apply(added(comment_id, task=TASK))
    clock[0] += 61
    outcome = await reconcile.run_pass()

    assert outcome.found == 0
    assert publisher.stored == {}
    assert marks.marks[TASK] == 12


async def test_nothing_is_carried_while_webhook_notices_wait_for_the_fetcher() -> None:
    planfix = StandInPlanfix([comment(11)])
    watch = Watchlist()
    watch.apply(bound(-100, TASK))
    publisher = RecordingPublisher()
    marks = MemoryMarks({TASK: 10})
    clock = [1000.0]
    drained = [False]
    reconcile = reconciler(planfix, watch, publisher, marks, clock, drained)

    await reconcile.run_pass()
    clock[0] += 61
    assert (await reconcile.run_pass()).found == 0
    assert marks.marks[TASK] == 10

    drained[0] = True
    assert (await reconcile.run_pass()).found == 1


async def test_a_task_without_a_mark_starts_at_its_newest_comment() -> None:
    planfix = StandInPlanfix([comment(11), comment(12)])
    watch = Watchlist()
    watch.apply(bound(-100, TASK))
    marks = MemoryMarks()
    publisher = RecordingPublisher()

    outcome = await reconciler(planfix, watch, publisher, marks, [0.0]).run_pass()

    assert (outcome.found, marks.marks[TASK], publisher.stored) == (0, 12, {})


def test_the_fold_remembers_every_added_comment_of_a_bound_task_for_the_active_window() -> None:
    watch = Watchlist()
    watch.apply(bound(-100, TASK))
    for event in (
        added(11, at=NOW - 2 * ACTIVE_S),
        added(12, ours=True),
        added(13, hidden=True),
        added(14),
        added(21, task=999),  # no group is bound to it
    ):
        watch.apply(event)

    assert watch.folded_in(TASK) == {11, 12, 13, 14}
    assert watch.folded_in(999) == frozenset()
    watch.forget_before(NOW - ACTIVE_S)
    assert watch.folded_in(TASK) == {12, 13, 14}
