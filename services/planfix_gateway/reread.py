"""Edits and deletions of Planfix comments noticed by re-reading, since no scenario announces them.

Every ``PLANFIX_REREAD_INTERVAL_MIN`` minutes one replica (lease ``planfix_reread``) reads a page
of the newest comments of each bound task active within ``PLANFIX_REREAD_ACTIVE_H`` hours,
compares each with what its group was shown (a ``Watchlist`` folded from BINDING and PLANFIX),
and publishes the ``PlanfixCommentUpdated`` or ``PlanfixCommentDeleted`` a notice would have
produced, within ``PLANFIX_REREAD_MAX_PER_DAY`` requests. Costs, keys and the fold:
docs/architecture.md.

With ``marks`` (the service's default) the same pass reconciles: every bound task is read, the
active ones each interval and the rest every ``PLANFIX_RECONCILE_QUIET_INTERVAL_MIN``, and
comments no webhook announced are carried (``reconcile``); with ``task_states`` too, each due
task's state is read at most once per ``PLANFIX_RECONCILE_QUIET_INTERVAL_MIN`` and a change no
scenario notice announced is stored as the notice would have stored it (``task_fetcher``).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import math
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

import msgspec
import structlog
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from bridge_lib import metrics
from bridge_lib.eventbus import EventPublisher
from bridge_lib.lease import Lease, LeaseLost
from bridge_lib.planfix import (
    CommentLister,
    CommentNotFound,
    DailyLimitReached,
    PlanfixComment,
    PlanfixError,
)
from contracts import subjects
from contracts.events import (
    BindingMoved,
    Envelope,
    PlanfixCommentAdded,
    PlanfixCommentDeleted,
    PlanfixCommentUpdated,
    PlanfixPerson,
    TaskBound,
    TaskUnbound,
    decode_event,
    envelope_in,
    planfix_comment_deleted_key,
    planfix_comment_reread_key,
)
from contracts.subjects import ALL_BINDING_EVENTS, ALL_PLANFIX_COMMENT_CHANGES, BINDING_STREAM, PLANFIX_STREAM
from services.planfix_gateway.fetcher import no_wait
from services.planfix_gateway.in_order import files_of, store, store_listed
from services.planfix_gateway.reconcile import (
    MAX_PAGES,
    Marks,
    check_comments,
    due_tasks,
    is_due,
    mark_with_pending,
)
from services.planfix_gateway.task_fetcher import ReadOutcome

log = structlog.get_logger("planfix_gateway.reread")

DAY_S = 24 * 3600.0
# The list endpoint's largest page: one request covers as many recent comments as it can.
PAGE_SIZE = 100
# Requests of the day left untouched by the re-read (of 20,000-100,000): live comments first.
DAILY_RESERVE = 1_000
LEASE_KEY = "planfix_reread"
LEASE_TTL_S = 60.0
# Comments confirmed one by one (GET /comment) per task and pass; the rest wait for the next.
MAX_CONFIRMS_PER_TASK = 5
# Comments watched per task: a pass reads a task's newest page, and a watched comment older than
# a full page is past what it can check (``read_page``), so keeping it would cost memory for
# nothing (a busy task would otherwise hold a day of comments).
WATCHED_PER_TASK = PAGE_SIZE

Group = tuple[int, int | None]


class CommentSource(CommentLister, Protocol):
    """The Planfix calls the re-read makes (``bridge_lib.planfix.PlanfixClient``)."""

    daily_budget_remaining: int | None

    async def get_comment(self, comment_id: int, *, source_id: str | None = None) -> PlanfixComment: ...


class TaskStates(Protocol):
    """Reads a task's state and stores it when it changed (``task_fetcher.TaskFetcher``)."""

    async def reconcile(self, task_number: int) -> ReadOutcome: ...


