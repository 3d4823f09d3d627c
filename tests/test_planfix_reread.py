"""The paced re-read that notices edits and deletions of Planfix comments (no scenario event).

The decisions are pure and tested as tables; the pass is tested against a stand-in Planfix
and a recording publisher (no waiting, no network); the fold and its catch-up against a real
NATS and the fake Planfix.
"""

from __future__ import annotations

import itertools
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import msgspec
import pytest

from bridge_lib.eventbus import EventPublisher, ensure_streams, make_broker
from bridge_lib.planfix import (
    CommentNotFound,
    PlanfixClient,
    PlanfixComment,
    PlanfixFileInfo,
    PlanfixUnavailable,
    TaskNotFound,
)
from contracts import subjects
from contracts.events import (
    BindingMoved,
    Event,
    PlanfixCommentAdded,
    PlanfixCommentDeleted,
    PlanfixCommentUpdated,
    PlanfixFile,
    PlanfixPerson,
    TaskBound,
    TaskUnbound,
    event_id_for,
    planfix_comment_deleted_key,
    planfix_comment_key,
)
from contracts.subjects import subject_for
from sandbox.fake_planfix import FakePlanfix
from services.planfix_gateway.reread import (
    DAILY_RESERVE,
    PAGE_SIZE,
    WATCHED_PER_TASK,
    CommentRereader,
    CommentSource,
    Watched,
    WatchFeed,
    Watchlist,
    fingerprint,
    next_credit,
    pass_share,
    read_page,
    requests_per_day,
    tasks_to_read,
    verdict,
)
from tests.conftest import PLANFIX_TOKEN
from tests.support import LoopThread, envelope, named_cases, read_stream_events, task_bound

NOW = 1_800_000_000.0
HOUR = 3600.0
ACTIVE_S = 24 * HOUR
SOURCE_ID = "0c6b7f0e-2d7a-4f0e-9a56-6a3f1c9b8e11"
_numbers = itertools.count(1)


def comment(
    comment_id: int,
    text: str = "<p>hello</p>",
    *,
    task: int = 4821,
    files: tuple[int, ...] = (),
    deleted: bool = False,
    hidden: bool = False,
    ours: bool = False,
) -> PlanfixComment:
    return PlanfixComment(
        id=comment_id,
        task_number=task,
        description=text,
        owner_id="user:7",
        owner_name="Olga Smirnova",
        source_object_id=str(uuid.uuid4()) if ours else None,
        is_deleted=deleted,
        is_hidden=hidden,
        files=tuple(PlanfixFileInfo(id=f, name=f"f{f}.pdf", size=10) for f in files),
    )


def watched(
    comment_id: int, text: str = "<p>hello</p>", *, files: tuple[int, ...] = (), task: int = 4821
) -> Watched:
    return Watched(
        comment_id=comment_id,
        task_number=task,
        fingerprint=fingerprint(text, files),
        relayed_at=NOW - HOUR,
        correlation_id="corr",
        last_event_id="added",
    )


def added(
    comment_id: int,
    text: str = "<p>hello</p>",
    *,
    task: int = 4821,
    at: float = NOW - HOUR,
    files: tuple[int, ...] = (),
    ours: bool = False,
    hidden: bool = False,
) -> PlanfixCommentAdded:
    key = planfix_comment_key(comment_id)
    return PlanfixCommentAdded(
        event_id=event_id_for(key),
        occurred_at=datetime.fromtimestamp(at, UTC),
        correlation_id=f"corr-{comment_id}",
        causation_id=key,
        task_number=task,
        comment_id=comment_id,
        text_html=text,
        author=PlanfixPerson(id="user:7", name="Olga Smirnova"),
        source_id=SOURCE_ID if ours else None,
        source_object_id=str(uuid.uuid4()) if ours else None,
        is_hidden=hidden,
        files=[PlanfixFile(id=f, name=f"f{f}.pdf", size=10) for f in files],
    )


def bound(chat_id: int, task: int, thread_id: int | None = None) -> TaskBound:
    return task_bound(chat_id, task, thread_id=thread_id)


# --- what happened to one comment -----------------------------------------------------------------

