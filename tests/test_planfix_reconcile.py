"""Reconciliation: comments of bound tasks that no webhook announced are found by the re-read's
passes and carried once, oldest first, under the fetcher's own key. Pure decisions as tables,
then passes against a stand-in Planfix and a recording publisher (``test_planfix_reread``)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import msgspec
import nats.js.errors
import pytest

from bridge_lib import metrics
from bridge_lib.eventbus import Delivery
from bridge_lib.planfix import PlanfixComment, TaskPeople
from contracts import subjects
from contracts.events import (
    PlanfixCommentAdded,
    PlanfixTaskState,
    PlanfixTaskStateChanged,
    PlanfixTaskWebhookReceived,
    TaskStateSeen,
    encode_event,
    event_id_for,
    planfix_comment_key,
    root_envelope,
)
from services.planfix_gateway.reconcile import MemoryMarks, check_comments, due_tasks, mark_with_pending
from services.planfix_gateway.reread import CommentRereader, Watchlist
from services.planfix_gateway.task_fetcher import TaskFetcher
from tests.test_planfix_reread import (
    ACTIVE_S,
    NOW,
    RecordingPublisher,
    StandInPlanfix,
    added,
    bound,
    comment,
    rereader,
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

    return rereader(
        planfix,
        watch,
        publisher,
        max_per_day=100_000,
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


# --- task changes no scenario notice announced ------------------------------------------------


class StandInTasks(StandInPlanfix):
    """The stand-in Planfix with tasks too: ``GET /task/{id}`` answers the task's state now."""

    def __init__(self, comments: list[PlanfixComment], states: dict[int, PlanfixTaskState]) -> None:
        super().__init__(comments)
        self.states = states
        # Set: each read waits for it (two reads in flight at once).
        self.hold: asyncio.Event | None = None

    async def get_task_state(self, number: int) -> tuple[PlanfixTaskState, TaskPeople]:
        self.requests.append(f"task {number}")
        if self.hold is not None:
            await self.hold.wait()
        return self.states[number], TaskPeople(number=number)


class StoredStates(RecordingPublisher):
    """The PLANFIX stream as the task fetcher sees it: what is published (a repeated message id
    dropped), and the last message of a subject read back (``last_task_state``)."""

    async def get_last_msg(self, stream: str, subject: str) -> Any:
        on_subject = [
            (seq, event) for seq, (at, event) in enumerate(self.stored.values(), 1) if at == subject
        ]
        if not on_subject:
            raise nats.js.errors.NotFoundError
        seq, event = on_subject[-1]
        return SimpleNamespace(seq=seq, data=encode_event(event))

    def changes(self, task: int) -> list[PlanfixTaskStateChanged]:
        subject = subjects.planfix_task_changed(task)
        return [e for s, e in self.stored.values() if s == subject and isinstance(e, PlanfixTaskStateChanged)]


QUIET_S = 3600.0
NEW = PlanfixTaskState(name="Boiler", status_id=1, status_name="New", status_active=True)
IN_PROGRESS = msgspec.structs.replace(NEW, status_id=2, status_name="In progress")


def task_fetcher(planfix: StandInTasks, stream: StoredStates) -> TaskFetcher:
    return TaskFetcher(planfix=planfix, publisher=stream, jetstream=lambda: stream)  # type: ignore[arg-type]


def state_reconciler(
    planfix: StandInTasks, watch: Watchlist, stream: StoredStates, clock: list[float], tasks: TaskFetcher
) -> CommentRereader:
    return rereader(
        planfix,
        watch,
        stream,
        max_per_day=100_000,
        clock=lambda: clock[0],
        marks=MemoryMarks({TASK: 11}),
        quiet_interval_s=QUIET_S,
        task_states=tasks,
    )


def a_bound_task_with_a_comment() -> Watchlist:
    watch = Watchlist()
    for event in (bound(-100, TASK), added(11, task=TASK, at=NOW - 60)):
        watch.apply(event)
    return watch


