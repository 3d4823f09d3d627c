"""Catching up on what Planfix never told us: comments whose webhook never came.

A scenario request that keeps failing past Planfix's retries (about 2 h 45 min), or a scenario
switched off by mistake, would lose comments silently. So the re-read (``reread``) also lists the
comments of every bound task newer than its *mark*: the id up to which the task was checked,
kept per task in the ``PLANFIX_COMMENT_MARKS`` bucket. A comment above the mark that no
``PlanfixCommentAdded`` was folded for is carried the webhook way (fetched with ``GET /comment``,
stored under the same ``Nats-Msg-Id`` as the fetcher's, so a webhook that comes after all adds
nothing), oldest first, once it was seen missing for ``PLANFIX_RECONCILE_GRACE_S`` (a webhook
still on its way gets there first) and while no webhook notice waits for the fetcher (order).
Each one found is counted (``bridge_planfix_comments_reconciled_total``) and logged
(``comment_found_by_reconciliation``): it means webhooks are not arriving.

Limits: a task without a mark yet (bound before this version, or its mark lost) starts from its
newest comment, carrying nothing older; comments folded more than ``PLANFIX_REREAD_ACTIVE_H``
ago are not remembered, so a task left unread that long (a budget far too small for the tasks)
could see a comment above its mark carried twice; the relay's records drop that repeat.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import nats.errors
import nats.js.errors
import structlog

from bridge_lib.kvstore import read_entry
from bridge_lib.planfix import PlanfixComment

log = structlog.get_logger("planfix_gateway.reconcile")

# Pages of 100 read at most per task and pass, newest first, to reach back to its mark.
MAX_PAGES = 5


class Marks(Protocol):
    async def get(self, task_number: int) -> int | None: ...

    async def set(self, task_number: int, comment_id: int) -> None: ...


class MemoryMarks:
    """Marks kept in memory (tests, tools)."""

    def __init__(self, marks: Mapping[int, int] | None = None) -> None:
        self.marks: dict[int, int] = dict(marks or {})

    async def get(self, task_number: int) -> int | None:
        return self.marks.get(task_number)

    async def set(self, task_number: int, comment_id: int) -> None:
        self.marks[task_number] = comment_id


class BucketMarks:
    """Marks in a JetStream key-value bucket (one key per task), read once and then remembered:
    only the re-read's lease holder writes them."""

    def __init__(self, kv: Any) -> None:
        self._kv = kv
        self._known: dict[int, int | None] = {}

    async def get(self, task_number: int) -> int | None:
        if task_number not in self._known:
            value, _ = await read_entry(self._kv, _key(task_number))
            self._known[task_number] = _parse(value)
        return self._known[task_number]

    async def set(self, task_number: int, comment_id: int) -> None:
        if self._known.get(task_number) == comment_id:
            return
        try:
            await self._kv.put(_key(task_number), str(comment_id).encode())
        except (nats.errors.Error, nats.js.errors.Error, OSError) as error:
            # Not stored: the next pass checks from the old mark again (repeats are dropped).
            log.warning("reconcile_mark_not_stored", task_number=task_number, error=type(error).__name__)
            return
        self._known[task_number] = comment_id

    def forget(self) -> None:
        """Read the bucket again (another replica held the lease meanwhile)."""
        self._known.clear()


def _key(task_number: int) -> str:
    return f"task_{task_number}"


def _parse(value: bytes | None) -> int | None:
    try:
        return int(value.decode()) if value else None
    except ValueError:
        return None


# --- pure decisions ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Check:
    """What a task's newest comments say against its mark."""

    # Above the mark, never folded, a person's visible comment: carry these (oldest first).
    missed: list[PlanfixComment] = field(default_factory=list)
    # The mark once the missed ones are carried (everything up to it checked).
    new_mark: int | None = None


def check_comments(
    comments: Iterable[PlanfixComment],
    mark: int | None,
    *,
    folded: set[int] | frozenset[int],
    relay_hidden: bool,
) -> Check:
    """Compare the newest comments of a task (any order) with its mark and what was folded.

    Without a mark the task starts now: its newest comment becomes the mark, nothing is carried.
    """
    listed = sorted({comment.id: comment for comment in comments}.values(), key=lambda c: c.id)
    if not listed:
        return Check(new_mark=mark)
    newest = listed[-1].id
    if mark is None:
        return Check(new_mark=newest)
    missed = [
        comment
        for comment in listed
        if comment.id > mark
        and comment.id not in folded
        and not comment.is_deleted
        and not comment.source_object_id  # ours: the relay wrote it from the group
        and (relay_hidden or not comment.is_hidden)
    ]
    return Check(missed=missed, new_mark=max(mark, newest))


def mark_with_pending(new_mark: int | None, pending: Iterable[int]) -> int | None:
    """The mark to store while some missed comments wait for their grace: just below the oldest."""
    waiting = list(pending)
    if not waiting or new_mark is None:
        return new_mark
    return min(new_mark, min(waiting) - 1)


def due_tasks(
    bound: Iterable[int],
    active: Mapping[int, float],
    last_read: Mapping[int, float],
    *,
    now: float,
    interval_s: float,
    quiet_interval_s: float,
    hurried: set[int] | frozenset[int] = frozenset(),
) -> list[int]:
    """Which bound tasks a pass reads: active ones every pass, the rest every
    ``quiet_interval_s``, ``hurried`` ones (a missed comment waits) at once; never read first,
    then the least recently read, then the most recently active."""
    due = []
    for task in bound:
        period = interval_s if task in active else quiet_interval_s
        if task in hurried or is_due(last_read.get(task), now=now, period_s=period):
            due.append(task)
    return sorted(due, key=lambda task: (last_read.get(task, 0.0), -active.get(task, 0.0), task))


def is_due(last_read: float | None, *, now: float, period_s: float) -> bool:
    """Whether something last read at ``last_read`` (None: never) is to be read again: a pass
    comes every interval, give or take, so 10 % early still counts as due."""
    return last_read is None or now - last_read >= period_s * 0.9