class Watched(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """What the group was last shown of one comment: a fingerprint, not the text."""

    comment_id: int
    task_number: int
    fingerprint: str
    relayed_at: float
    correlation_id: str
    # The event that set this content (the comment's added event, or its last update).
    last_event_id: str
    # Updates seen since it was added: part of the next edit's key (A -> B -> A -> B).
    changes: int = 0


def fingerprint(text_html: str, file_ids: Iterable[int]) -> str:
    """A short hash of what the group shows of a comment: its text and which files it has."""
    files = ",".join(str(file_id) for file_id in sorted(file_ids))
    return hashlib.sha256(f"{text_html}\x00{files}".encode()).hexdigest()[:16]


def comment_fingerprint(comment: PlanfixComment) -> str:
    return fingerprint(comment.description, (file.id for file in comment.files))


# --- pure decisions ------------------------------------------------------------------------------

Verdict = Literal["same", "edited", "deleted"]


def verdict(watched: Watched, now: PlanfixComment | None, *, relay_hidden: bool) -> Verdict:
    """What happened to a watched comment, given what Planfix shows now (None: not found)."""
    if now is None or now.is_deleted:
        return "deleted"
    if now.source_object_id or (now.is_hidden and not relay_hidden):
        # Ours after all, or hidden now: the fetcher does not carry those either.
        return "same"
    return "edited" if comment_fingerprint(now) != watched.fingerprint else "same"


@dataclass(frozen=True)
class PageReading:
    edited: list[tuple[Watched, PlanfixComment]] = field(default_factory=list)
    deleted: list[Watched] = field(default_factory=list)
    # Inside the range the page covers but not on it: deleted, or hidden from the list; one
    # GET /comment each tells.
    missing: list[Watched] = field(default_factory=list)
    # Newer than every comment of a full page: the list did not read newest-first.
    unreached: int = 0


def read_page(
    watched: Mapping[int, Watched], page: Sequence[PlanfixComment], *, page_size: int, relay_hidden: bool
) -> PageReading:
    """Compare a page of a task's comments with what its groups were shown.

    A page shorter than ``page_size`` holds every comment of the task; a full one covers the ids
    from its lowest to its highest (comment ids grow with time), whatever order it came in.
    """
    on_page = {comment.id: comment for comment in page}
    full = len(page) >= page_size
    low, high = (min(on_page), max(on_page)) if on_page else (0, 0)
    edited: list[tuple[Watched, PlanfixComment]] = []
    deleted: list[Watched] = []
    missing: list[Watched] = []
    unreached = 0
    for comment_id, seen in sorted(watched.items()):
        now = on_page.get(comment_id)
        if now is None:
            if not full or low <= comment_id <= high:
                missing.append(seen)
            elif comment_id > high:
                unreached += 1
            continue
        match verdict(seen, now, relay_hidden=relay_hidden):
            case "edited":
                edited.append((seen, now))
            case "deleted":
                deleted.append(seen)
            case "same":
                pass
    return PageReading(edited=edited, deleted=deleted, missing=missing, unreached=unreached)


def tasks_to_read(active: Mapping[int, float], last_read: Mapping[int, float], allowance: int) -> list[int]:
    """Which tasks this pass reads: least recently read first (never read: first of all), then
    the most recently active; at most ``allowance``."""
    order = sorted(active, key=lambda task: (last_read.get(task, 0.0), -active[task], task))
    return order[: max(0, allowance)]


def pass_share(max_per_day: int, interval_s: float) -> float:
    """Requests one pass may make, on average, so that a day's passes stay within ``max_per_day``
    (a fraction below 1 means a read every few passes)."""
    return max_per_day * interval_s / DAY_S


def next_credit(credit: float, share: float) -> float:
    """The requests a pass may make: what is left (or overspent) plus this pass's share, never
    more than one pass's worth (or one request), so that idle passes save up no burst."""
    return min(credit + share, max(1.0, share))


def requests_per_day(tasks: int, interval_s: float, max_per_day: int) -> int:
    """What re-reading ``tasks`` active tasks costs a day (without the rare confirmations)."""
    return math.floor(min(tasks * DAY_S / interval_s, max_per_day))


# --- the fold ---------------------------------------------------------------------------------------


class Watchlist:
    """Bound tasks and the recently relayed comments, folded from BINDING and PLANFIX events."""

    def __init__(self, *, relay_hidden: bool = False, max_watched: int = 20_000) -> None:
        """``max_watched``: comments watched at most, the oldest let go first
        (``PLANFIX_REREAD_WATCH_MAX``); twice that many are remembered as folded."""
        self._relay_hidden = relay_hidden
        self._max_watched = max_watched
        self._task_by_group: dict[Group, int] = {}
        # Bound task -> how many groups it is bound to: "is this task bound" for every comment
        # without a walk over all the groups (10,000 of them at scale).
        self._groups_of_task: Counter[int] = Counter()
        self._comments: dict[int, Watched] = {}
        self._by_task: dict[int, set[int]] = {}
        # Every comment of a bound task an added event was folded for (ours and hidden too), and
        # when: reconciliation carries only the others. Its newest page per task is enough: one
        # let go and listed again is stored again under its key, which JetStream drops as a
        # duplicate for a day (the active window's length by default).
        # Both dicts are in the order comments came (the stream's): the first is the oldest.
        self._folded: dict[int, tuple[int, float]] = {}
        self._folded_by_task: dict[int, set[int]] = {}

    def apply(self, event: Any) -> None:
        if isinstance(event, TaskBound):
            self._bind((event.chat_id, event.thread_id), event.task_number)
        elif isinstance(event, TaskUnbound):
            group = (event.chat_id, event.thread_id)
            # Only the binding that was removed: a later rebind to another task stands.
            if self._task_by_group.get(group) == event.task_number:
                self._unbind(group)
        elif isinstance(event, BindingMoved):
            self._unbind((event.old_chat_id, event.thread_id))
            self._bind((event.chat_id, event.thread_id), event.task_number)
        elif isinstance(event, PlanfixCommentAdded):
            self._added(event)
        elif isinstance(event, PlanfixCommentUpdated):
            seen = self._comments.get(event.comment_id)
            if seen is not None:
                self._comments[event.comment_id] = msgspec.structs.replace(
                    seen,
                    fingerprint=fingerprint(event.text_html, (file.id for file in event.files)),
                    last_event_id=event.event_id,
                    changes=seen.changes + 1,
                )
        elif isinstance(event, PlanfixCommentDeleted):
            self._forget(event.comment_id)

    def _bind(self, group: Group, task_number: int) -> None:
        self._unbind(group)
        self._task_by_group[group] = task_number
        self._groups_of_task[task_number] += 1

    def _unbind(self, group: Group) -> None:
        task_number = self._task_by_group.pop(group, None)
        if task_number is not None:
            self._groups_of_task[task_number] -= 1
            if self._groups_of_task[task_number] <= 0:
                del self._groups_of_task[task_number]

    def _added(self, event: PlanfixCommentAdded) -> None:
        if event.task_number in self._groups_of_task and event.comment_id not in self._folded:
            self._folded[event.comment_id] = (event.task_number, event.occurred_at.timestamp())
            folded = self._folded_by_task.setdefault(event.task_number, set())
            folded.add(event.comment_id)
            if len(folded) > WATCHED_PER_TASK:
                self._unfold(min(folded))
            if len(self._folded) > 2 * self._max_watched:
                self._unfold(next(iter(self._folded)))
        ours = event.source_object_id is not None or event.source_id is not None
        if ours or (event.is_hidden and not self._relay_hidden) or event.comment_id in self._comments:
            return
        if event.task_number not in self._groups_of_task:
            # No group was shown it: nothing to keep in step (and an account's other tasks cost
            # no memory). Bindings are folded first (``WatchFeed.start``), then followed live.
            return
        self._comments[event.comment_id] = Watched(
            comment_id=event.comment_id,
            task_number=event.task_number,
            fingerprint=fingerprint(event.text_html, (file.id for file in event.files)),
            relayed_at=event.occurred_at.timestamp(),
            correlation_id=event.correlation_id,
            last_event_id=event.event_id,
        )
        watched = self._by_task.setdefault(event.task_number, set())
        watched.add(event.comment_id)
        if len(watched) > WATCHED_PER_TASK:
            self._forget(min(watched))
        if len(self._comments) > self._max_watched:
            self._forget(next(iter(self._comments)))

    def _forget(self, comment_id: int) -> None:
        seen = self._comments.pop(comment_id, None)
        if seen is not None:
            ids = self._by_task.get(seen.task_number, set())
            ids.discard(comment_id)
            if not ids:
                self._by_task.pop(seen.task_number, None)

    def _unfold(self, comment_id: int) -> None:
        task, _ = self._folded.pop(comment_id)
        ids = self._folded_by_task.get(task, set())
        ids.discard(comment_id)
        if not ids:
            self._folded_by_task.pop(task, None)

    def forget_before(self, since: float) -> None:
        """Stop watching comments relayed before ``since`` (memory stays a window's worth)."""
        for comment_id in [c for c, seen in self._comments.items() if seen.relayed_at < since]:
            self._forget(comment_id)
        for comment_id in [c for c, (_, at) in self._folded.items() if at < since]:
            self._unfold(comment_id)

    def folded_in(self, task_number: int) -> frozenset[int]:
        """The comments of the task whose added event was folded (within the active window)."""
        return frozenset(self._folded_by_task.get(task_number, ()))

    def bound_tasks(self) -> set[int]:
        return set(self._groups_of_task)

    def active_tasks(self, since: float) -> dict[int, float]:
        """Bound tasks with a comment relayed since ``since``: task -> its latest such comment."""
        bound = self.bound_tasks()
        active: dict[int, float] = {}
        for task, ids in self._by_task.items():
            if task in bound:
                latest = max(self._comments[c].relayed_at for c in ids)
                if latest >= since:
                    active[task] = latest
        return active

    def watched_in(self, task_number: int, since: float) -> dict[int, Watched]:
        return {
            c: self._comments[c]
            for c in self._by_task.get(task_number, ())
            if self._comments[c].relayed_at >= since
        }

    def current(self, comment_id: int) -> Watched | None:
        return self._comments.get(comment_id)


class WatchFeed:
    """Keeps a ``Watchlist`` folded from the streams: replays them at start, then follows them."""

    def __init__(self, watchlist: Watchlist, *, active_s: float) -> None:
        self._watchlist = watchlist
        self._active_s = active_s
        self._subscriptions: list[Any] = []
        self._applied: dict[int, int] = {}

    async def start(self, js: Any, timeout_s: float = 60.0) -> None:
        self._applied = {}
        first = await _first_seq_since(
            js, PLANFIX_STREAM.name, ALL_PLANFIX_COMMENT_CHANGES, time.time() - self._active_s
        )
        # Bindings first, caught up, so that each comment replayed next finds its task's binding.
        bindings = await self._follow(js, BINDING_STREAM.name, ALL_BINDING_EVENTS, ConsumerConfig())
        self._subscriptions = [bindings]
        await self.catch_up(timeout_s)
        # By sequence, not by time: an ordered consumer that restarts after a gap asks for a start
        # sequence, which the server refuses beside a start time.
        self._subscriptions.append(
            await self._follow(
                js,
                PLANFIX_STREAM.name,
                ALL_PLANFIX_COMMENT_CHANGES,
                ConsumerConfig(deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=first),
            )
        )
        await self.catch_up(timeout_s)

    async def _follow(self, js: Any, stream: str, subject: str, config: ConsumerConfig) -> Any:
        index = len(self._applied)
        self._applied[index] = 0

        async def on_message(msg: Any) -> None:
            try:
                self._watchlist.apply(decode_event(msg.data))
            except (msgspec.DecodeError, msgspec.ValidationError) as error:
                log.warning("undecodable_event_skipped", subject=msg.subject, error=str(error))
            self._applied[index] = msg.metadata.sequence.stream

        return await js.subscribe(subject, stream=stream, ordered_consumer=True, cb=on_message, config=config)

    async def catch_up(self, timeout_s: float = 30.0) -> None:
        """Wait until every event stored by now has been folded (TimeoutError after ``timeout_s``)."""
        async with asyncio.timeout(timeout_s):
            for index, subscription in enumerate(self._subscriptions):
                while True:
                    info = await subscription.consumer_info()
                    delivered = info.delivered
                    nothing_delivered = delivered is None or not delivered.consumer_seq
                    if not info.num_pending and (
                        nothing_delivered or self._applied[index] >= (delivered.stream_seq or 0)
                    ):
                        break
                    await asyncio.sleep(0.05)

    async def stop(self) -> None:
        for subscription in self._subscriptions:
            with contextlib.suppress(Exception):
                await subscription.unsubscribe()


# --- the passes ------------------------------------------------------------------------------------


@dataclass
class PassOutcome:
    tasks_read: int = 0
    requests: int = 0
    edits: int = 0
    deletions: int = 0
    # Comments no webhook announced, carried by reconciliation.
    found: int = 0
    # Task states read, and the changes among them no scenario notice announced.
    states_read: int = 0
    task_changes: int = 0
    skipped: str | None = None


async def webhooks_drained() -> bool:
    """A ``webhooks_drained`` that sees no queue."""
    return True


@dataclass(kw_only=True, eq=False)
class CommentRereader:
    planfix: CommentSource
    publisher: EventPublisher
    watchlist: Watchlist
    source_id: str
    interval_s: float
    active_s: float
    max_per_day: int
    relay_hidden: bool = False
    before_read: Callable[[], Awaitable[None]] = no_wait
    catch_up: Callable[[], Awaitable[None]] = no_wait
    clock: Callable[[], float] = time.time
    # Reconciliation (off without ``marks``).
    marks: Marks | None = None
    quiet_interval_s: float = 3600.0
    grace_s: float = 60.0
    webhooks_drained: Callable[[], Awaitable[bool]] = webhooks_drained
    monotonic: Callable[[], float] = time.monotonic
    task_states: TaskStates | None = None
    # What a pass may still spend (``next_credit``).
    _credit: float = field(default=0.0, init=False)
    _last_read: dict[int, float] = field(default_factory=dict, init=False)
    _told_unreached: set[int] = field(default_factory=set, init=False)
    # Comment id -> (task, when first seen missing).
    _missing_since: dict[int, tuple[int, float]] = field(default_factory=dict, init=False)
    # Task states (reconciliation only): task -> when its state was last read by a pass.
    _state_read: dict[int, float] = field(default_factory=dict, init=False)

    @property
    def requests_per_pass(self) -> float:
        return pass_share(self.max_per_day, self.interval_s)

    async def run(self, lease: Lease) -> None:
        """Re-read every interval while holding the lease; stand by while another replica does."""
        try:
            await self._run(lease)
        finally:
            # Handed over at once: a restarted replica need not wait for the lease to lapse.
            with contextlib.suppress(Exception):
                await asyncio.wait_for(lease.release(), 2.0)

    async def _run(self, lease: Lease) -> None:
        while True:
            try:
                await lease.acquire()
            except Exception as error:
                log.warning("lease_acquire_failed", error=f"{type(error).__name__}: {error}")
                await asyncio.sleep(1.0)
                continue
            keep = asyncio.create_task(lease.keep(), name="reread-lease")
            work = asyncio.create_task(self._passes(), name="reread-passes")
            try:
                done, _ = await asyncio.wait({keep, work}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in (keep, work):
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError, LeaseLost):
                        await task
            for task in done:
                failure = None if task.cancelled() else task.exception()
                if failure is not None and not isinstance(failure, LeaseLost):
                    log.warning("reread_restarting", error=f"{type(failure).__name__}: {failure}")
            await asyncio.sleep(1.0)

    async def _passes(self) -> None:
        # The first pass one interval after start: what was just folded needs no re-read yet.
        while True:
            started = time.monotonic()
            await asyncio.sleep(self.interval_s)
            try:
                outcome = await self.run_pass()
            except Exception as error:  # NATS or Planfix away: the next pass tries again
                log.warning("reread_pass_failed", error=f"{type(error).__name__}: {error}")
                continue
            log.info(
                "reread_pass_done",
                tasks_read=outcome.tasks_read,
                requests=outcome.requests,
                edits=outcome.edits,
                deletions=outcome.deletions,
                found=outcome.found,
                states_read=outcome.states_read,
                task_changes=outcome.task_changes,
                skipped=outcome.skipped,
                took_s=round(time.monotonic() - started - self.interval_s, 1),
            )

    async def run_pass(self) -> PassOutcome:
        """Re-read the tasks due now and publish what changed; what one pass did."""
        outcome = PassOutcome()
        remaining = self.planfix.daily_budget_remaining
        if remaining is not None and remaining < DAILY_RESERVE:
            outcome.skipped = f"daily budget low ({remaining} left)"
            return outcome
        await self.catch_up()
        since = self.clock() - self.active_s
        self.watchlist.forget_before(since)
        active = self.watchlist.active_tasks(since)
        bound = self.watchlist.bound_tasks()
        kept = set(active) if self.marks is None else bound
        for reads in (self._last_read, self._state_read):
            for task in [task for task in reads if task not in kept]:
                del reads[task]
        self._credit = next_credit(self._credit, self.requests_per_pass)
        allowance = math.floor(self._credit)
        if self.marks is None:
            tasks = tasks_to_read(active, self._last_read, allowance)
            drained = False
        else:
            tasks = self._due(active, bound)
            # A missed comment is carried only while no webhook notice waits for the fetcher: a
            # notice of an older comment would otherwise come after it.
            drained = await self.webhooks_drained()
        for task in tasks:
            if outcome.requests >= allowance:
                break
            try:
                await self._reread(task, since, outcome, drained=drained)
                await self._read_state(task, outcome, allowance)
            except DailyLimitReached:
                outcome.skipped = "daily limit reached"
                break
            except PlanfixError as error:
                # Planfix away, the task gone or no longer readable: the other tasks still go.
                log.warning("reread_task_failed", task_number=task, error=str(error))
            self._last_read[task] = self.clock()
        # Confirmations may overspend a little: the next pass has that much less.
        self._credit -= outcome.requests
        return outcome

    def _due(self, active: Mapping[int, float], bound: set[int]) -> list[int]:
        now = self.monotonic()
        for comment_id, (task, _) in list(self._missing_since.items()):
            if task not in bound:
                del self._missing_since[comment_id]
        hurried = {task for task, first in self._missing_since.values() if now - first >= self.grace_s}
        return due_tasks(
            bound,
            active,
            self._last_read,
            now=self.clock(),
            interval_s=self.interval_s,
            quiet_interval_s=self.quiet_interval_s,
            hurried=hurried,
        )

    async def _reread(self, task: int, since: float, outcome: PassOutcome, *, drained: bool = False) -> None:
        # What the group was shown, taken before the read: an update folded while we read is
        # newer than our page, and must not be overwritten by it (see ``_still``).
        snapshot = self.watchlist.watched_in(task, since)
        if not snapshot and self.marks is None:
            return
        await self.before_read()
        outcome.requests += 1
        outcome.tasks_read += 1
        page = await self.planfix.list_comments(
            task, source_id=self.source_id, page_size=PAGE_SIZE, newest_first=True
        )
        if snapshot:
            await self._edits_and_deletions(task, snapshot, page, outcome)
        if self.marks is not None:
            await self._reconcile(task, page, outcome, drained=drained)

    async def _read_state(self, task: int, outcome: PassOutcome, allowance: int) -> None:
        """Read the task's state if a quiet interval passed since the last pass read it (one
        request): a change no scenario notice announced is stored (``TaskFetcher.reconcile``)."""
        if self.task_states is None or self.marks is None or outcome.requests >= allowance:
            return
        now = self.clock()
        if not is_due(self._state_read.get(task), now=now, period_s=self.quiet_interval_s):
            return
        self._state_read[task] = now
        outcome.requests += 1
        outcome.states_read += 1
        if await self.task_states.reconcile(task) == "stored":
            outcome.task_changes += 1

    async def _edits_and_deletions(
        self, task: int, snapshot: dict[int, Watched], page: list[PlanfixComment], outcome: PassOutcome
    ) -> None:
        reading = read_page(snapshot, page, page_size=PAGE_SIZE, relay_hidden=self.relay_hidden)
        if reading.unreached and task not in self._told_unreached:
            # Once per task: the order of the list does not change from pass to pass.
            self._told_unreached.add(task)
            log.warning(
                "reread_page_misses_recent_comments",
                task_number=task,
                comments=reading.unreached,
                hint="the comment list did not come newest-first; edits of these go unnoticed",
            )
        for seen in reading.deleted:
            if self._still(seen):
                outcome.deletions += await self._publish_deletion(seen)
        # An edit seen in the list is confirmed by the read the comment was carried from
        # (GET /comment/{id}): a list that renders a comment otherwise must not rewrite it.
        to_confirm = [seen for seen, _ in reading.edited] + reading.missing
        for seen in to_confirm[:MAX_CONFIRMS_PER_TASK]:
            await self.before_read()
            outcome.requests += 1
            confirmed = await self._confirm(seen.comment_id)
            if not self._still(seen):
                continue
            match verdict(seen, confirmed, relay_hidden=self.relay_hidden):
                case "deleted":
                    outcome.deletions += await self._publish_deletion(seen)
                case "edited" if confirmed is not None:
                    outcome.edits += await self._publish_edit(seen, confirmed)
                case _:
                    pass

    async def _reconcile(
        self, task: int, page: list[PlanfixComment], outcome: PassOutcome, *, drained: bool
    ) -> None:
        """Carry the task's comments above its mark that no webhook announced (``reconcile``)."""
        assert self.marks is not None
        mark = await self.marks.get(task)
        comments = list(page)
        offset = len(page)
        while mark is not None and len(comments) == offset and offset % PAGE_SIZE == 0 and offset:
            if min(c.id for c in comments) <= mark:
                break
            if offset >= MAX_PAGES * PAGE_SIZE:
                log.warning("reconcile_pages_do_not_reach_the_mark", task_number=task, mark=mark)
                break
            await self.before_read()
            outcome.requests += 1
            comments += await self.planfix.list_comments(
                task, source_id=self.source_id, offset=offset, page_size=PAGE_SIZE, newest_first=True
            )
            offset += PAGE_SIZE
        check = check_comments(
            comments, mark, folded=self.watchlist.folded_in(task), relay_hidden=self.relay_hidden
        )
        missed_ids = {comment.id for comment in check.missed}
        for comment_id, (of_task, _) in list(self._missing_since.items()):
            if of_task == task and comment_id not in missed_ids:
                del self._missing_since[comment_id]  # its webhook came after all
        now = self.monotonic()
        waiting: list[int] = []
        due: list[PlanfixComment] = []
        for comment in check.missed:  # oldest first; one still in its grace holds the newer ones
            first = self._missing_since.setdefault(comment.id, (task, now))[1]
            if waiting or not drained or now - first < self.grace_s:
                waiting.append(comment.id)
            else:
                due.append(comment)
                del self._missing_since[comment.id]
        if due:
            found = await store_listed(
                self.publisher, due, task=task, source_id=self.source_id, noticed_by="reconcile"
            )
            for comment_id in found:
                metrics.PLANFIX_COMMENTS_RECONCILED.inc()
                log.warning(
                    "comment_found_by_reconciliation",
                    task_number=task,
                    comment_id=comment_id,
                    hint="no webhook announced it: check the Planfix scenario and the webhook URL",
                )
            outcome.found += len(found)
        new_mark = mark_with_pending(check.new_mark if comments else (mark or 0), waiting)
        if new_mark is not None:
            await self.marks.set(task, new_mark)

    def _still(self, seen: Watched) -> bool:
        return self.watchlist.current(seen.comment_id) == seen

    async def _confirm(self, comment_id: int) -> PlanfixComment | None:
        try:
            return await self.planfix.get_comment(comment_id, source_id=self.source_id)
        except CommentNotFound:
            return None

    async def _publish_edit(self, seen: Watched, now: PlanfixComment) -> int:
        key = planfix_comment_reread_key(seen.comment_id, seen.changes, comment_fingerprint(now))
        updated = PlanfixCommentUpdated(
            **_envelope(seen, key),
            task_number=now.task_number or seen.task_number,
            comment_id=seen.comment_id,
            text_html=now.description,
            author=PlanfixPerson(id=now.owner_id, name=now.owner_name),
            files=files_of(now),
        )
        subject = subjects.planfix_comment_updated(updated.task_number)
        return int(await store(self.publisher, updated, subject=subject, key=key, noticed_by="reread"))

    async def _publish_deletion(self, seen: Watched) -> int:
        key = planfix_comment_deleted_key(seen.comment_id)
        deleted = PlanfixCommentDeleted(
            **_envelope(seen, key), task_number=seen.task_number, comment_id=seen.comment_id
        )
        subject = subjects.planfix_comment_deleted(seen.task_number)
        return int(await store(self.publisher, deleted, subject=subject, key=key, noticed_by="reread"))


def _envelope(seen: Watched, key: str) -> Envelope:
    # In the comment's story (bridge trace follows it), caused by the content it replaces.
    return envelope_in(key, correlation_id=seen.correlation_id, causation_id=seen.last_event_id)


async def _first_seq_since(js: Any, stream: str, subject: str, since: float) -> int:
    """The stream sequence of the first message on ``subject`` stored at or after ``since``
    (or the next one to come): a consumer created by start time reports the one before it."""
    probe = await js.add_consumer(
        stream,
        ConsumerConfig(
            filter_subject=subject,
            deliver_policy=DeliverPolicy.BY_START_TIME,
            opt_start_time=datetime.fromtimestamp(max(0.0, since), UTC),
            ack_policy=AckPolicy.NONE,
            inactive_threshold=30.0,
            mem_storage=True,
        ),
    )
    with contextlib.suppress(Exception):  # ephemeral: the server drops it anyway once inactive
        await js.delete_consumer(stream, probe.name)
    delivered = probe.delivered.stream_seq if probe.delivered is not None else 0
    return int(delivered or 0) + 1
