"""The task's life in its groups (issue 18): outbox items for the task card, one line per change,
and the answers to task commands.

* ``PlanfixTaskStateChanged`` (the planfix gateway stored a new state of a task): in each group
  bound to the task, the change's lines (when it follows a known state and was seen through a
  scenario's notice), then the card, posted or edited (``task_card``).
* ``TaskBound``: the new group's card, drawn from the task's last known state; when none is
  known yet the gateway is reading the task, and its state event brings the card.
* ``/status``: the card's text under the answer.
* ``TaskCommandAnswered``: the result of /done, /deadline or /assign, or why it was refused,
  as a reply to the command.

Every item is keyed by its cause and group: a redelivered event queues nothing new.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

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
from services.relay.to_telegram.outbox import Action, Outbox, OutboxItem
from services.relay.to_telegram.task_texts import card_text, change_lines, command_answer_text

log = structlog.get_logger("relay.task_life")

# Changes told in a line: those a scenario or the reconciliation pass found (a state read on
# binding is where the card starts, not a change).
ANNOUNCED_CHANGES = frozenset({TaskStateSeen.WEBHOOK, TaskStateSeen.RECONCILE})


def _item(
    cause: Event, key: str, chat_id: int, thread_id: int | None, action: Action, kind: TelegramMessageKind
) -> OutboxItem:
    return OutboxItem(
        key=key,
        chat_id=chat_id,
        thread_id=thread_id,
        action=action,
        kind=kind,
        correlation_id=cause.correlation_id,
        causation_id=cause.event_id,
    )


class TaskLife:
    def __init__(
        self,
        *,
        directory: BindingDirectory,
        outbox: Outbox,
        wake: Callable[[int], None],
        task_url: Callable[[int], str],
        task_state: Callable[[int], Awaitable[KnownState | None]],
        cards: bool = True,
        texts: Callable[[int], Translator] = lambda chat_id: translator(),
    ) -> None:
        # RELAY_TASK_CARDS: without cards, the groups get the change lines only.
        self._cards = cards
        # The group's language (``directory.group_texts``).
        self._texts = texts
        self._directory = directory
        self._outbox = outbox
        self._wake = wake
        self._task_url = task_url
        self._task_state = task_state

    async def on_state_changed(self, event: PlanfixTaskStateChanged, delivery: Delivery) -> None:
        structlog.contextvars.bind_contextvars(task_number=event.task_number)
        groups = await self._directory.groups_for(event.task_number)
        if not groups:
            log.info("task_change_for_no_group")
            return
        url = self._task_url(event.task_number)
        for chat_id, thread_id in groups:
            t = self._texts(chat_id)
            lines = (
                change_lines(event.previous, event.state, t, url)
                if event.previous is not None and event.seen_on in ANNOUNCED_CHANGES
                else []
            )
            where = f"{chat_id}:{thread_id or 0}"
            if lines:
                item = _item(
                    event, f"task-change:{event.event_id}:{where}", chat_id, thread_id, Action.SEND,
                    TelegramMessageKind.TASK_CHANGE,
                )  # fmt: skip
                item.text, item.task_number = "\n".join(lines), event.task_number
                await self._enqueue(item)
            if self._cards:
                card = card_text(event.task_number, event.state, url, t)
                await self._enqueue_card(
                    event, card, chat_id, thread_id, event.task_number, delivery.stream_seq
                )

    async def on_bound(self, event: TaskBound) -> None:
        if not self._cards:
            return
        known = await self._task_state(event.task_number)
        if known is None:
            log.info("task_card_waits_for_the_task_state", task_number=event.task_number)
            return
        t = self._texts(event.chat_id)
        card = card_text(event.task_number, known.event.state, self._task_url(event.task_number), t)
        await self._enqueue_card(event, card, event.chat_id, event.thread_id, event.task_number, known.seq)

    async def card_text(self, task_number: int, t: Translator) -> str | None:
        if not self._cards:
            return None
        known = await self._task_state(task_number)
        return card_text(task_number, known.event.state, self._task_url(task_number), t) if known else None

    async def on_command_answered(self, event: TaskCommandAnswered) -> None:
        item = _item(
            event, f"task-command-answer:{event.event_id}", event.chat_id, event.thread_id, Action.SEND,
            TelegramMessageKind.TASK_COMMAND_ANSWER,
        )  # fmt: skip
        item.text = command_answer_text(event, self._texts(event.chat_id))
        item.task_number = event.task_number
        item.reply_to_message_id = event.message_id
        await self._enqueue(item)

    async def _enqueue_card(
        self, cause: Event, text: str, chat_id: int, thread_id: int | None, task_number: int, version: int
    ) -> None:
        where = f"{chat_id}:{thread_id or 0}"
        item = _item(cause, f"task-card:{cause.event_id}:{where}", chat_id, thread_id, Action.CARD,
                     TelegramMessageKind.TASK_CARD)  # fmt: skip
        item.text, item.task_number, item.card_version = text, task_number, version
        await self._enqueue(item)

    async def _enqueue(self, item: OutboxItem) -> None:
        stored = await self._outbox.enqueue(item)
        log.info("telegram_item_queued" if stored else "telegram_item_already_queued", key=item.key)
        self._wake(item.chat_id)