VERDICTS: list[tuple[str, Watched, PlanfixComment | None, bool, str]] = [
    ("unchanged", watched(1), comment(1), False, "same"),
    ("text changed", watched(1), comment(1, "<p>hello!</p>"), False, "edited"),
    ("a file added", watched(1), comment(1, files=(70001,)), False, "edited"),
    ("files in another order", watched(1, files=(2, 1)), comment(1, files=(1, 2)), False, "same"),
    ("a file removed", watched(1, files=(1, 2)), comment(1, files=(1,)), False, "edited"),
    ("not found", watched(1), None, False, "deleted"),
    ("marked deleted", watched(1), comment(1, deleted=True), False, "deleted"),
    ("hidden now, not relayed", watched(1), comment(1, "<p>secret</p>", hidden=True), False, "same"),
    ("hidden now, relayed", watched(1), comment(1, "<p>secret</p>", hidden=True), True, "edited"),
    ("ours after all", watched(1), comment(1, "<p>other</p>", ours=True), False, "same"),
]


@named_cases(("seen", "now", "relay_hidden", "expected"), VERDICTS)
def test_a_comment_is_judged_by_its_text_files_and_state(
    seen: Watched, now: PlanfixComment | None, relay_hidden: bool, expected: str
) -> None:
    assert verdict(seen, now, relay_hidden=relay_hidden) == expected


# --- what one page tells -------------------------------------------------------------------------


def test_a_short_page_holds_the_whole_task_so_a_watched_comment_not_on_it_is_missing() -> None:
    page = [comment(10), comment(12, "<p>changed</p>"), comment(13, deleted=True)]
    seen = {i: watched(i) for i in (10, 11, 12, 13)}

    reading = read_page(seen, page, page_size=PAGE_SIZE, relay_hidden=False)

    assert [(w.comment_id, c.description) for w, c in reading.edited] == [(12, "<p>changed</p>")]
    assert [w.comment_id for w in reading.deleted] == [13]
    assert [w.comment_id for w in reading.missing] == [11]
    assert reading.unreached == 0


def test_a_full_page_covers_only_its_id_range_whatever_its_order() -> None:
    newest_first = [comment(i) for i in range(300, 200, -1)]  # 100 comments, 201..300
    seen = {i: watched(i) for i in (150, 250, 300)}
    del newest_first[50]  # 250 is not on the page

    reading = read_page(seen, [*newest_first, comment(201)], page_size=PAGE_SIZE, relay_hidden=False)

    assert [w.comment_id for w in reading.missing] == [250]  # 150 is older than the page: not judged
    assert (reading.edited, reading.deleted, reading.unreached) == ([], [], 0)


def test_a_full_page_of_the_oldest_comments_reaches_no_recent_one_and_says_so() -> None:
    oldest_first = [comment(i) for i in range(1, 101)]
    seen = {i: watched(i) for i in (50, 500, 501)}

    reading = read_page(seen, oldest_first, page_size=PAGE_SIZE, relay_hidden=False)

    assert (reading.edited, reading.deleted, reading.missing) == ([], [], [])
    assert reading.unreached == 2


def test_an_empty_page_means_every_watched_comment_is_missing() -> None:
    reading = read_page({7: watched(7)}, [], page_size=PAGE_SIZE, relay_hidden=False)

    assert [w.comment_id for w in reading.missing] == [7]


# --- which tasks, and what it costs ---------------------------------------------------------------

SELECTIONS: list[tuple[str, dict[int, float], dict[int, float], int, list[int]]] = [
    ("never read first, most recently active first", {1: 10.0, 2: 30.0, 3: 20.0}, {}, 5, [2, 3, 1]),
    ("least recently read first", {1: 10.0, 2: 30.0}, {1: 100.0, 2: 200.0}, 5, [1, 2]),
    ("never read before read", {1: 10.0, 2: 30.0}, {2: 100.0}, 5, [1, 2]),
    ("at most the allowance", {1: 10.0, 2: 30.0, 3: 20.0}, {}, 2, [2, 3]),
    ("the rest next time", {1: 10.0, 2: 30.0, 3: 20.0}, {2: 500.0, 3: 500.0}, 2, [1, 2]),
    ("nothing active", {}, {1: 5.0}, 3, []),
]


@named_cases(("active", "last_read", "allowance", "expected"), SELECTIONS)
def test_tasks_are_read_in_turn_within_the_allowance(
    active: dict[int, float], last_read: dict[int, float], allowance: int, expected: list[int]
) -> None:
    assert tasks_to_read(active, last_read, allowance) == expected


