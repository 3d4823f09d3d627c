"""The JetStream side: for each stored webhook notice, fetch the comment and publish what happened.

Fetching here and not in the HTTP handler keeps the webhook answer fast and lets an outage of
the Planfix API wait in the stream: the notice is redelivered until the fetch works.

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

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import structlog
from faststream.nats import NatsRouter

from bridge_lib.eventbus import (
    Delivery,
    EventPublisher,
    PermanentFailure,
    TransientFailure,
    consume_durably,
)
from bridge_lib.health import consumer_ref
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
        structlog.contextvars.bind_contextvars(action=notice.action)
        if (
            notice.action is PlanfixCommentAction.ADDED
            and self.in_order is not None
            and await self.in_order.carry_announced(notice)
        ):
            return
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


NoticeHandler = Callable[[PlanfixCommentWebhookReceived, Delivery], Awaitable[None]]


def build_router(handle: NoticeHandler) -> NatsRouter:
    """The subscriber to stored webhook notices, handing each to ``handle`` (``CommentFetcher.handle``)."""
    router = NatsRouter()
    consume_durably(router, FETCHER_COMMENT_WEBHOOKS, PlanfixCommentWebhookReceived, handle)
    return router
