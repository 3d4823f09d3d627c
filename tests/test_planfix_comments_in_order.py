"""A task's comments are stored in Planfix's order whatever order their notices come in: a notice
reads the task's newest comments and stores every one above the last kept, oldest first; a late
notice adds nothing and costs no request. In memory: a stand-in Planfix and a recording
publisher; the stack's version is the fault suite's kill of the gateway mid-burst."""

from __future__ import annotations

from collections.abc import Callable
from typing import cast

import pytest

from bridge_lib.planfix import PlanfixClient
from contracts.events import (
    PlanfixCommentAction,
    PlanfixCommentAdded,
    PlanfixCommentChange,
    PlanfixCommentUpdated,
    PlanfixCommentWebhookReceived,
    planfix_comment_key,
    planfix_webhook_key,
    root_envelope,
)
from services.planfix_gateway.fetcher import CommentFetcher, plan_batch
from services.planfix_gateway.in_order import (
    FIRST_PAGE,
    InOrderCarrier,
    LastStored,
    LastStoredCache,
    carry_plan,
    comments_to_carry,
    reading_of,
)
from tests.in_memory import Clock
from tests.support import named_cases
from tests.test_planfix_reread import SOURCE_ID, RecordingPublisher, StandInPlanfix, comment

TASK = 4821


def notice(
    comment_id: int, task: int = TASK, action: PlanfixCommentAction = PlanfixCommentAction.ADDED
) -> PlanfixCommentWebhookReceived:
    key = (
        planfix_webhook_key(comment_id) if action is PlanfixCommentAction.ADDED else f"{action}:{comment_id}"
    )
    return PlanfixCommentWebhookReceived(
        **root_envelope(key, caused_by=key), task_number=task, comment_id=comment_id, action=action
    )


class Kept:
    """The PLANFIX stream as the carrier reads it: the last comment stored per task."""

    def __init__(self, publisher: RecordingPublisher, last: dict[int, int] | None = None) -> None:
        self._publisher = publisher
        self._before = dict(last or {})
        self.reads: list[int] = []

    async def last_stored(self, task: int) -> int | None:
        self.reads.append(task)
        stored = [
            event.comment_id
            for _, event in self._publisher.stored.values()
            if isinstance(event, PlanfixCommentAdded) and event.task_number == task
        ]
        ids = [*stored, *([self._before[task]] if task in self._before else [])]
        return max(ids) if ids else None


def fetcher_over(planfix: StandInPlanfix, publisher: RecordingPublisher, kept: Kept) -> CommentFetcher:
    return fetcher_with(planfix, publisher, kept.last_stored)