COSTS: list[tuple[int, float, int, float, int]] = [
    # tasks, interval (s), daily cap of the re-read, requests per pass, requests per day
    (1, 600, 5000, 34.7, 144),
    (10, 600, 5000, 34.7, 1_440),
    (34, 600, 5000, 34.7, 4_896),
    (100, 600, 5000, 34.7, 5_000),  # capped: each task read about every 29 minutes instead
    (100, 600, 20_000, 138.9, 14_400),
    (10, 60, 5000, 3.5, 5_000),
    (10, 3600, 5000, 208.3, 240),
    (10, 3, 5000, 0.2, 5_000),  # a read every six passes or so
]


@pytest.mark.parametrize(("tasks", "interval_s", "cap", "per_pass", "per_day"), COSTS)
def test_the_cost_in_requests_is_tasks_times_periods_held_to_the_cap(
    tasks: int, interval_s: float, cap: int, per_pass: float, per_day: int
) -> None:
    assert round(pass_share(cap, interval_s), 1) == per_pass
    assert requests_per_day(tasks, interval_s, cap) == per_day
    assert per_day <= cap


CREDITS: list[tuple[str, float, float, float]] = [
    ("a pass's share", 0.0, 34.7, 34.7),
    ("what is left is kept", 0.7, 34.7, 34.7),  # but never more than one pass's worth
    ("an overspent pass leaves less", -2.0, 34.7, 32.7),
    ("small shares add up to a request", 0.6, 0.2, 0.8),
    ("at most one request saved up", 0.9, 0.2, 1.0),
]


@named_cases(("credit", "share", "expected"), CREDITS)
def test_a_pass_spends_its_share_and_saves_up_no_burst(credit: float, share: float, expected: float) -> None:
    assert next_credit(credit, share) == pytest.approx(expected)


# --- the fold --------------------------------------------------------------------------------------


def test_only_bound_tasks_with_recent_comments_written_by_people_are_watched() -> None:
    watch = Watchlist()
    for event in (
        bound(-100, 1),
        bound(-200, 2),
        bound(-300, 3),
        added(11, task=1),
        added(12, task=1, ours=True),
        added(13, task=1, hidden=True),
        added(21, task=2, at=NOW - 30 * HOUR),
        added(41, task=4),  # task 4 is not bound
    ):
        watch.apply(event)

    since = NOW - ACTIVE_S
    assert watch.active_tasks(since) == {1: NOW - HOUR}
    assert set(watch.watched_in(1, since)) == {11}
    watch.forget_before(since)
    assert watch.current(21) is None
    assert watch.current(41) is None  # no group was shown it


def test_a_busy_task_keeps_only_the_page_a_pass_can_check() -> None:
    watch = Watchlist()
    watch.apply(bound(-100, 1))
    for comment_id in range(1, WATCHED_PER_TASK + 51):
        watch.apply(added(comment_id, task=1))
        watch.apply(added(100_000 + comment_id, task=1, ours=True))

    watched = watch.watched_in(1, NOW - ACTIVE_S)
    assert sorted(watched) == list(range(51, WATCHED_PER_TASK + 51))
    # Folded (ours too): the task's newest page, so reconciliation finds nothing missed on it.
    assert len(watch.folded_in(1)) == WATCHED_PER_TASK


def test_past_the_most_comments_watched_the_oldest_are_let_go_first() -> None:
    watch = Watchlist(max_watched=150)
    for task in (1, 2, 3):
        watch.apply(bound(-task, task))
    for comment_id in range(1, 301):
        watch.apply(added(comment_id, task=1 + comment_id % 3))

    since = NOW - ACTIVE_S
    kept = sorted(c for task in (1, 2, 3) for c in watch.watched_in(task, since))
    assert kept == list(range(151, 301))
    assert watch.current(150) is None


def test_bindings_follow_unbinding_and_moves() -> None:
    watch = Watchlist()
    moved = BindingMoved(
        **envelope("m"),
        old_chat_id=-1,
        chat_id=-1001,
        task_number=5,
        task_title="t",
    )
    unbound_old = TaskUnbound(
        **envelope("u"),
        chat_id=-2,
        task_number=6,
        unbound_by="telegram:1",
    )
    for event in (bound(-1, 5), bound(-2, 6), bound(-2, 7), unbound_old, moved):
        watch.apply(event)

    # -2 was rebound to 7 before the unbind of 6 arrived: the rebinding stands.
    assert watch.bound_tasks() == {5, 7}


