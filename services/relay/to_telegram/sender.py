"""Per-group senders: drain each group's outbox in order, at the group's pace, combining bursts.

One asyncio task per group with pending items, woken when an item is stored (and by a sweep,
which also picks up the work of a replica that died). It takes the group's lease, waits for the
group's turn, *then* reads what is pending, so comments that came meanwhile go out together
(one message of at most 4096 units). Once the group's items are out it keeps the lease for
``IDLE_HOLD_S`` in case more come; a replica storing an item for a group another one holds
nudges the holder over core NATS (``NUDGE_SUBJECT``).

Failures, per item: a 429 waits exactly ``retry_after``, then the same item goes again; a group
that became a supergroup moves its items to the new id (and ``ChatMigrated`` is published);
Telegram or Planfix unreachable, 5xx or a revoked token are retried without limit, in order; a
refusal (400, 403) is retried up to ``max_attempts``, then the item is set aside as dead,
``TelegramDeliveryFailed`` is published and a dead letter is stored beside every other
consumer's (``bridge dlq``: the group, the reason, the first words; ``retry`` asks ``retry``
here to queue it again). A suspended group keeps its items until resumed.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
import structlog
from aiogram.exceptions import (
    TelegramAPIError,
    TelegramEntityTooLarge,
    TelegramMigrateToChat,
    TelegramNetworkError,
    TelegramRetryAfter,
    TelegramServerError,
    TelegramUnauthorizedError,
)

from bridge_lib import metrics
from bridge_lib.eventbus import EventPublisher
from bridge_lib.lease import LeaseLost, Leases
from bridge_lib.planfix import PlanfixAuthError, PlanfixRejected, PlanfixUnavailable
from contracts import subjects
from contracts.events import (
    TELEGRAM_OUTBOX_CONSUMER,
    TELEGRAM_OUTBOX_SOURCE,
    ChatMigrated,
    DeadLetterReason,
    Envelope,
    Event,
    MessageDeadLettered,
    RetryTelegramDelivery,
    TelegramDeliveryFailed,
    TelegramDeliveryRetried,
    TelegramMessagesDeleted,
    TelegramMessagesEdited,
    TelegramMessageSent,
    envelope_after,
    event_id_for,
    root_envelope,
    telegram_migration_key,
    utc_now,
)
from services.relay.directory import BindingDirectory
from services.relay.effects import effect_msg_id
from services.relay.to_telegram.courier import Courier
from services.relay.to_telegram.outbox import Action, ItemState, Outbox, OutboxItem
from services.relay.to_telegram.pacing import TelegramPace, group_lease_key
from services.relay.to_telegram.revisions import CommentRevisions
from services.relay.to_telegram.task_card import TaskCards
from services.relay.to_telegram.telegram_text import combine, plain_text

log = structlog.get_logger("relay.sender")

# How many pending items one pass looks at (enough to fill a message with short comments).
PEEK = 200
SWEEP_EVERY_S = 10.0
LEASE_BUSY_RETRY_S = 2.0
# How long a group's task waits for more once its items are out, keeping the lease.
IDLE_HOLD_S = 1.0
# Groups drained at once; the others wait their turn in wake order. The bot may send about 30
# messages a second in all, so more at once gains nothing, and 10,000 groups woken together
# (a replay, a takeover) would hold 10,000 calls' worth of memory.
MAX_ACTIVE_GROUPS = 100
# Core NATS (not a stream: a lost nudge only costs latency): "the holder of this group's lease,
# look at its outbox". Private to the relay's replicas. Payload: the chat id.
NUDGE_SUBJECT = subjects.RELAY_OUTBOX_NUDGE
# How long a stopping relay spends letting go of the groups it holds.
RELEASE_ON_STOP_S = 2.0


def backoff_s(attempt: int) -> float:
    return float(min(60, 2 ** max(0, attempt - 1)))


def _envelope(item: OutboxItem, key: str) -> Envelope:
    # Like ``envelope_after``, from what the item kept of the event that caused it.
    return {
        "event_id": event_id_for(key),
        "occurred_at": utc_now(),
        "correlation_id": item.correlation_id,
        "causation_id": item.causation_id,
    }


class TelegramSender:
    def __init__(
        self,
        *,
        outbox: Outbox,
        pace: TelegramPace,
        leases: Leases,
        courier: Courier,
        revisions: CommentRevisions,
        directory: BindingDirectory,
        publisher: EventPublisher,
        nudge: Callable[[int], Awaitable[None]],
        max_attempts: int,
        secret: str = "",
        cards: TaskCards | None = None,
    ) -> None:
        self._outbox = outbox
        self._cards = cards
        self._pace = pace
        self._leases = leases
        self._courier = courier
        self._revisions = revisions
        self._directory = directory
        self._publisher = publisher
        # Asks the other replicas' holder of a group to look at its outbox.
        self._nudge = nudge
        self._max_attempts = max_attempts
        # Error texts may quote request URLs, and those carry the bot token.
        self._secret = secret
        self._workers: dict[int, asyncio.Task[None]] = {}
        # Groups woken while MAX_ACTIVE_GROUPS were being drained, in wake order.
        self._queued: dict[int, None] = {}
        self._again: set[int] = set()
        # Groups whose task waits for more with the lease held: set when something comes.
        self._idle: dict[int, asyncio.Event] = {}
        self._sweeper: asyncio.Task[None] | None = None
        self._stopping = False

    def _describe(self, error: BaseException) -> str:
        text = f"{type(error).__name__}: {error}"
        return text.replace(self._secret, "<token>") if self._secret else text

    def start(self) -> None:
        self._sweeper = asyncio.create_task(self._sweep())

    async def letter_earlier_refusals(self) -> None:
        """Messages set aside before refusals became dead letters (or just before a crash) are
        stored as dead letters now, so ``bridge dlq`` shows every one."""
        try:
            items = await self._outbox.dead_not_lettered()
        except Exception as error:  # the store away at start: the next start tries again
            log.warning("earlier_refusals_not_read", error=f"{type(error).__name__}: {error}")
            return
        for item in items:
            await self._store_dead_letter(item, item.reason or "refused by Telegram")
        if items:
            log.info("earlier_refusals_dead_lettered", items=len(items))

    async def stop(self) -> None:
        self._stopping = True
        tasks = [task for task in (self._sweeper, *self._workers.values()) if task is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        # Let the other replicas take these groups now rather than when the leases run out.
        try:
            await asyncio.wait_for(self._leases.release_all(), RELEASE_ON_STOP_S)
        except Exception as error:  # NATS going away too: the leases then simply run out
            log.warning("group_leases_not_released", error=f"{type(error).__name__}: {error}")

    def wake(self, chat_id: int) -> None:
        """Something is pending for this group: make sure a task drains it."""
        if self._stopping:
            return
        if chat_id in self._workers:
            self._again.add(chat_id)
            idle = self._idle.get(chat_id)
            if idle is not None:
                idle.set()
            return
        if len(self._workers) >= MAX_ACTIVE_GROUPS:
            self._queued[chat_id] = None
            return
        self._workers[chat_id] = asyncio.create_task(self._run(chat_id))

    def _start_queued(self) -> None:
        while self._queued and len(self._workers) < MAX_ACTIVE_GROUPS and not self._stopping:
            chat_id = next(iter(self._queued))
            del self._queued[chat_id]
            self.wake(chat_id)

    def nudged(self, chat_id: int) -> None:
        """Another replica stored an item for a group whose lease this one may hold."""
        if self._leases.holds(group_lease_key(chat_id)):
            self.wake(chat_id)

    async def _sweep(self) -> None:
        while True:
            try:
                for chat_id in await self._outbox.chats_with_pending():
                    self.wake(chat_id)
            except Exception as error:  # the store may be briefly away; the next sweep tries again
                log.warning("outbox_sweep_failed", error=f"{type(error).__name__}: {error}")
            await asyncio.sleep(SWEEP_EVERY_S)

    async def _run(self, chat_id: int) -> None:
        # The task inherited the context of whatever woke it (another event): start clean.
        service = structlog.contextvars.get_contextvars().get("service")
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(service=service, chat_id=chat_id)
        try:
            while True:
                self._again.discard(chat_id)
                await self._drain(chat_id)
                # No await between this check and leaving the dict: a wake() either sees the
                # task still registered (and it loops) or starts a new one.
                if chat_id not in self._again:
                    break
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("group_sender_crashed")  # the sweep starts it again
        finally:
            self._workers.pop(chat_id, None)
            self._start_queued()

    async def _drain(self, chat_id: int) -> None:
        solo_next = False
        outage = 0  # consecutive failures to reach Telegram or Planfix
        # Until this replica has looked once since taking the group, items may be left in both
        # outbox collections by a crash (its own or a replica's that held the group before).
        after_crash = True
        all_out = False  # everything the last look found went out
        while not self._stopping:
            taking_over = not self._leases.holds(group_lease_key(chat_id))
            if not await self._leases.acquire(group_lease_key(chat_id)):
                if not await self._outbox.has_pending(chat_id):
                    return
                await self._nudge(chat_id)
                await asyncio.sleep(LEASE_BUSY_RETRY_S)
                continue
            if taking_over:
                self._pace.forget(chat_id)  # another replica may have sent meanwhile
                after_crash = True
            if all_out:
                all_out = False
                # Anything stored since the last look woke this task; a nudge from another
                # replica too. The last look before letting go catches a lost nudge.
                if not await self._more_within(chat_id, IDLE_HOLD_S) and not await self._outbox.has_pending(
                    chat_id
                ):
                    await self._release(chat_id)
                    return
                continue
            if self._directory.is_suspended(chat_id):
                log.info("group_suspended_messages_kept")
                await self._release(chat_id)
                return
            # The turn comes before the look: comments stored while waiting go out together.
            await self._pace.wait_for_group(chat_id)
            items = await self._outbox.pending(chat_id, limit=PEEK, after_crash=after_crash)
            after_crash = False
            if not items:
                all_out = True
                continue
            batch = [items[0]] if solo_next else next_batch(items)
            solo_next = False
            try:
                await self._deliver(batch)
                all_out = len(batch) == len(items) < PEEK
                outage = 0
            except LeaseLost as error:
                log.info("group_lease_lost", detail=str(error))
                return
            except TelegramRetryAfter as error:
                # The courier already holds the group for retry_after; the next turn waits it out.
                log.warning("telegram_flood_wait", retry_after=error.retry_after)
            except TelegramMigrateToChat as error:
                await self._migrated(chat_id, error.migrate_to_chat_id, batch[0])
                return
            except TelegramEntityTooLarge as error:  # a network error by class, a refusal in fact
                solo_next = await self._refused(batch, error)
            except (
                TelegramNetworkError,
                TelegramServerError,
                TelegramUnauthorizedError,
                PlanfixUnavailable,
                PlanfixAuthError,  # a revoked token is an operator's fix: wait for it
            ) as error:
                outage += 1
                log.warning(
                    "telegram_send_retry_later", error=self._describe(error), retry_in_s=backoff_s(outage)
                )
                await asyncio.sleep(backoff_s(outage))
            except (TelegramAPIError, PlanfixRejected) as error:  # 400, 403, 404: refused
                solo_next = await self._refused(batch, error)

    async def _more_within(self, chat_id: int, seconds: float) -> bool:
        """Whether something for the group is stored (or nudged) within ``seconds``."""
        if chat_id in self._again:
            self._again.discard(chat_id)
            return True
        if self._queued:
            return False  # other groups wait for this task's place
        idle = self._idle[chat_id] = asyncio.Event()
        try:
            await asyncio.wait_for(idle.wait(), seconds)
        except TimeoutError:
            return False
        finally:
            self._idle.pop(chat_id, None)
        self._again.discard(chat_id)
        return True

    async def _release(self, chat_id: int) -> None:
        await self._leases.release(group_lease_key(chat_id))
        self._pace.forget(chat_id)

    async def _deliver(self, batch: list[OutboxItem]) -> None:
        structlog.contextvars.bind_contextvars(
            correlation_id=batch[0].correlation_id, outbox_key=batch[0].key, comment_id=batch[0].comment_id
        )
        if len(batch) > 1:
            message_id = await self._courier.send_combined(batch)
            log.info("comments_sent_combined", comments=len(batch), message_id=message_id)
            for item in batch:
                item.progress["0"] = [message_id]
            await self._finish(batch, [[message_id]] * len(batch))
            return
        item = batch[0]
        if item.action is Action.EDIT:
            ids = await self._revisions.edit(item)
        elif item.action is Action.DELETE:
            ids = await self._revisions.delete(item)
        elif item.action is Action.CARD and self._cards is not None:
            ids = await self._cards.show(item)
        else:
            ids = await self._courier.send(item)
        log.info("telegram_item_done", action=str(item.action), kind=str(item.kind), message_ids=ids)
        await self._finish([item], [ids])

    async def _finish(self, batch: list[OutboxItem], message_ids: list[list[int]]) -> None:
        await self._outbox.finish(batch)
        for item, ids in zip(batch, message_ids, strict=True):
            await self._publish_effect(item, ids)

    async def _publish_effect(self, item: OutboxItem, message_ids: list[int]) -> None:
        effect: Event
        if item.action in (Action.SEND, Action.CARD):
            effect = TelegramMessageSent(
                **_envelope(item, item.key),
                chat_id=item.chat_id,
                message_ids=message_ids,
                kind=item.kind,
                task_number=item.task_number,
                comment_id=item.comment_id,
                thread_id=item.thread_id,
            )
            subject = subjects.telegram_message_sent(item.chat_id)
        elif item.action is Action.EDIT:
            effect = TelegramMessagesEdited(
                **_envelope(item, item.key),
                chat_id=item.chat_id,
                comment_id=item.comment_id or 0,
                message_ids=message_ids,
                thread_id=item.thread_id,
            )
            subject = subjects.telegram_messages_edited(item.chat_id)
        else:
            effect = TelegramMessagesDeleted(
                **_envelope(item, item.key),
                chat_id=item.chat_id,
                comment_id=item.comment_id or 0,
                message_ids=message_ids,
                thread_id=item.thread_id,
            )
            subject = subjects.telegram_messages_deleted(item.chat_id)
        await self._publisher.publish(effect, subject=subject, msg_id=effect_msg_id(item.key))

    async def _refused(self, batch: list[OutboxItem], error: Exception) -> bool:
        """Count a refusal against the item; True when the next pass should send items one by one."""
        if len(batch) > 1:
            # Something in the combined text was refused: find which by sending them singly.
            log.warning("combined_message_refused_sending_singly", error=self._describe(error))
            return True
        item = batch[0]
        if self._directory.is_suspended(item.chat_id):
            return False
        attempt = await self._outbox.count_attempt(item.key, self._describe(error))
        if attempt < self._max_attempts:
            log.warning("telegram_refused_retry_later", error=self._describe(error), attempt=attempt)
            await asyncio.sleep(backoff_s(attempt))
            return False
        await self._dead(item, self._describe(error))
        return False

    async def _dead(self, item: OutboxItem, reason: str) -> None:
        log.error("telegram_delivery_failed", key=item.key, reason=reason, kind=str(item.kind))
        await self._outbox.give_up(item.key, reason)
        key = f"dead:{item.key}"
        await self._publisher.publish(
            TelegramDeliveryFailed(
                **_envelope(item, key),
                chat_id=item.chat_id,
                outbox_key=item.key,
                reason=reason,
                kind=item.kind,
                task_number=item.task_number,
                comment_id=item.comment_id,
                thread_id=item.thread_id,
            ),
            subject=subjects.telegram_delivery_failed(item.chat_id),
            msg_id=effect_msg_id(key),
        )
        await self._store_dead_letter(item, reason)

    async def _store_dead_letter(self, item: OutboxItem, reason: str) -> None:
        """Set aside where every give-up is (``bridge dlq``): the group, the reason, the first words."""
        # The item's place in the outbox: a revived item that is refused again is a new dead letter.
        key = f"dead-letter:{item.key}:{item.seq}"
        group = f"{item.chat_id}" if item.thread_id is None else f"{item.chat_id}/{item.thread_id}"
        item.state, item.reason = ItemState.DEAD, reason
        await self._publisher.publish(
            MessageDeadLettered(
                **_envelope(item, key),
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

    async def retry(self, command: RetryTelegramDelivery) -> TelegramDeliveryRetried:
        """An operator's ``bridge dlq retry`` of a message Telegram refused for good."""
        envelope = envelope_after(command, f"retried:{command.event_id}")
        item = await self._outbox.revive(command.outbox_key)
        if item is None:
            detail = "no message set aside under this key (sent already, or queued again already)"
            return TelegramDeliveryRetried(
                **envelope, outbox_key=command.outbox_key, queued=False, detail=detail
            )
        log.info("telegram_delivery_retried", key=item.key, chat_id=item.chat_id, operator=command.operator)
        self.wake(item.chat_id)
        await self._nudge(item.chat_id)
        return TelegramDeliveryRetried(
            **envelope, outbox_key=item.key, queued=True, detail=f"queued again for group {item.chat_id}"
        )

    async def _migrated(self, old_chat_id: int, new_chat_id: int, item: OutboxItem) -> None:
        moved = await self._outbox.move_chat(old_chat_id, new_chat_id)
        log.info("group_migrated_items_moved", new_chat_id=new_chat_id, items=moved)
        await self._release(old_chat_id)
        key = telegram_migration_key(old_chat_id, new_chat_id)
        # The gateway publishes the same event from Telegram's service message; one is kept.
        await self._publisher.publish(
            ChatMigrated(
                **root_envelope(key, caused_by=item.key), old_chat_id=old_chat_id, chat_id=new_chat_id
            ),
            subject=subjects.telegram_group_migrated(new_chat_id),
            msg_id=key,
        )
        self.wake(new_chat_id)