def fetcher_with(
    planfix: StandInPlanfix,
    publisher: RecordingPublisher,
    last_stored: LastStored,
    on_stored: Callable[[int, int], None] = lambda task, comment_id: None,
) -> CommentFetcher:
    async def nothing() -> None:
        return None

    carrier = InOrderCarrier(
        planfix=planfix,
        publisher=publisher,
        source_id=SOURCE_ID,
        relay_hidden=False,
        last_stored=last_stored,
        before_read=nothing,
        on_stored=on_stored,
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


# --- a batch of notices ---------------------------------------------------------------------

A, B = 4821, 4822
ADDED, UPDATED, DELETED = (
    PlanfixCommentAction.ADDED,
    PlanfixCommentAction.UPDATED,
    PlanfixCommentAction.DELETED,
)

# (name, the batch as (comment, task, action), added ids per task, the others' ids in order)
PLAN_CASES = [
    ("one task", [(1, A, ADDED), (2, A, ADDED)], {A: [1, 2]}, []),
    (
        "tasks in the order they first appear",
        [(5, B, ADDED), (1, A, ADDED), (6, B, ADDED)],
        {B: [5, 6], A: [1]},
        [],
    ),
    (
        "edits and deletions after the added ones, in stream order",
        [(3, A, UPDATED), (1, A, ADDED), (2, B, DELETED), (4, A, ADDED)],
        {A: [1, 4]},
        [3, 2],
    ),
    (
        "an edit of a comment added in the batch follows its add",
        [(7, A, ADDED), (7, A, UPDATED)],
        {A: [7]},
        [7],
    ),
    ("only edits", [(3, A, UPDATED), (2, A, DELETED)], {}, [3, 2]),
]


@named_cases(("batch", "added", "others"), PLAN_CASES)
def test_a_batch_is_grouped_by_task_with_edits_and_deletions_after(
    batch: list[tuple[int, int, PlanfixCommentAction]], added: dict[int, list[int]], others: list[int]
) -> None:
    plan = plan_batch([notice(c, task, action) for c, task, action in batch], in_order=True)

    assert {task: [n.comment_id for n in ns] for task, ns in plan.added_by_task.items()} == added
    assert list(plan.added_by_task) == list(added)  # the order of tasks, too
    assert [n.comment_id for n in plan.one_by_one] == others


def test_without_a_carrier_every_notice_is_taken_alone_in_stream_order() -> None:
    batch = [notice(2, B), notice(1, A), notice(2, B, UPDATED)]

    plan = plan_batch(batch, in_order=False)

    assert plan.added_by_task == {}
    assert plan.one_by_one == tuple(batch)


# (name, announced ids, last stored, floor or None: nothing to read)
READING_CASES = [
    ("down to the last stored", [12, 11, 14], 10, 10),
    ("nothing kept: from the lowest announced", [14, 12, 13], None, 11),
    ("late ones below the last stored add nothing", [8, 12, 9], 10, 10),
    ("all late: nothing to read", [8, 9, 10], 10, None),
]


@named_cases(("announced", "last", "floor"), READING_CASES)
def test_a_tasks_notices_call_for_one_reading_down_to_its_floor(
    announced: list[int], last: int | None, floor: int | None
) -> None:
    reading = reading_of([notice(c) for c in announced], last)

    assert (reading.floor if reading else None) == floor
    if reading is not None:
        assert list(reading.announced) == sorted(c for c in set(announced) if last is None or c > last)


# (name, listed ids (None: unreadable), announced, last, stored as (id, notice's id, named), alone)
CARRY_CASES = [
    (
        "missed ones before an announced one are found on the way to it",
        [15, 14, 13, 12, 11],
        [12, 14],
        10,
        [(11, 12, False), (12, 12, True), (13, 14, False), (14, 14, True), (15, 14, False)],
        [],
    ),
    (
        "nothing kept: from the lowest announced on",
        [15, 14, 13],
        [14, 15],
        None,
        [(14, 14, True), (15, 15, True)],
        [],
    ),
    ("an unreadable list: each fetched alone", None, [12, 14], 10, [], [12, 14]),
    ("a list showing none: another task's, fetched alone", [20, 19], [12], 10, [], [12]),
    (
        "one not shown is fetched alone, the rest stored",
        [14, 13],
        [12, 14],
        None,
        [(14, 14, True)],
        [12],
    ),
]


@named_cases(("listed", "announced", "last", "stored", "alone"), CARRY_CASES)
def test_a_tasks_reading_stores_every_comment_above_the_floor_oldest_first(
    listed: list[int] | None,
    announced: list[int],
    last: int | None,
    stored: list[tuple[int, int, bool]],
    alone: list[int],
) -> None:
    reading = reading_of([notice(c) for c in announced], last)
    assert reading is not None

    plan = carry_plan(None if listed is None else [comment(c) for c in listed], reading, relay_hidden=False)

    assert [(c.comment.id, c.notice.comment_id, c.named) for c in plan.stores] == stored
    assert [n.comment_id for n in plan.alone] == alone


async def test_a_batch_of_notices_for_one_task_costs_one_list_and_one_read_of_the_last_stored() -> None:
    planfix = StandInPlanfix([comment(i) for i in range(100, 121)])
    publisher = RecordingPublisher()
    kept = Kept(publisher, {TASK: 100})
    fetcher = fetcher_over(planfix, publisher, kept)
    announced = [notice(i) for i in (103, 101, 102, *range(104, 121))]  # one resent late

    await fetcher.handle_all(announced)

    assert stored_ids(publisher) == list(range(101, 121))
    assert planfix.requests == [f"list {TASK}", f"list {TASK} from {FIRST_PAGE}"]  # 20 new: two pages
    assert kept.reads == [TASK]
    for n in announced:  # each announced comment goes on with its notice's story
        stored = publisher.stored[planfix_comment_key(n.comment_id)][1]
        assert (stored.correlation_id, stored.causation_id) == (n.correlation_id, n.event_id)


async def test_a_batch_over_two_tasks_reads_each_once_and_keeps_each_tasks_order() -> None:
    planfix = StandInPlanfix(
        [comment(i, task=A) for i in range(10, 15)] + [comment(i, task=B) for i in range(50, 53)]
    )
    publisher = RecordingPublisher()
    kept = Kept(publisher, {A: 10, B: 49})
    fetcher = fetcher_over(planfix, publisher, kept)

    await fetcher.handle_all([notice(12, A), notice(51, B), notice(14, A), notice(50, B), notice(52, B)])

    assert planfix.requests == [f"list {A}", f"list {B}"]
    assert kept.reads == [A, B]
    assert stored_ids(publisher) == [11, 12, 13, 14, 50, 51, 52]


async def test_in_a_batch_an_edit_follows_the_add_of_its_comment_and_a_late_notice_asks_nothing() -> None:
    planfix = StandInPlanfix([comment(i) for i in range(100, 103)])
    publisher = RecordingPublisher()
    fetcher = fetcher_over(planfix, publisher, Kept(publisher, {TASK: 100}))

    await fetcher.handle_all(
        [notice(102, action=UPDATED), notice(99), notice(102), notice(101, action=DELETED)]
    )

    events = [cast(PlanfixCommentChange, event) for _, event in publisher.stored.values()]
    assert [(type(e), e.comment_id) for e in events] == [
        (PlanfixCommentAdded, 101),
        (PlanfixCommentAdded, 102),
        (PlanfixCommentUpdated, 102),
    ]  # 101 is still there: its deletion notice is dropped
    assert planfix.requests == [f"list {TASK}", "get 102", "get 101"]


async def test_in_a_batch_a_comment_the_task_list_does_not_show_is_fetched_alone() -> None:
    planfix = StandInPlanfix([comment(100), comment(101), comment(300, task=A + 7)])
    publisher = RecordingPublisher()
    fetcher = fetcher_over(planfix, publisher, Kept(publisher, {TASK: 99}))

    await fetcher.handle_all([notice(101), notice(300)])  # 300 is another task's

    assert stored_ids(publisher) == [100, 101, 300]
    assert planfix.requests == [f"list {TASK}", "get 300"]


# --- the last stored comment, read once a minute -------------------------------------------------


async def test_a_burst_reads_each_tasks_last_stored_comment_once_and_its_own_stores_move_it_on() -> None:
    planfix = StandInPlanfix([comment(i) for i in range(100, 110)])
    publisher = RecordingPublisher()
    kept = Kept(publisher, {TASK: 100})
    clock = Clock()
    cached = LastStoredCache(kept.last_stored, trust_s=60, clock=clock.time)
    fetcher = fetcher_with(planfix, publisher, cached, on_stored=cached.stored)

    for batch in ([notice(101), notice(102)], [notice(104)], [notice(103)], [notice(107)]):
        await fetcher.handle_all(batch)

    assert stored_ids(publisher) == list(range(101, 110))  # every one listed above the last
    assert kept.reads == [TASK]  # one read: the stores since are the replica's own
    # The first list stored up to 109: the later notices name stored comments and ask nothing.
    assert planfix.requests == [f"list {TASK}"]


async def test_a_tasks_last_stored_comment_is_read_again_once_trusted_for_a_minute() -> None:
    reads: list[int] = []
    stream = {TASK: 100}

    async def read(task: int) -> int | None:
        reads.append(task)
        return stream.get(task)

    clock = Clock()
    cached = LastStoredCache(read, trust_s=60, clock=clock.time)

    assert await cached(TASK) == 100
    cached.stored(TASK, 104)
    cached.stored(TASK, 102)  # an older one stored again: the last stays 104
    clock.now += 59
    assert await cached(TASK) == 104
    stream[TASK] = 120  # another replica stored more meanwhile
    clock.now += 1
    assert await cached(TASK) == 120
    # A task with nothing stored is read each time (nothing to keep).
    assert await cached(TASK + 1) is None
    assert await cached(TASK + 1) is None
    assert reads == [TASK, TASK, TASK + 1, TASK + 1]


async def test_at_most_so_many_tasks_are_remembered_the_longest_kept_going_first() -> None:
    async def read(task: int) -> int | None:
        return task * 10

    clock = Clock()
    cached = LastStoredCache(read, trust_s=60, kept=2, clock=clock.time)
    for task in (1, 2, 3):
        await cached(task)
        clock.now += 1

    cached.stored(4, 41)

    assert list(cached._known) == [3, 4]
