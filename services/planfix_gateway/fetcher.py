"""The JetStream side: for each stored webhook notice, fetch the comment and publish what happened.

Fetching here and not in the HTTP handler keeps the webhook answer fast and lets an outage of
the Planfix API wait in the stream: the notice is redelivered until the fetch works. The notices
are read in ordered batches (``bridge_lib.ordered_batches``, one replica at a time): a burst of
comments costs one read-back per task, not one per comment.

* ``comment.added`` -> ``PlanfixCommentAdded`` (text, author, files), once per comment, each
  task's in the order Planfix numbered them (``in_order``: a late notice adds nothing).
* ``comment.updated`` -> ``PlanfixCommentUpdated`` with the content as it is now; one per
  notice (a repeated notice only repeats an edit to the same text, which changes nothing).
* ``comment.deleted`` -> ``PlanfixCommentDeleted``, once per comment, and only when Planfix
  confirms it: the comment is gone or marked deleted. A notice about a comment that is still
  there is logged and dropped, so a wrong scenario cannot wipe messages from a group.

Planfix's help pages show no scenario event for an edited or deleted comment, so the last two
arrive only where an operator can send them; otherwise ``reread`` notices edits and deletions.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import structlog

from bridge_lib.eventbus import Delivery, EventPublisher, PermanentFailure, TransientFailure
from bridge_lib.health import consumer_ref
from bridge_lib.lease import Lease
from bridge_lib.ordered_batches import Handlers, OrderedBatches
from bridge_lib.planfix import (
    CommentNotFound,
    PlanfixAuthError,
    PlanfixClient,
    PlanfixComment,
    PlanfixRejected,
    PlanfixUnavailable,
)
from contracts import subjects
from contracts.events import (
    PlanfixCommentAction,
    PlanfixCommentAdded,
    PlanfixCommentDeleted,
    PlanfixCommentUpdated,
    PlanfixCommentWebhookReceived,
    PlanfixPerson,
    derived_key,
    envelope_after,
    planfix_comment_deleted_key,
    planfix_comment_key,
)
from contracts.subjects import FETCHER_COMMENT_WEBHOOKS
from services.planfix_gateway.in_order import InOrderCarrier, comment_added_as, files_of, store

log = structlog.get_logger("planfix_gateway.fetcher")

DURABLE = FETCHER_COMMENT_WEBHOOKS.durable
# The durable consumer as health checks name it, known before the router is built.
CONSUMER = consumer_ref(FETCHER_COMMENT_WEBHOOKS)


async def no_wait() -> None:
    """A ``before_fetch`` that waits for nothing."""


@dataclass(frozen=True, kw_only=True, eq=False)
class CommentFetcher:
    planfix: PlanfixClient
    publisher: EventPublisher
    source_id: str
    relay_hidden: bool = False
    # Webhook answers come first: they hold Planfix's scenario queue, a fetch holds nothing.
    before_fetch: Callable[[], Awaitable[None]] = no_wait
    # None: each notice's comment alone (tests of one notice; tools without a stream).
    in_order: InOrderCarrier | None = None

    async def handle(self, notice: PlanfixCommentWebhookReceived, delivery: Delivery) -> None:
        """One notice (alone in its batch, or its batch failed)."""
        await self._one(notice)

    async def _one(self, notice: PlanfixCommentWebhookReceived) -> None:
        with structlog.contextvars.bound_contextvars(action=notice.action):
            if (
                notice.action is PlanfixCommentAction.ADDED
                and self.in_order is not None
                and await self.in_order.carry_announced(notice)
            ):
                return
            await self._fetch_alone(notice)

    async def handle_all(self, notices: Sequence[PlanfixCommentWebhookReceived]) -> None:
        """A batch of notices, in stream order: each task's added comments for one read of its
        last stored comment and one read-back (``InOrderCarrier.carry_task``), then the others."""
        carrier = self.in_order
        plan = plan_batch(notices, in_order=carrier is not None)
        for task, announced in plan.added_by_task.items():
            assert carrier is not None
            for notice in await carrier.carry_task(task, announced):
                with structlog.contextvars.bound_contextvars(action=notice.action):
                    await self._fetch_alone(notice)
        for notice in plan.one_by_one:
            await self._one(notice)

    async def _fetch_alone(self, notice: PlanfixCommentWebhookReceived) -> None:
        await self.before_fetch()
        comment = await self._fetch(notice.comment_id)
        if notice.action is PlanfixCommentAction.DELETED:
            await self._publish_deleted(notice, comment)
            return
        if comment is None:
            return
        if comment.is_deleted:
            log.info("comment_deleted_skipped", comment_id=comment.id)
            return
        if comment.is_hidden and not self.relay_hidden:
            # Hidden comments are Planfix-internal; PLANFIX_RELAY_HIDDEN_COMMENTS=true relays them.
            log.info("hidden_comment_not_relayed", comment_id=comment.id)
            return
        # The comment's own task wins: a hand-edited scenario template may send the wrong number.
        task_number = comment.task_number or notice.task_number
        if task_number != notice.task_number:
            log.warning("comment_task_differs", webhook_task=notice.task_number, comment_task=task_number)
        if notice.action is PlanfixCommentAction.UPDATED:
            await self._publish_updated(notice, comment, task_number)
            return
        added = comment_added(notice, comment, task_number=task_number, our_source_id=self.source_id)
        await store(
            self.publisher,
            added,
            subject=subjects.planfix_comment_added(task_number),
            key=planfix_comment_key(comment.id),
            ours=added.source_object_id is not None,
        )

    async def _publish_updated(
        self, notice: PlanfixCommentWebhookReceived, comment: PlanfixComment, task_number: int
    ) -> None:
        key = derived_key(notice, "updated")
        updated = PlanfixCommentUpdated(
            **envelope_after(notice, key),
            task_number=task_number,
            comment_id=comment.id,
            text_html=comment.description,
            author=PlanfixPerson(id=comment.owner_id, name=comment.owner_name),
            source_id=self.source_id if comment.source_object_id else None,
            source_object_id=comment.source_object_id,
            files=files_of(comment),
        )
        await store(self.publisher, updated, subject=subjects.planfix_comment_updated(task_number), key=key)

    async def _publish_deleted(
        self, notice: PlanfixCommentWebhookReceived, comment: PlanfixComment | None
    ) -> None:
        if comment is not None and not comment.is_deleted:
            log.warning("delete_notice_for_a_comment_still_there_ignored", comment_id=notice.comment_id)
            return
        task_number = (comment.task_number if comment else None) or notice.task_number
        key = planfix_comment_deleted_key(notice.comment_id)
        deleted = PlanfixCommentDeleted(
            **envelope_after(notice, key), task_number=task_number, comment_id=notice.comment_id
        )
        await store(self.publisher, deleted, subject=subjects.planfix_comment_deleted(task_number), key=key)

    async def _fetch(self, comment_id: int) -> PlanfixComment | None:
        try:
            return await self.planfix.get_comment(comment_id, source_id=self.source_id)
        except PlanfixUnavailable as error:
            raise TransientFailure(str(error)) from error
        except CommentNotFound:
            # Deleted between the scenario firing and our fetch, or a bogus id: nothing to relay.
            log.info("comment_not_found_skipped", comment_id=comment_id)
            return None
        except PlanfixAuthError as error:
            # The token was revoked or changed: keep the notice until an operator fixes it.
            log.error(
                "planfix_token_rejected",
                error=str(error),
                hint="check PLANFIX_API_TOKEN in Planfix: Account management -> API access",
            )
            raise TransientFailure(str(error)) from error
        except PlanfixRejected as error:
            raise PermanentFailure(str(error)) from error


def comment_added(
    notice: PlanfixCommentWebhookReceived, comment: PlanfixComment, *, task_number: int, our_source_id: str
) -> PlanfixCommentAdded:
    envelope = envelope_after(notice, planfix_comment_key(comment.id))
    return comment_added_as(envelope, comment, task_number=task_number, our_source_id=our_source_id)


@dataclass(frozen=True)
class BatchPlan:
    """What a batch of notices becomes: each task's ``comment.added`` notices carried together,
    tasks in the order they first appear; then the ``one_by_one``, in stream order."""

    added_by_task: dict[int, tuple[PlanfixCommentWebhookReceived, ...]]
    one_by_one: tuple[PlanfixCommentWebhookReceived, ...]


def plan_batch(notices: Sequence[PlanfixCommentWebhookReceived], *, in_order: bool) -> BatchPlan:
    """Group a batch's notices (``in_order`` False: no carrier, each notice alone).

    Edits and deletions wait until the batch's added comments are stored: they are other
    comments' events, in no order with those, or an edit or deletion of a comment added in this
    batch, which then follows its add as it should."""
    if not in_order:
        return BatchPlan(added_by_task={}, one_by_one=tuple(notices))
    added: dict[int, list[PlanfixCommentWebhookReceived]] = {}
    others = []
    for notice in notices:
        if notice.action is PlanfixCommentAction.ADDED:
            added.setdefault(notice.task_number, []).append(notice)
        else:
            others.append(notice)
    return BatchPlan(
        added_by_task={task: tuple(announced) for task, announced in added.items()}, one_by_one=tuple(others)
    )


def reader(js: Any, fetcher: CommentFetcher, lease: Lease) -> OrderedBatches[PlanfixCommentWebhookReceived]:
    """The stored webhook notices, read in ordered batches by one replica at a time: a burst
    costs one read-back per task, not one per comment."""
    return OrderedBatches(
        js,
        FETCHER_COMMENT_WEBHOOKS,
        PlanfixCommentWebhookReceived,
        Handlers(batch=fetcher.handle_all, one=fetcher.handle),
        lease=lease,
    )