async def test_a_status_change_no_notice_announced_is_stored_once_by_a_pass() -> None:
    planfix = StandInTasks([comment(11, task=TASK)], {TASK: NEW})
    stream = StoredStates()
    tasks = task_fetcher(planfix, stream)
    await tasks.on_bound(bound(-100, TASK), Delivery(stream_seq=1, num_delivered=1))  # the card's first state
    clock = [NOW]
    reconcile = state_reconciler(planfix, a_bound_task_with_a_comment(), stream, clock, tasks)
    found_before = metrics.PLANFIX_TASK_CHANGES_RECONCILED._value.get()

    planfix.states[TASK] = IN_PROGRESS  # changed in Planfix; the task scenario sends nothing
    planfix.requests.clear()
    first = await reconcile.run_pass()

    assert (first.requests, first.states_read, first.task_changes) == (2, 1, 1)
    assert planfix.requests == [f"list {TASK}", f"task {TASK}"]
    [bind, change] = stream.changes(TASK)
    assert (bind.seen_on, change.seen_on) == (TaskStateSeen.BOUND, TaskStateSeen.RECONCILE)
    assert change.previous == NEW
    assert change.state == IN_PROGRESS
    assert metrics.PLANFIX_TASK_CHANGES_RECONCILED._value.get() == found_before + 1

    # The next pass lists the comments of the (active) task again, but reads its state only once
    # a quiet interval has passed: and then finds nothing new.
    clock[0] += 600
    second = await reconcile.run_pass()
    assert (second.requests, second.states_read, second.task_changes) == (1, 0, 0)
    clock[0] += QUIET_S
    third = await reconcile.run_pass()
    assert (third.requests, third.states_read, third.task_changes) == (2, 1, 0)
    assert len(stream.changes(TASK)) == 2
    assert metrics.PLANFIX_TASK_CHANGES_RECONCILED._value.get() == found_before + 1


async def test_a_task_state_costs_one_read_per_quiet_interval_a_day() -> None:
    planfix = StandInTasks([comment(11, task=TASK)], {TASK: NEW})
    stream = StoredStates()
    clock = [NOW]
    watch = Watchlist()
    watch.apply(bound(-100, TASK))  # no comment relayed: a quiet task
    reconcile = state_reconciler(planfix, watch, stream, clock, task_fetcher(planfix, stream))
    found_before = metrics.PLANFIX_TASK_CHANGES_RECONCILED._value.get()

    requests = changes = 0
    for _ in range(144):  # a day of passes, every 10 minutes
        outcome = await reconcile.run_pass()
        requests, changes = requests + outcome.requests, changes + outcome.task_changes
        clock[0] += 600

    # 24 state reads (one an hour) beside the quiet task's 24 comment lists.
    assert planfix.requests.count(f"task {TASK}") == 24
    assert requests == 48
    # Its first state (none was stored): no change a notice missed; then nothing new.
    assert [change.seen_on for change in stream.changes(TASK)] == [TaskStateSeen.RECONCILE]
    assert changes == 0
    assert metrics.PLANFIX_TASK_CHANGES_RECONCILED._value.get() == found_before


async def test_a_change_a_notice_and_a_pass_both_find_is_stored_once() -> None:
    planfix = StandInTasks([comment(11, task=TASK)], {TASK: NEW})
    stream = StoredStates()
    # Two replicas: one answers the notice, the other holds the re-read's lease.
    on_notice, in_pass = task_fetcher(planfix, stream), task_fetcher(planfix, stream)
    await on_notice.on_bound(bound(-100, TASK), Delivery(stream_seq=1, num_delivered=1))
    reconcile = state_reconciler(planfix, a_bound_task_with_a_comment(), stream, [NOW], in_pass)
    planfix.states[TASK] = IN_PROGRESS
    planfix.hold = asyncio.Event()
    notice = PlanfixTaskWebhookReceived(**root_envelope("notice", caused_by="notice"), task_number=TASK)

    both = asyncio.gather(
        on_notice.on_notice(notice, Delivery(stream_seq=2, num_delivered=1)), reconcile.run_pass()
    )
    await asyncio.sleep(0.01)  # both have read the stored state and asked Planfix
    planfix.hold.set()
    _, outcome = await both

    assert planfix.requests.count(f"task {TASK}") == 3  # the bind, the notice, the pass
    assert [change.state for change in stream.changes(TASK)] == [NEW, IN_PROGRESS]
    assert outcome.task_changes == 0  # the notice's read stored it first