def test_a_task_stays_bound_while_any_of_its_groups_is() -> None:
    watch = Watchlist()
    for event in (
        bound(-1, 5),
        bound(-2, 5),
        TaskUnbound(**envelope("u"), chat_id=-1, task_number=5, unbound_by="telegram:1"),
    ):
        watch.apply(event)
    assert watch.bound_tasks() == {5}
    watch.apply(TaskUnbound(**envelope("u2"), chat_id=-2, task_number=5, unbound_by="telegram:1"))
    assert watch.bound_tasks() == set()


def test_updates_and_deletions_change_what_is_watched() -> None:
    watch = Watchlist()
    watch.apply(bound(-100, 4821))
    watch.apply(added(11, "<p>one</p>"))
    watch.apply(added(11, "<p>repeat of the added event</p>"))
    update = PlanfixCommentUpdated(
        event_id="upd",
        occurred_at=datetime.now(UTC),
        correlation_id="corr-11",
        causation_id="x",
        task_number=4821,
        comment_id=11,
        text_html="<p>two</p>",
        author=PlanfixPerson(),
        files=[PlanfixFile(id=3)],
    )
    watch.apply(update)

    seen = watch.current(11)
    assert seen is not None
    assert (seen.fingerprint, seen.changes, seen.last_event_id) == (fingerprint("<p>two</p>", (3,)), 1, "upd")
    watch.apply(
        PlanfixCommentDeleted(
            **envelope("d"),
            task_number=4821,
            comment_id=11,
        )
    )
    assert watch.current(11) is None
    assert watch.active_tasks(0.0) == {}


# --- a pass against a stand-in Planfix --------------------------------------------------------------


class StandInPlanfix:
    """Serves a task's comments as a list page and one by one; counts the requests."""

    def __init__(self, comments: list[PlanfixComment]) -> None:
        self.comments = {c.id: c for c in comments}
        self.on_page: set[int] | None = None  # None: all of them
        self.daily_budget_remaining: int | None = None
        self.requests: list[str] = []
        self.unavailable_tasks: set[int] = set()
        self.unlisted_tasks: set[int] = set()

    async def list_comments(
        self,
        task_number: int,
        *,
        source_id: str | None = None,
        offset: int = 0,
        page_size: int = 100,
        newest_first: bool = False,
    ) -> list[PlanfixComment]:
        self.requests.append(f"list {task_number}" + (f" from {offset}" if offset else ""))
        if task_number in self.unavailable_tasks:
            raise PlanfixUnavailable("HTTP 503")
        if task_number in self.unlisted_tasks:
            raise TaskNotFound("code 1000")
        listed = [
            c
            for c in self.comments.values()
            if c.task_number == task_number and (self.on_page is None or c.id in self.on_page)
        ]
        return sorted(listed, key=lambda c: c.id, reverse=newest_first)[offset : offset + page_size]

    async def get_comment(self, comment_id: int, *, source_id: str | None = None) -> PlanfixComment:
        self.requests.append(f"get {comment_id}")
        if comment_id not in self.comments:
            raise CommentNotFound("code 5000")
        return self.comments[comment_id]


class RecordingPublisher(EventPublisher):
    """Stores what is published, dropping a repeated message id as JetStream does."""

    def __init__(self) -> None:
        self.stored: dict[str, tuple[str, Event]] = {}

    async def publish(self, event: Event, *, subject: str | None = None, msg_id: str | None = None) -> bool:
        msg_id, subject = msg_id or event.event_id, subject or subject_for(event)
        if msg_id in self.stored:
            return False
        self.stored[msg_id] = (subject, event)
        return True


def rereader(
    planfix: CommentSource, watch: Watchlist, publisher: RecordingPublisher | EventPublisher, **options: Any
) -> CommentRereader:
    """A pass every 10 min over the comments of the last ``ACTIVE_S``, at most 5000 reads a day,
    at ``NOW``; ``options``: the rest of ``CommentRereader``'s settings, or other values of these."""
    settings: dict[str, Any] = {
        "interval_s": 600,
        "active_s": ACTIVE_S,
        "max_per_day": 5000,
        "clock": lambda: NOW,
        **options,
    }
    return CommentRereader(
        planfix=planfix, publisher=publisher, watchlist=watch, source_id=SOURCE_ID, **settings
    )