def first_words(item: OutboxItem, limit: int = 60) -> str:
    """The beginning of an item's text as people would read it, for an operator's listing."""
    words = " ".join(plain_text(item.text).split())
    return words if len(words) <= limit else words[: limit - 1].rstrip() + "…"


def next_batch(items: list[OutboxItem]) -> list[OutboxItem]:
    """The first item alone, or the run of plain comments at the head that fits one message."""
    run: list[OutboxItem] = []
    for item in items:
        if not item.combinable or (run and item.thread_id != run[0].thread_id):
            break
        run.append(item)
    if len(run) < 2:
        return [items[0]]
    return [run[index] for index in combine([item.text for item in run])[0]]


class Nudges:
    """Replicas tell each other about items stored for a group another replica holds (core
    NATS, nothing stored: a lost nudge costs latency only, the sweep is the backstop)."""

    def __init__(self, connection: Any) -> None:
        self._connection = connection

    async def send(self, chat_id: int) -> None:
        with contextlib.suppress(Exception):
            await self._connection.publish(NUDGE_SUBJECT, str(chat_id).encode())

    async def listen(self, nudged: Callable[[int], None]) -> None:
        async def on_nudge(msg: Any) -> None:
            try:
                chat_id = int(msg.data)
            except ValueError:
                log.warning("outbox_nudge_unreadable", size=len(msg.data))
                return
            nudged(chat_id)

        await self._connection.subscribe(NUDGE_SUBJECT, cb=on_nudge)
