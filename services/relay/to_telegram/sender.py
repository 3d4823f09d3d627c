"""Each group's outbox and the sender that drains it, in order, at the group's pace.

A handler stores an item (``Outbox.enqueue``) and wakes the group's sender: one asyncio task
per group with items waiting. The task takes the group (``Courier.take_group``), waits for its
turn, *then* reads what waits, so comments stored meanwhile go out as one message, and hands it
to the courier; what went out moves to the finished items and its effect is published. Failures
(a 429, a refusal, a group that moved) and the replicas' nudges: docs/architecture.md, "Planfix
-> Telegram in more detail".
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
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
from motor.motor_asyncio import AsyncIOMotorDatabase
from pymongo import ReturnDocument
from pymongo.errors import BulkWriteError, DuplicateKeyError

from bridge_lib.eventbus import EventPublisher
from bridge_lib.lease import LeaseLost
from bridge_lib.planfix import PlanfixAuthError, PlanfixRejected, PlanfixUnavailable
from bridge_lib.redaction import redact
from contracts import subjects
from contracts.events import (
    ChatMigrated,
    CommentAlsoShown,
    Envelope,
    Event,
    RetryTelegramDelivery,
    TelegramDeliveryRetried,
    TelegramMessageKind,
    TelegramMessagesDeleted,
    TelegramMessagesEdited,
    TelegramMessageSent,
    envelope_after,
    envelope_in,
    root_envelope,
    telegram_migration_key,
)
from services.relay.to_telegram.courier import Courier
from services.relay.to_telegram.items import Action, ItemState, OutboxItem
from services.relay.to_telegram.revisions import CommentRevisions
from services.relay.to_telegram.task_card import TaskCards
from services.relay.to_telegram.telegram_text import first_combined

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
# What a delivered item's record keeps of its content: nothing (the message is in the group).
_DELIVERED: dict[str, Any] = {"text": "", "short_caption": "", "files": []}


DUPLICATE_KEY = 11000


def backoff_s(attempt: int) -> float:
    return float(min(60, 2 ** max(0, attempt - 1)))


class Outbox:
    """``telegram_outbox``: the items waiting, ordered by ``seq`` (from ``counters``, so the order
    survives a group's move to a new chat id); ``progress`` holds each finished step of an item.
    ``telegram_outbox_finished``: items sent or refused for good, kept to recognise a redelivered
    event; a sent one keeps no text. Moving an item is an insert there, then a delete here: one
    found in both (a crash between) is finished."""

    def __init__(self, database: AsyncIOMotorDatabase[Any]) -> None:
        self._items = database["telegram_outbox"]
        self._finished = database["telegram_outbox_finished"]
        self._counters = database["counters"]

    async def create_indexes(self) -> None:
        await self._items.create_index([("state", 1), ("chat_id", 1), ("seq", 1)], name="pending_by_chat")
        # "When was this group last told X" (the anonymous-admin guidance), without a full scan.
        await self._finished.create_index(
            [("chat_id", 1), ("kind", 1), ("enqueued_at", -1)], name="by_chat_and_kind"
        )

    # --- put -----------------------------------------------------------------------------------

    async def finished_among(self, keys: list[str]) -> set[str]:
        """Which of these items went out already (or were given up)."""
        if not keys:
            return set()
        return {str(d["_id"]) async for d in self._finished.find({"_id": {"$in": keys}}, {"_id": 1})}

    async def enqueue(self, item: OutboxItem, *, finished_checked: bool = False) -> bool:
        """Store the item; False when an item with its key exists already (a redelivery).
        ``finished_checked``: the caller asked ``finished_among`` already."""
        return bool(await self.enqueue_all([item], finished_checked=finished_checked))

    async def enqueue_all(self, items: list[OutboxItem], *, finished_checked: bool = False) -> set[str]:
        """Store the items, in this order; the keys stored (an item whose key exists already, a
        redelivery, is not). ``finished_checked``: the caller asked ``finished_among`` already."""
        # One still waiting is refused by the insert below (same _id); one gone out is looked up.
        if not finished_checked:
            gone_out = await self.finished_among([item.key for item in items])
            items = [item for item in items if item.key not in gone_out]
        if not items:
            return set()
        last = await self._next_seq(len(items))
        for seq, item in enumerate(items, start=last - len(items) + 1):
            item.seq = seq
        documents = [_document(item) for item in items]
        try:
            await self._items.insert_many(documents, ordered=False)
        except BulkWriteError as error:
            errors = error.details.get("writeErrors", [])
            if any(found.get("code") != DUPLICATE_KEY for found in errors):
                raise
            # Those queued already (a redelivery): the others are stored.
            refused = {documents[found["index"]]["_id"] for found in errors}
            return {item.key for item in items if item.key not in refused}
        return {item.key for item in items}

    async def move_chat(self, old_chat_id: int, new_chat_id: int) -> int:
        """Pending items for a group that became a supergroup go to its new id, in their order."""
        result = await self._items.update_many(
            {"state": ItemState.PENDING.value, "chat_id": old_chat_id}, {"$set": {"chat_id": new_chat_id}}
        )
        return int(result.modified_count)

    async def last_sent_of_kind(
        self, chat_id: int, kind: TelegramMessageKind, *, besides: str
    ) -> datetime | None:
        """When the group's latest item of this kind (other than ``besides``) was stored."""
        latest: datetime | None = None
        query = {"chat_id": chat_id, "kind": kind.value, "_id": {"$ne": besides}}
        for collection in (self._items, self._finished):
            async for document in collection.find(query, {"enqueued_at": 1}).sort("enqueued_at", -1).limit(1):
                stored = document.get("enqueued_at")
                if isinstance(stored, datetime):
                    stored = stored if stored.tzinfo else stored.replace(tzinfo=UTC)
                    latest = stored if latest is None else max(latest, stored)
        return latest

    # --- take ----------------------------------------------------------------------------------

    async def pending(self, chat_id: int, *, limit: int, after_crash: bool = True) -> list[OutboxItem]:
        """The group's next items in order. ``after_crash``: also drop items a crash left in
        both collections (needed once per taking over a group, not after this replica's own moves)."""
        cursor = self._items.find({"state": ItemState.PENDING.value, "chat_id": chat_id}).sort("seq", 1)
        documents = await cursor.to_list(limit)
        if not documents or not after_crash:
            return [_item(document) for document in documents]
        finished = await self.finished_among([document["_id"] for document in documents])
        for key in finished:  # left behind by a crash mid-move
            await self._items.delete_one({"_id": key})
        return [_item(document) for document in documents if document["_id"] not in finished]

    async def has_pending(self, chat_id: int) -> bool:
        found = await self._items.find_one({"state": ItemState.PENDING.value, "chat_id": chat_id}, {"_id": 1})
        return found is not None

    async def chats_with_pending(self) -> set[int]:
        cursor = self._items.find({"state": ItemState.PENDING.value}, {"chat_id": 1})
        return {int(document["chat_id"]) async for document in cursor}

    async def step_done(self, key: str, step: int, message_ids: list[int]) -> None:
        await self._items.update_one({"_id": key}, {"$set": {f"progress.{step}": message_ids}})

    async def finish(self, items: list[OutboxItem]) -> None:
        """The items went out (``progress`` holding what each step produced): move them, together.
        Built from the items in hand: the sender holds the group's lease, nobody else changed them."""
        finished_at = datetime.now(UTC)
        documents = [
            {**_document(item), **_DELIVERED, "state": ItemState.DONE.value, "finished_at": finished_at}
            for item in items
        ]
        try:
            await self._finished.insert_many(documents, ordered=False)
        except (BulkWriteError, DuplicateKeyError):
            # Some were moved before and not deleted here (a crash in between): keep the others.
            for document in documents:
                with contextlib.suppress(DuplicateKeyError):
                    await self._finished.insert_one(document)
        await self._items.delete_many({"_id": {"$in": [item.key for item in items]}})

    # --- refused for good ----------------------------------------------------------------------

    async def count_attempt(self, key: str, reason: str) -> int:
        document = await self._items.find_one_and_update(
            {"_id": key},
            {"$inc": {"attempts": 1}, "$set": {"reason": redact(reason)}},
            return_document=ReturnDocument.AFTER,
        )
        return int(document["attempts"]) if document else 0

    async def give_up(self, key: str, reason: str) -> None:
        document = await self._items.find_one({"_id": key})
        if document is None:
            return
        changes = {"state": ItemState.DEAD.value, "reason": redact(reason), "finished_at": datetime.now(UTC)}
        # A duplicate: moved before, and the delete below did not happen.
        with contextlib.suppress(DuplicateKeyError):
            await self._finished.insert_one({**document, **changes})
        await self._items.delete_one({"_id": key})

    async def dead_not_lettered(self, limit: int = 1000) -> list[OutboxItem]:
        """Items refused for good that no dead letter names yet (a crash between the two)."""
        query = {"state": ItemState.DEAD.value, "dead_lettered": {"$ne": True}}
        return [_item(document) for document in await self._finished.find(query).to_list(limit)]

    async def mark_dead_lettered(self, key: str) -> None:
        await self._finished.update_one({"_id": key}, {"$set": {"dead_lettered": True}})

    async def revive(self, key: str) -> OutboxItem | None:
        """A message refused for good waits again, last in its group's queue (an operator's
        ``bridge dlq retry``), with a fresh retry budget; the steps it finished stay done.
        None when no refused item has this key (it was sent, or revived already)."""
        document = await self._finished.find_one({"_id": key, "state": ItemState.DEAD.value})
        if document is None:
            return None
        item = _item(document)
        item.state, item.attempts, item.reason = ItemState.PENDING, 0, None
        item.seq = await self._next_seq(1)
        # Waiting here first, then gone from there: a crash in between leaves it finished
        # (``pending`` drops such a one), and the retry can be asked again.
        with contextlib.suppress(DuplicateKeyError):
            await self._items.insert_one(_document(item))
        await self._finished.delete_one({"_id": key})
        return item

    async def _next_seq(self, count: int) -> int:
        """The last of ``count`` new places in the order (the others just below it)."""
        counter = await self._counters.find_one_and_update(
            {"_id": "telegram_outbox"},
            {"$inc": {"value": count}},
            upsert=True,
            return_document=ReturnDocument.AFTER,
        )
        return int(counter["value"])


def _document(item: OutboxItem) -> dict[str, Any]:
    fields: dict[str, Any] = msgspec.to_builtins(item, builtin_types=(datetime,))
    fields["_id"] = fields.pop("key")
    if fields.get("enqueued_at") is None:
        fields["enqueued_at"] = datetime.now(UTC)
    return fields


def _item(document: dict[str, Any]) -> OutboxItem:
    fields = {k: v for k, v in document.items() if k not in ("_id", "finished_at", "dead_lettered")}
    # Lax: nx-27017 may hand back a boolean as 1/0.
    return msgspec.convert({**fields, "key": document["_id"]}, OutboxItem, strict=False)


class TelegramSender:
    def __init__(
        self,
        *,
        outbox: Outbox,
        courier: Courier,
        revisions: CommentRevisions,
        cards: TaskCards,
        suspended_groups: set[int],
        publisher: EventPublisher,
        nudge: Callable[[int], Awaitable[None]],
        set_aside: Callable[[OutboxItem, str], Awaitable[None]],
        max_attempts: int,
        secret: str = "",
    ) -> None:
        self._outbox = outbox
        self._courier = courier
        self._revisions = revisions
        self._cards = cards
        # Groups the bot was removed from, kept by the directory's pushes (``binding_changed``).
        self._suspended = set(suspended_groups)
        self._publisher = publisher
        # Asks the other replicas' holder of a group to look at its outbox.
        self._nudge = nudge
        # An item refused ``max_attempts`` times: given up, with its dead letter (``dead_letters``).
        self._set_aside = set_aside
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
            await asyncio.wait_for(self._courier.release_all(), RELEASE_ON_STOP_S)
        except Exception as error:  # NATS going away too: the leases then simply run out
            log.warning("group_leases_not_released", error=f"{type(error).__name__}: {error}")

    # --- which groups are drained ----------------------------------------------------------------

    def binding_changed(self, chat_id: int, suspended: bool) -> None:
        """The directory's word on a group's binding: a resumed group's items go out."""
        (self._suspended.add if suspended else self._suspended.discard)(chat_id)
        self.wake(chat_id)

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
        if self._courier.holds(chat_id):
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

    # --- one group's task ------------------------------------------------------------------------

    async def _drain(self, chat_id: int) -> None:
        solo_next = False
        outage = 0  # consecutive failures to reach Telegram or Planfix
        # Until this replica has looked once since taking the group, items may be left in both
        # outbox collections by a crash (its own or a replica's that held the group before).
        after_crash = True
        all_out = False  # everything the last look found went out
        while not self._stopping:
            if chat_id in self._suspended:
                log.info("group_suspended_messages_kept")
                await self._courier.release_group(chat_id)
                return
            taking_over = not self._courier.holds(chat_id)
            if not await self._courier.take_group(chat_id):
                if not await self._outbox.has_pending(chat_id):
                    return
                await self._nudge(chat_id)
                await asyncio.sleep(LEASE_BUSY_RETRY_S)
                continue
            after_crash = after_crash or taking_over
            if all_out:
                all_out = False
                # Anything stored since the last look woke this task; a nudge from another
                # replica too. The last look before letting go catches a lost nudge.
                if not await self._more_within(chat_id, IDLE_HOLD_S) and not await self._outbox.has_pending(
                    chat_id
                ):
                    await self._courier.release_group(chat_id)
                    return
                continue
            # The turn comes before the look: comments stored while waiting go out together.
            await self._courier.wait_for_turn(chat_id)
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

    async def _deliver(self, batch: list[OutboxItem]) -> None:
        structlog.contextvars.bind_contextvars(
            correlation_id=batch[0].correlation_id, outbox_key=batch[0].key, comment_id=batch[0].comment_id
        )
        if len(batch) > 1:
            message_id = await self._courier.send_combined(batch)
            log.info("comments_sent_combined", comments=len(batch), message_id=message_id)
            for item in batch:
                item.progress["0"] = [message_id]
            await self._outbox.finish(batch)
            # One message, one effect: an event per comment cost a third of the relay's CPU.
            await self._publisher.publish(combined_effect(batch, message_id))
            return
        item = batch[0]
        match item.action:
            case Action.EDIT:
                ids = await self._revisions.edit(item)
            case Action.DELETE:
                ids = await self._revisions.delete(item)
            case Action.CARD:
                ids = await self._cards.show(item)
            case Action.SEND:
                ids = await self._courier.send(item)
        log.info("telegram_item_done", action=str(item.action), kind=str(item.kind), message_ids=ids)
        await self._finish([item], [ids])

    async def _finish(self, batch: list[OutboxItem], message_ids: list[list[int]]) -> None:
        await self._outbox.finish(batch)
        for item, ids in zip(batch, message_ids, strict=True):
            await self._publisher.publish(_effect(item, ids))

    # --- what Telegram would not take --------------------------------------------------------

    async def _refused(self, batch: list[OutboxItem], error: Exception) -> bool:
        """Count a refusal against the item; True when the next pass should send items one by one."""
        if len(batch) > 1:
            # Something in the combined text was refused: find which by sending them singly.
            log.warning("combined_message_refused_sending_singly", error=self._describe(error))
            return True
        item = batch[0]
        if item.chat_id in self._suspended:
            return False
        attempt = await self._outbox.count_attempt(item.key, self._describe(error))
        if attempt < self._max_attempts:
            log.warning("telegram_refused_retry_later", error=self._describe(error), attempt=attempt)
            await asyncio.sleep(backoff_s(attempt))
            return False
        await self._set_aside(item, self._describe(error))
        return False

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
        await self._courier.release_group(old_chat_id)
        key = telegram_migration_key(old_chat_id, new_chat_id)
        # The gateway publishes the same event from Telegram's service message; one is kept.
        await self._publisher.publish(
            ChatMigrated(
                **root_envelope(key, caused_by=item.key), old_chat_id=old_chat_id, chat_id=new_chat_id
            ),
            msg_id=key,
        )
        self.wake(new_chat_id)


def item_envelope(item: OutboxItem, key: str) -> Envelope:
    # Like ``envelope_after``, from what the item kept of the event that caused it.
    return envelope_in(key, correlation_id=item.correlation_id, causation_id=item.causation_id)


def _effect(item: OutboxItem, message_ids: list[int]) -> Event:
    """What the group now shows for the item; its id derives from the item's key, so a repeat
    after a crash is stored once."""
    envelope = item_envelope(item, item.key)
    if item.action in (Action.SEND, Action.CARD):
        return TelegramMessageSent(
            **envelope,
            chat_id=item.chat_id,
            message_ids=message_ids,
            kind=item.kind,
            task_number=item.task_number,
            comment_id=item.comment_id,
            thread_id=item.thread_id,
        )
    changed = TelegramMessagesEdited if item.action is Action.EDIT else TelegramMessagesDeleted
    return changed(
        **envelope,
        chat_id=item.chat_id,
        comment_id=item.comment_id or 0,
        message_ids=message_ids,
        thread_id=item.thread_id,
    )


def combined_effect(batch: list[OutboxItem], message_id: int) -> TelegramMessageSent:
    """The one message that shows the batch's comments: the first one's effect (its id derives
    from that item's key), naming the others with their own stories' ids."""
    first = batch[0]
    return TelegramMessageSent(
        **item_envelope(first, first.key),
        chat_id=first.chat_id,
        message_ids=[message_id],
        kind=first.kind,
        task_number=first.task_number,
        comment_id=first.comment_id,
        thread_id=first.thread_id,
        also_shows=[
            CommentAlsoShown(
                comment_id=item.comment_id or 0,
                task_number=item.task_number,
                correlation_id=item.correlation_id,
                causation_id=item.causation_id,
            )
            for item in batch[1:]
        ],
    )


def combinable(item: OutboxItem) -> bool:
    """A plain comment text: may share one message with its neighbours (unless Telegram refused
    it already: then it goes alone, so the refusal is counted against it only)."""
    return (
        item.action is Action.SEND
        and item.kind is TelegramMessageKind.PLANFIX_COMMENT
        and not item.files
        and not item.progress
        and item.reply_to_message_id is None
        and item.attempts == 0
    )


def next_batch(items: list[OutboxItem]) -> list[OutboxItem]:
    """The first item alone, or the run of plain comments at the head that fits one message."""
    run: list[OutboxItem] = []
    for item in items:
        if not combinable(item) or (run and item.thread_id != run[0].thread_id):
            break
        run.append(item)
    if len(run) < 2:
        return [items[0]]
    return run[: first_combined(item.text for item in run)]


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