async def test_a_pass_publishes_an_edit_and_a_deletion_once_and_a_repeat_nothing() -> None:
    planfix = StandInPlanfix([comment(11, "<p>edited</p>", files=(70001,)), comment(13)])
    watch = Watchlist()
    for event in (bound(-100, 4821), added(11), added(12), added(13)):
        watch.apply(event)
    publisher = RecordingPublisher()
    reread = rereader(planfix, watch, publisher)

    outcome = await reread.run_pass()

    assert (outcome.tasks_read, outcome.edits, outcome.deletions) == (1, 1, 1)
    # One list for the task, one look at the comment changed and at the one missing from it.
    assert planfix.requests == ["list 4821", "get 11", "get 12"]
    events = [event for _, event in publisher.stored.values()]
    [edit] = [e for e in events if isinstance(e, PlanfixCommentUpdated)]
    [deletion] = [e for e in events if isinstance(e, PlanfixCommentDeleted)]
    assert (edit.comment_id, edit.text_html, edit.files) == (
        11,
        "<p>edited</p>",
        [PlanfixFile(id=70001, name="f70001.pdf", size=10)],
    )
    assert (edit.correlation_id, edit.causation_id) == ("corr-11", event_id_for(planfix_comment_key(11)))
    assert deletion.comment_id == 12
    assert publisher.stored[planfix_comment_deleted_key(12)][0] == subjects.planfix_comment_deleted(4821)

    # Nothing folded yet (the stream would fold the events back in): the same keys, no new event.
    again = await reread.run_pass()
    assert (again.edits, again.deletions) == (0, 0)
    assert len(publisher.stored) == 2

    # Folded back, the next pass finds nothing to say and asks nothing more than the list.
    for published in events:
        watch.apply(published)
    planfix.requests.clear()
    last = await reread.run_pass()
    assert (last.edits, last.deletions, planfix.requests) == (0, 0, ["list 4821"])


async def test_the_same_text_again_after_other_edits_is_a_new_edit() -> None:
    planfix = StandInPlanfix([])
    publisher = RecordingPublisher()

    for text in ("<p>B</p>", "<p>A</p>", "<p>B</p>"):
        planfix.comments[11] = comment(11, text)
        # The fold the streams keep: the binding, the comment, and every edit published so far.
        watch = Watchlist()
        for event in (bound(-100, 4821), added(11, "<p>A</p>"), *(e for _, e in publisher.stored.values())):
            watch.apply(event)
        await rereader(planfix, watch, publisher).run_pass()

    texts = [e.text_html for _, e in publisher.stored.values() if isinstance(e, PlanfixCommentUpdated)]
    assert texts == ["<p>B</p>", "<p>A</p>", "<p>B</p>"]


async def test_an_update_folded_while_the_page_was_read_is_not_overwritten_by_the_older_page() -> None:
    watch = Watchlist()
    for event in (bound(-100, 4821), added(11, "<p>v1</p>")):
        watch.apply(event)
    publisher = RecordingPublisher()

    class Racing(StandInPlanfix):
        async def list_comments(self, task_number: int, **kwargs: Any) -> list[PlanfixComment]:
            page = await super().list_comments(task_number, **kwargs)
            # A scenario's notice was handled while our request was on its way.
            watch.apply(
                PlanfixCommentUpdated(
                    **envelope("webhook-edit"),
                    task_number=4821,
                    comment_id=11,
                    text_html="<p>v3</p>",
                    author=PlanfixPerson(),
                )
            )
            return page

    planfix = Racing([comment(11, "<p>v2</p>")])

    outcome = await rereader(planfix, watch, publisher).run_pass()

    assert (outcome.tasks_read, outcome.edits, publisher.stored) == (1, 0, {})


async def test_a_list_that_renders_a_comment_otherwise_does_not_rewrite_it() -> None:
    class Abridging(StandInPlanfix):
        async def list_comments(self, task_number: int, **kwargs: Any) -> list[PlanfixComment]:
            page = await super().list_comments(task_number, **kwargs)
            return [msgspec.structs.replace(c, description=c.description[:8]) for c in page]

    planfix = Abridging([comment(11, "<p>a long comment</p>")])
    watch = Watchlist()
    for event in (bound(-100, 4821), added(11, "<p>a long comment</p>")):
        watch.apply(event)
    publisher = RecordingPublisher()

    outcome = await rereader(planfix, watch, publisher).run_pass()

    assert planfix.requests == ["list 4821", "get 11"]
    assert (outcome.edits, publisher.stored) == (0, {})


