"""What waits in a group's outbox: one message, edit, deletion or task card (data only; the
outbox that stores them and the sender that drains them are in ``sender.py``)."""

from __future__ import annotations

import enum
from datetime import datetime

import msgspec

from contracts.events import PlanfixFile, TelegramMessageKind


class Action(enum.StrEnum):
    SEND = "send"
    EDIT = "edit"
    DELETE = "delete"
    # The group's task card: posted and pinned the first time, edited after (``task_card``).
    CARD = "card"


class ItemState(enum.StrEnum):
    PENDING = "pending"
    DONE = "done"
    DEAD = "dead"


class OutboxItem(msgspec.Struct, kw_only=True):
    # What it carries ("telegram-message:<comment>:<chat>:<thread>", ...): a redelivered event
    # makes the same key and stores nothing new.
    key: str
    chat_id: int
    action: Action
    kind: TelegramMessageKind
    correlation_id: str
    causation_id: str
    seq: int = 0
    thread_id: int | None = None
    # Telegram HTML: the whole text of the message (author line included).
    text: str = ""
    # Caption for the files when ``text`` is too long to be one (the author line).
    short_caption: str = ""
    files: list[PlanfixFile] = msgspec.field(default_factory=list)
    task_number: int | None = None
    comment_id: int | None = None
    reply_to_message_id: int | None = None
    state: ItemState = ItemState.PENDING
    # step index (as text, a MongoDB key) -> message ids that step produced
    progress: dict[str, list[int]] = msgspec.field(default_factory=dict)
    attempts: int = 0
    reason: str | None = None
    enqueued_at: datetime | None = None
    # CARD: the stream sequence of the task state the card shows (an older one never wins).
    card_version: int | None = None
