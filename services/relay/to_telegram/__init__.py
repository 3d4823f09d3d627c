"""Planfix -> Telegram: comments, binding decisions and answers shown in the groups.

The path: ``handlers`` (an event -> outbox items, the text from ``from_planfix_html``) ->
``sender`` (each group's outbox, drained in order at the group's pace) -> ``courier`` (the
Telegram calls, split by ``telegram_text``; edits and deletions through ``revisions``).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any

import msgspec
import structlog
from faststream.nats import NatsRouter
from faststream.nats.annotations import NatsMessage

from bridge_lib.eventbus import undecoded
from bridge_lib.lease import Lease, Leases
from bridge_lib.ordered_batches import OrderedBatches
from bridge_lib.task_state import last_task_state
from contracts.events import (
    PlanfixCommentChange,
    RetryTelegramDelivery,
    TelegramDeliveryRetried,
    envelope_after,
)
from contracts.subjects import RELAY_RETRY_TELEGRAM_DELIVERY
from services.relay.config import RelaySettings
from services.relay.directory import group_texts
from services.relay.effects import OwnComments
from services.relay.shared import Shared
from services.relay.to_telegram.courier import Courier, SentComments, TelegramPace
from services.relay.to_telegram.dead_letters import DeadLetters
from services.relay.to_telegram.handlers import ToTelegram, comment_changes, router
from services.relay.to_telegram.notices import task_page
from services.relay.to_telegram.revisions import CommentRevisions
from services.relay.to_telegram.sender import Nudges, Outbox, TelegramSender
from services.relay.to_telegram.task_card import TaskCards
from services.relay.to_telegram.task_handlers import TaskLife

log = structlog.get_logger("relay.to_telegram")


def answer_retries(nats_router: NatsRouter, sender: TelegramSender) -> None:
    """Answer ``bridge dlq retry`` of a message Telegram refused for good (one relay replica each:
    a queue group)."""

    async def on_retry_telegram_delivery(msg: NatsMessage) -> bytes:
        command = msgspec.json.decode(msg.body, type=RetryTelegramDelivery)
        try:
            answer = await sender.retry(command)
        except Exception as error:  # the store away: the operator is told and may ask again
            log.exception("retry_request_failed")
            answer = TelegramDeliveryRetried(
                **envelope_after(command, f"retry-failed:{command.event_id}"),
                outbox_key=command.outbox_key,
                queued=False,
                detail=f"the relay could not queue it: {type(error).__name__}",
            )
        return msgspec.json.encode(answer)

    nats_router.subscriber(
        RELAY_RETRY_TELEGRAM_DELIVERY, queue="relay", decoder=undecoded, include_in_schema=False
    )(on_retry_telegram_delivery)


@dataclass(frozen=True)
class ToTelegramWing:
    router: NatsRouter  # the durable consumers, to include in the broker
    # The comments' consumer, run beside the broker's (one replica at a time).
    comment_changes: OrderedBatches[PlanfixCommentChange]
    sender: TelegramSender  # started once the consumers are, stopped before the broker


async def build(
    settings: RelaySettings, shared: Shared, *, nats: Any, pace_bucket: Any, lease_bucket: Any, owner: str
) -> ToTelegramWing:
    database, directory, bot, publisher = shared.database, shared.directory, shared.bot, shared.publisher
    outbox = Outbox(database)
    await outbox.create_indexes()
    pace = TelegramPace(
        pace_bucket,
        group_limit=settings.group_pace_messages,
        group_window_s=settings.group_pace_window_s,
        bot_per_second=settings.bot_pace_per_s,
    )
    texts = group_texts(directory, settings.bridge_language)
    task_url = partial(task_page, settings.planfix_web_url)
    sent = SentComments(database)
    courier = Courier(
        bot=bot,
        planfix=shared.planfix,
        outbox=outbox,
        sent=sent,
        pace=pace,
        leases=Leases(pace_bucket, owner=owner, ttl_s=settings.group_lease_ttl_s),
        task_url=task_url,
        texts=texts,
    )
    nudges = Nudges(nats)
    dead_letters = DeadLetters(outbox=outbox, publisher=publisher)
    sender = TelegramSender(
        outbox=outbox,
        courier=courier,
        revisions=CommentRevisions(bot=bot, courier=courier, sent=sent, texts=texts),
        cards=TaskCards(bot=bot, courier=courier, outbox=outbox, database=database, texts=texts),
        suspended_groups=directory.suspended_groups(),
        publisher=publisher,
        nudge=nudges.send,
        set_aside=dead_letters.set_aside,
        max_attempts=settings.send_max_attempts,
        secret=settings.telegram_bot_token.get_secret_value(),
    )
    await nudges.listen(sender.nudged)
    await dead_letters.letter_earlier_refusals()
    # After the replay: only live binding changes (e.g. a resumed group) wake a sender.
    directory.on_change(sender.binding_changed)
    handlers = ToTelegram(
        directory=directory,
        own_comments=OwnComments(database),
        outbox=outbox,
        wake=sender.wake,
        planfix_source_id=settings.planfix_source_id,
        planfix_web_url=settings.planfix_web_url,
        people=shared.people,
        task_life=TaskLife(
            directory=directory,
            outbox=outbox,
            wake=sender.wake,
            task_url=task_url,
            task_state=partial(last_task_state, nats.jetstream()),
            cards=settings.task_cards,
            texts=texts,
        ),
        language=settings.bridge_language,
    )
    nats_router = router(handlers)
    answer_retries(nats_router, sender)
    lease = Lease(lease_bucket, "relay_comment_changes", owner=owner)
    return ToTelegramWing(
        router=nats_router, comment_changes=comment_changes(nats.jetstream(), handlers, lease), sender=sender
    )
