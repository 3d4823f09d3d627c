"""The JetStream side: for each stored webhook notice, fetch the comment and publish its content.

Fetching here and not in the HTTP handler keeps the webhook answer fast and lets an outage of
the Planfix API wait in the stream: the notice is redelivered until the fetch works.
"""

from __future__ import annotations

import structlog
from faststream import Context
from faststream.middlewares import AckPolicy
from faststream.nats import NatsRouter
from faststream.nats.annotations import NatsMessage

from bridge_lib.eventbus import (
    Delivery,
    EventPublisher,
    PermanentFailure,
    TransientFailure,
    consume,
    durable_pull,
    jstream,
)
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
    PlanfixCommentAdded,
    PlanfixCommentWebhookReceived,
    PlanfixPerson,
    envelope_after,
    planfix_comment_key,
)
from contracts.subjects import PLANFIX_STREAM

log = structlog.get_logger("planfix_gateway.fetcher")
router = NatsRouter()

DURABLE = "planfix_gateway-comment-fetcher"


class CommentFetcher:
    def __init__(
        self, *, planfix: PlanfixClient, publisher: EventPublisher, source_id: str, relay_hidden: bool = False
    ) -> None:
        self._planfix = planfix
        self._publisher = publisher
        self._source_id = source_id
        self._relay_hidden = relay_hidden

    async def handle(self, notice: PlanfixCommentWebhookReceived, delivery: Delivery) -> None:
        comment = await self._fetch(notice.comment_id)
        if comment is None:
            return
        if comment.is_deleted:
            log.info("comment_deleted_skipped", comment_id=comment.id)
            return
        if comment.is_hidden and not self._relay_hidden:
            # Hidden comments are Planfix-internal; PLANFIX_RELAY_HIDDEN_COMMENTS=true relays them.
            log.info("hidden_comment_not_relayed", comment_id=comment.id)
            return
        # The comment's own task wins: a hand-edited scenario template may send the wrong number.
        task_number = comment.task_number or notice.task_number
        if task_number != notice.task_number:
            log.warning("comment_task_differs", webhook_task=notice.task_number, comment_task=task_number)
        added = comment_added(notice, comment, task_number=task_number, our_source_id=self._source_id)
        stored = await self._publisher.publish(
            added, subject=subjects.planfix_comment_added(task_number), msg_id=planfix_comment_key(comment.id)
        )
        log.info(
            "comment_published",
            task_number=task_number,
            comment_id=comment.id,
            duplicate=not stored,
            ours=added.source_object_id is not None,
        )

    async def _fetch(self, comment_id: int) -> PlanfixComment | None:
        try:
            return await self._planfix.get_comment(comment_id, source_id=self._source_id)
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
    key = planfix_comment_key(comment.id)
    return PlanfixCommentAdded(
        **envelope_after(notice, key),
        task_number=task_number,
        comment_id=comment.id,
        text_html=comment.description,
        author=PlanfixPerson(id=comment.owner_id, name=comment.owner_name),
        # Planfix shows sourceObjectId only to the sourceId that wrote it: present means ours.
        source_id=our_source_id if comment.source_object_id else None,
        source_object_id=comment.source_object_id,
        written_at=comment.written_at,
        is_hidden=comment.is_hidden,
    )


@router.subscriber(
    subjects.ALL_PLANFIX_COMMENT_WEBHOOKS,
    stream=jstream(PLANFIX_STREAM),
    ack_policy=AckPolicy.MANUAL,
    **durable_pull(DURABLE),
)
async def on_webhook(msg: NatsMessage, fetcher: CommentFetcher = Context()) -> None:
    await consume(msg, PlanfixCommentWebhookReceived, fetcher.handle)
