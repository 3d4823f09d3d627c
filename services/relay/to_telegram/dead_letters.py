"""An item Telegram refused for good: set aside in the outbox, reported, and stored as a dead
letter beside every other consumer's (``bridge dlq``: the group, the reason, the first words);
``bridge dlq retry`` queues it again (``TelegramSender.retry``)."""

from __future__ import annotations

import base64

import msgspec
import structlog

from bridge_lib import metrics
from bridge_lib.eventbus import EventPublisher
from contracts import subjects
from contracts.events import (
    TELEGRAM_OUTBOX_CONSUMER,
    TELEGRAM_OUTBOX_SOURCE,
    DeadLetterReason,
    MessageDeadLettered,
    TelegramDeliveryFailed,
)
from services.relay.to_telegram.items import ItemState, OutboxItem
from services.relay.to_telegram.sender import Outbox, item_envelope
from services.relay.to_telegram.telegram_text import plain_text

log = structlog.get_logger("relay.dead_letters")


class DeadLetters:
    def __init__(self, *, outbox: Outbox, publisher: EventPublisher) -> None:
        self._outbox = outbox
        self._publisher = publisher

    async def set_aside(self, item: OutboxItem, reason: str) -> None:
        log.error("telegram_delivery_failed", key=item.key, reason=reason, kind=str(item.kind))
        await self._outbox.give_up(item.key, reason)
        await self._publisher.publish(
            TelegramDeliveryFailed(
                **item_envelope(item, f"dead:{item.key}"),
                chat_id=item.chat_id,
                outbox_key=item.key,
                reason=reason,
                kind=item.kind,
                task_number=item.task_number,
                comment_id=item.comment_id,
                thread_id=item.thread_id,
            )
        )
        await self._store(item, reason)

    async def letter_earlier_refusals(self) -> None:
        """Items set aside just before a crash get their dead letters now, so ``bridge dlq``
        shows every one."""
        try:
            items = await self._outbox.dead_not_lettered()
        except Exception as error:  # the store away at start: the next start tries again
            log.warning("earlier_refusals_not_read", error=f"{type(error).__name__}: {error}")
            return
        for item in items:
            await self._store(item, item.reason or "refused by Telegram")
        if items:
            log.info("earlier_refusals_dead_lettered", items=len(items))

    async def _store(self, item: OutboxItem, reason: str) -> None:
        # The item's place in the outbox: a revived item that is refused again is a new dead letter.
        key = f"dead-letter:{item.key}:{item.seq}"
        group = f"{item.chat_id}" if item.thread_id is None else f"{item.chat_id}/{item.thread_id}"
        item.state, item.reason = ItemState.DEAD, reason
        await self._publisher.publish(
            MessageDeadLettered(
                **item_envelope(item, key),
                consumer=TELEGRAM_OUTBOX_CONSUMER,
                stream=TELEGRAM_OUTBOX_SOURCE,
                stream_seq=item.seq,
                original_subject=subjects.telegram_delivery_failed(item.chat_id),
                original_headers={},
                body_b64=base64.b64encode(msgspec.json.encode(item)).decode(),
                reason=DeadLetterReason.PERMANENT_FAILURE,
                detail=f"group {group}: Telegram refused it: {reason}; text: «{first_words(item)}»",
                num_delivered=item.attempts,
                original_event_type=f"telegram {item.action} ({item.kind})",
                original_event_id=item.key,
            ),
            subject=subjects.dead_letter(TELEGRAM_OUTBOX_CONSUMER),
            msg_id=key,
        )
        await self._outbox.mark_dead_lettered(item.key)
        metrics.DEAD_LETTERS.labels(TELEGRAM_OUTBOX_CONSUMER, str(DeadLetterReason.PERMANENT_FAILURE)).inc()


def first_words(item: OutboxItem, limit: int = 60) -> str:
    """The beginning of an item's text as people would read it, for an operator's listing."""
    words = " ".join(plain_text(item.text).split())
    return words if len(words) <= limit else words[: limit - 1].rstrip() + "…"
