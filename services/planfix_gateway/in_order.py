"""A task's comments stored in the order Planfix numbered them, whatever order their news came in.

Planfix's scenario requests can fail (our gateway restarting, a proxy away) and are sent again
only 15 minutes later, behind newer comments. So a notice is not taken alone: the task's newest
comments are listed (one request, like the ``GET /comment`` it replaces) and every comment above
the last one stored for the task is stored, oldest first. A notice of a comment at or below that
one adds nothing and costs no request. Two carriers at once (replicas, reconciliation) are safe:
each stores in ascending order and a comment's ``Nats-Msg-Id`` is its own (``planfix_comment_key``),
so the second store of a comment is dropped by the stream. A batch of notices (``carry_task``)
reads each task once for all of its announced comments.

Assumed: the notice names the comment's own task (the README's template). A notice naming
another task falls back to fetching the comment alone, unless that task has a newer comment
kept, when it is taken for a late notice and dropped.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import structlog

from bridge_lib.eventbus import EventPublisher, TransientFailure
from bridge_lib.last_event import last_event
from bridge_lib.planfix import (
    CommentLister,
    PlanfixAuthError,
    PlanfixComment,
    PlanfixRejected,
    PlanfixUnavailable,
)
from contracts import subjects
from contracts.events import (
    Envelope,
    PlanfixCommentAdded,
    PlanfixCommentChange,
    PlanfixCommentWebhookReceived,
    PlanfixFile,
    PlanfixPerson,
    envelope_after,
    planfix_comment_key,
    root_envelope,
)
from contracts.subjects import PLANFIX_STREAM

log = structlog.get_logger("planfix_gateway.in_order")

# The first page is small: usually the last stored comment is among the few newest.
FIRST_PAGE = 10
PAGE_SIZE = 100
# Pages read at most to reach back to the last stored comment.
MAX_PAGES = 5

LastStored = Callable[[int], Awaitable[int | None]]

# How long a task's last stored comment, once read from the stream, is trusted without a read.
# Only another replica's stores make it stale (too low): the comments between are then listed
# and stored again, and dropped as repeats by their message ids (the stream knows them for a day).
LAST_STORED_TRUST_S = 60.0
# Tasks remembered at most (an int and a time each).
LAST_STORED_KEPT = 20_000


class LastStoredCache:
    """``last_stored_in`` read once per task per ``trust_s``, moved on in between by this
    replica's own stores (``stored``): a burst's batches skip a JetStream request per task, which
    was a tenth of the gateway's CPU per comment."""

    def __init__(
        self,
        read: LastStored,
        *,
        trust_s: float = LAST_STORED_TRUST_S,
        kept: int = LAST_STORED_KEPT,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._read = read
        self._trust_s = trust_s
        self._kept = kept
        self._clock = clock
        # task -> (newest comment id known stored, when the stream was last read for it)
        self._known: dict[int, tuple[int, float]] = {}

    async def __call__(self, task: int) -> int | None:
        known = self._known.get(task)
        if known is not None and self._clock() - known[1] < self._trust_s:
            return known[0]
        last = await self._read(task)
        if last is None:
            self._known.pop(task, None)
        else:
            self._keep(task, last, self._clock())
        return last

    def stored(self, task: int, comment_id: int) -> None:
        """This replica stored the comment (or found it stored): the task's last is at least it."""
        known = self._known.get(task)
        if known is None:
            self._keep(task, comment_id, self._clock())
        elif comment_id > known[0]:
            self._known[task] = (comment_id, known[1])

    def _keep(self, task: int, last: int, read_at: float) -> None:
        if task not in self._known and len(self._known) >= self._kept:
            now = self._clock()
            self._known = {t: k for t, k in self._known.items() if now - k[1] < self._trust_s}
            if len(self._known) >= self._kept:
                del self._known[next(iter(self._known))]  # the longest kept
        self._known[task] = (last, read_at)


async def last_stored_in(js: Any, task_number: int) -> int | None:
    """The id of the task's newest comment in the PLANFIX stream (None: none kept, or unreadable:
    then the announced comment is where the task starts)."""
    last = await last_event(js, PLANFIX_STREAM.name, subjects.planfix_comment_added(task_number))
    return last.event.comment_id if last is not None and isinstance(last.event, PlanfixCommentAdded) else None


def comments_to_carry(
    listed: Iterable[PlanfixComment], *, floor: int, relay_hidden: bool
) -> list[PlanfixComment]:
    """The listed comments to store, oldest first: above ``floor``, neither deleted nor hidden
    (unless hidden ones are relayed). The bridge's own are stored too: they are facts of the
    task, and the relay knows them as its own."""
    unique = {comment.id: comment for comment in listed}
    return [
        comment
        for comment_id, comment in sorted(unique.items())
        if comment_id > floor and not comment.is_deleted and (relay_hidden or not comment.is_hidden)
    ]


@dataclass(frozen=True)
class Reading:
    """What one read-back of a task is for: ``announced``, the notices of comments above the
    ``last`` one stored (None: none kept), by comment id, ascending (the first notice of each)."""

    last: int | None
    announced: dict[int, PlanfixCommentWebhookReceived]

    @property
    def floor(self) -> int:
        """How far back the task is listed: to the last stored comment or, with nothing of the
        task kept yet, from the lowest announced one on (older ones came before the bridge kept
        the task's news, or before it was bound)."""
        return self.last if self.last is not None else min(self.announced) - 1


def reading_of(notices: Iterable[PlanfixCommentWebhookReceived], last: int | None) -> Reading | None:
    """The read-back a task's notices call for, given the last comment stored for the task
    (None: nothing to read, every announced comment is stored already)."""
    announced: dict[int, PlanfixCommentWebhookReceived] = {}
    for notice in notices:
        if last is None or notice.comment_id > last:
            announced.setdefault(notice.comment_id, notice)
    if not announced:
        return None
    return Reading(last=last, announced=dict(sorted(announced.items())))


@dataclass(frozen=True)
class Carry:
    """A listed comment to store: ``named`` by ``notice`` (its story goes on), or else listed
    on the way to it (a story of its own, noted as found after ``notice``)."""

    comment: PlanfixComment
    notice: PlanfixCommentWebhookReceived
    named: bool


@dataclass(frozen=True)
class CarryPlan:
    """A task's read-back, decided: what to store (ascending comment id), what to fetch alone."""

    stores: tuple[Carry, ...]
    alone: tuple[PlanfixCommentWebhookReceived, ...]


def carry_plan(listed: list[PlanfixComment] | None, reading: Reading, *, relay_hidden: bool) -> CarryPlan:
    """What a task's read-back becomes: the announced comments the list does not show (None:
    unreadable) fetched alone; the listed comments above the floor of those it shows stored,
    oldest first (a list showing none of them is taken for another task's: nothing stored)."""
    shown_ids = {comment.id for comment in listed or ()}
    shown = {cid: notice for cid, notice in reading.announced.items() if cid in shown_ids}
    alone = tuple(notice for cid, notice in reading.announced.items() if cid not in shown_ids)
    if listed is None or not shown:
        return CarryPlan(stores=(), alone=alone)
    floor = reading.last if reading.last is not None else min(shown) - 1
    stores = []
    for comment in comments_to_carry(listed, floor=floor, relay_hidden=relay_hidden):
        named = shown.get(comment.id)
        if named is not None:
            stores.append(Carry(comment=comment, notice=named, named=True))
            continue
        # Found on the way to the nearest announced comment above it (or past the newest).
        above = [notice for cid, notice in shown.items() if cid > comment.id]
        stores.append(
            Carry(comment=comment, notice=above[0] if above else list(shown.values())[-1], named=False)
        )
    return CarryPlan(stores=tuple(stores), alone=alone)


@dataclass(frozen=True, kw_only=True, eq=False)
class InOrderCarrier:
    planfix: CommentLister
    publisher: EventPublisher
    source_id: str
    relay_hidden: bool
    last_stored: LastStored
    before_read: Callable[[], Awaitable[None]]
    # Told of each comment stored (``LastStoredCache.stored``).
    on_stored: Callable[[int, int], None] = lambda task, comment_id: None

    async def carry_announced(self, notice: PlanfixCommentWebhookReceived) -> bool:
        """Store the announced comment and every one before it not stored yet, in order. False
        when the task's list does not show it (another task's, or the list unreadable): the
        caller then fetches it alone."""
        return not await self.carry_task(notice.task_number, [notice])

    async def carry_task(
        self, task: int, notices: Sequence[PlanfixCommentWebhookReceived]
    ) -> list[PlanfixCommentWebhookReceived]:
        """Store the comments ``notices`` announced in ``task`` and every one before them not
        stored yet, in order, for one read of the last stored comment and one read-back. The
        notices whose comment the list does not show, to be fetched alone."""
        last = await self.last_stored(task)
        for late in notices:
            if last is not None and late.comment_id <= last:
                log.debug("comment_carried_before", comment_id=late.comment_id, last_stored=last)
        reading = reading_of(notices, last)
        if reading is None:
            return []
        listed = await self._read_back(task, reading.floor)
        plan = carry_plan(listed, reading, relay_hidden=self.relay_hidden)
        for carry in plan.stores:
            key = planfix_comment_key(carry.comment.id)
            envelope = (
                envelope_after(carry.notice, key)
                if carry.named
                else root_envelope(key, caused_by=f"listed-after:{carry.notice.event_id}")
            )
            await store_added(
                self.publisher,
                envelope,
                carry.comment,
                task=task,
                source_id=self.source_id,
                noticed_by="webhook",
            )
            self.on_stored(task, carry.comment.id)
        return list(plan.alone)

    async def _read_back(self, task: int, floor: int) -> list[PlanfixComment] | None:
        """The task's newest comments back to ``floor`` (None: the task could not be listed)."""
        comments: list[PlanfixComment] = []
        page_size = FIRST_PAGE
        for _ in range(MAX_PAGES):
            await self.before_read()
            try:
                page = await self.planfix.list_comments(
                    task,
                    source_id=self.source_id,
                    offset=len(comments),
                    page_size=page_size,
                    newest_first=True,
                )
            except PlanfixUnavailable as error:
                raise TransientFailure(str(error)) from error
            except PlanfixAuthError as error:
                raise TransientFailure(str(error)) from error
            except PlanfixRejected as error:
                # Gone, or not ours to list: the announced comment is fetched alone.
                log.info("comment_list_refused", task_number=task, error=str(error))
                return None
            comments += page
            if len(page) < page_size or min(comment.id for comment in page) <= floor:
                return comments
            page_size = PAGE_SIZE
        log.warning("comment_list_does_not_reach_the_last_stored", task_number=task, last_stored=floor)
        return comments


async def store_listed(
    publisher: EventPublisher, comments: list[PlanfixComment], *, task: int, source_id: str, noticed_by: str
) -> list[int]:
    """Store listed comments of a task, oldest first, each its own story (reconciliation decides
    which). The ids stored now (the others were stored before)."""
    stored = []
    for comment in sorted(comments, key=lambda comment: comment.id):
        envelope = root_envelope(planfix_comment_key(comment.id), caused_by=f"{noticed_by}:task/{task}")
        if await store_added(
            publisher, envelope, comment, task=task, source_id=source_id, noticed_by=noticed_by
        ):
            stored.append(comment.id)
    return stored


async def store_added(
    publisher: EventPublisher,
    envelope: Envelope,
    comment: PlanfixComment,
    *,
    task: int,
    source_id: str,
    noticed_by: str,
) -> bool:
    task_number = comment.task_number or task
    added = comment_added_as(envelope, comment, task_number=task_number, our_source_id=source_id)
    return await store(
        publisher,
        added,
        subject=subjects.planfix_comment_added(task_number),
        key=planfix_comment_key(comment.id),
        ours=added.source_object_id is not None,
        noticed_by=noticed_by,
    )


def comment_added_as(
    envelope: Envelope, comment: PlanfixComment, *, task_number: int, our_source_id: str
) -> PlanfixCommentAdded:
    """The comment's added event; its id comes from the comment (``planfix_comment_key``), so
    every path that stores it stores it once between them."""
    return PlanfixCommentAdded(
        **envelope,
        task_number=task_number,
        comment_id=comment.id,
        text_html=comment.description,
        author=PlanfixPerson(id=comment.owner_id, name=comment.owner_name),
        # Planfix shows sourceObjectId only to the sourceId that wrote it: present means ours.
        source_id=our_source_id if comment.source_object_id else None,
        source_object_id=comment.source_object_id,
        written_at=comment.written_at,
        is_hidden=comment.is_hidden,
        files=files_of(comment),
    )


async def store(
    publisher: EventPublisher, event: PlanfixCommentChange, *, subject: str, key: str, **shown: object
) -> bool:
    """Store a comment's event once per ``key`` (also for ``reread``); False when stored before."""
    stored = await publisher.publish(event, subject=subject, msg_id=key)
    log.info(
        "planfix_event_stored",
        event_type=event.tag,
        task_number=event.task_number,
        comment_id=event.comment_id,
        duplicate=not stored,
        **shown,
    )
    return stored


def files_of(comment: PlanfixComment) -> list[PlanfixFile]:
    return [PlanfixFile(id=file.id, name=file.name, size=file.size) for file in comment.files]
