"""The task's life in its groups: outbox items for the task card, one line per change, and the
answers to task commands (docs/architecture.md, "The task's life in its group"). Every item is
keyed by its cause and group: a redelivered event queues nothing new."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import structlog

from bridge_lib.eventbus import Delivery
from bridge_lib.i18n import Translator, translator
from bridge_lib.task_state import KnownState
from contracts.events import (
    Event,
    PlanfixTaskStateChanged,
    TaskBound,
    TaskCommandAnswered,
    TaskStateSeen,
    TelegramMessageKind,
)
from services.relay.directory import BindingDirectory
from services.relay.to_telegram.handlers import item_for
from services.relay.to_telegram.items import Action, OutboxItem
from services.relay.to_telegram.sender import Outbox
from services.relay.to_telegram.task_texts import card_text, change_lines, command_answer_text

log = structlog.get_logger("relay.task_life")

# Changes told in a line: those a scenario or the reconciliation pass found (a state read on
# binding is where the card starts, not a change).
ANNOUNCED_CHANGES = frozenset({TaskStateSeen.WEBHOOK, TaskStateSeen.RECONCILE})


@dataclass(frozen=True, kw_only=True, eq=False)
class TaskLife:
    directory: BindingDirectory
    outbox: Outbox
    wake: Callable[[int], None]
    task_url: Callable[[int], str]
    task_state: Callable[[int], Awaitable[KnownState | None]]
    # RELAY_TASK_CARDS: without cards, the groups get the change lines only.
    cards: bool = True
    # The group's language (``directory.group_texts``).
    texts: Callable[[int], Translator] = lambda chat_id: translator()

    async def on_state_changed(self, event: PlanfixTaskStateChanged, delivery: Delivery) -> None:
        structlog.contextvars.bind_contextvars(task_number=event.task_number)
        groups = await self.directory.groups_for(event.task_number)
        if not groups:
            log.info("task_change_for_no_group")
            return
        url = self.task_url(event.task_number)
        for chat_id, thread_id in groups:
            t = self.texts(chat_id)
            lines = (
                change_lines(event.previous, event.state, t, url)
                if event.previous is not None and event.seen_on in ANNOUNCED_CHANGES
                else []
            )
            where = f"{chat_id}:{thread_id or 0}"
            if lines:
                key, text = f"task-change:{event.event_id}:{where}", "\n".join(lines)
                kind = TelegramMessageKind.TASK_CHANGE
                await self._enqueue(
                    item_for(event, key, chat_id, thread_id, kind, text=text, task_number=event.task_number)
                )
            if self.cards:
                card = card_text(event.task_number, event.state, url, t)
                await self._enqueue_card(
                    event, card, chat_id, thread_id, event.task_number, delivery.stream_seq
                )

    async def on_bound(self, event: TaskBound) -> None:
        if not self.cards:
            return
        known = await self.task_state(event.task_number)
        if known is None:
            log.info("task_card_waits_for_the_task_state", task_number=event.task_number)
            return
        t = self.texts(event.chat_id)
        card = card_text(event.task_number, known.event.state, self.task_url(event.task_number), t)
        await self._enqueue_card(event, card, event.chat_id, event.thread_id, event.task_number, known.seq)

    async def card_text(self, task_number: int, t: Translator) -> str | None:
        if not self.cards:
            return None
        known = await self.task_state(task_number)
        return card_text(task_number, known.event.state, self.task_url(task_number), t) if known else None

    async def on_command_answered(self, event: TaskCommandAnswered) -> None:
        item = item_for(
            event,
            f"task-command-answer:{event.event_id}",
            event.chat_id,
            event.thread_id,
            TelegramMessageKind.TASK_COMMAND_ANSWER,
            text=command_answer_text(event, self.texts(event.chat_id)),
            task_number=event.task_number,
            reply_to_message_id=event.message_id,
        )
        await self._enqueue(item)

    async def _enqueue_card(
        self, cause: Event, text: str, chat_id: int, thread_id: int | None, task_number: int, version: int
    ) -> None:
        key = f"task-card:{cause.event_id}:{chat_id}:{thread_id or 0}"
        kind = TelegramMessageKind.TASK_CARD
        item = item_for(
            cause, key, chat_id, thread_id, kind, action=Action.CARD, text=text, task_number=task_number
        )
        item.card_version = version
        await self._enqueue(item)

    async def _enqueue(self, item: OutboxItem) -> None:
        stored = await self.outbox.enqueue(item)
        log.info("telegram_item_queued" if stored else "telegram_item_already_queued", key=item.key)
        self.wake(item.chat_id)