async def test_a_pass_is_skipped_when_the_days_budget_is_nearly_spent() -> None:
    planfix = StandInPlanfix([comment(11, "<p>edited</p>")])
    planfix.daily_budget_remaining = DAILY_RESERVE - 1
    watch = Watchlist()
    for event in (bound(-100, 4821), added(11)):
        watch.apply(event)

    outcome = await rereader(planfix, watch, RecordingPublisher()).run_pass()

    assert outcome.skipped
    assert "budget" in outcome.skipped
    assert planfix.requests == []


async def test_a_task_planfix_cannot_serve_does_not_stop_the_others() -> None:
    planfix = StandInPlanfix([comment(11, "<p>edited</p>", task=1), comment(21, "<p>edited</p>", task=2)])
    planfix.unavailable_tasks = {1}
    watch = Watchlist()
    for event in (bound(-100, 1), bound(-200, 2), added(11, task=1, at=NOW - 60), added(21, task=2)):
        watch.apply(event)
    publisher = RecordingPublisher()

    outcome = await rereader(planfix, watch, publisher).run_pass()

    assert planfix.requests == ["list 1", "list 2", "get 21"]
    assert outcome.edits == 1
    assert [e.comment_id for _, e in publisher.stored.values() if isinstance(e, PlanfixCommentUpdated)] == [
        21
    ]


# --- the fold from real streams, and a pass against the fake Planfix --------------------------------


def test_the_fold_replays_the_streams_and_a_pass_against_the_fake_publishes_once(
    loop: LoopThread, nats_url: str, fake_planfix: FakePlanfix
) -> None:
    task = fake_planfix.add_task("Re-read")
    kept = fake_planfix.add_employee_comment(task, "<p>kept</p>", fire_webhook=False)
    edited = fake_planfix.add_employee_comment(task, "<p>first</p>", fire_webhook=False)
    gone = fake_planfix.add_employee_comment(task, "<p>gone soon</p>", fire_webhook=False)
    chat_id = -1009000000000 - next(_numbers)

    async def scenario() -> tuple[Any, Any, list[Any]]:
        broker = make_broker(nats_url, name="reread-test")
        await broker.connect()
        await ensure_streams(broker)
        publisher = EventPublisher(broker)
        await publisher.publish(
            bound(chat_id, task), subject=subjects.binding_bound(chat_id), msg_id=str(uuid.uuid4())
        )
        for comment_id, text in ((kept, "<p>kept</p>"), (edited, "<p>first</p>"), (gone, "<p>gone soon</p>")):
            await publisher.publish(
                added(comment_id, text, task=task, at=datetime.now(UTC).timestamp()),
                subject=subjects.planfix_comment_added(task),
                msg_id=f"test-reread:{uuid.uuid4()}",
            )
        watch = Watchlist()
        feed = WatchFeed(watch, active_s=ACTIVE_S)
        await feed.start(broker.connection.jetstream())
        try:
            assert set(watch.watched_in(task, 0.0)) == {kept, edited, gone}
            fake_planfix.edit_comment(edited, "<p>second</p>", fire_webhook=False)
            fake_planfix.delete_comment(gone, fire_webhook=False)
            async with PlanfixClient(base_url=fake_planfix.base_url, token=PLANFIX_TOKEN) as client:
                reread = rereader(client, watch, publisher, clock=time.time, catch_up=feed.catch_up)
                first = await reread.run_pass()
                second = await reread.run_pass()
            return first, second, [watch.current(c) for c in (kept, edited, gone)]
        finally:
            await feed.stop()
            await broker.stop()

    first, second, after = loop.run(scenario())

    assert (first.edits, first.deletions) == (1, 1)
    assert (second.edits, second.deletions) == (0, 0)
    # The second pass caught up with the first one's events before reading.
    assert after[1] is not None
    assert after[1].changes == 1
    assert after[2] is None
    events = [e for _, e in loop.run(read_stream_events(nats_url, f"planfix.comment.*.{task}"))]
    updates = [e for e in events if isinstance(e, PlanfixCommentUpdated)]
    assert [(e.comment_id, e.text_html) for e in updates] == [(edited, "<p>second</p>")]
    assert [e.comment_id for e in events if isinstance(e, PlanfixCommentDeleted)] == [gone]
