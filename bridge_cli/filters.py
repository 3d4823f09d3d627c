"""Filters shared by ``events tail``, ``events dump`` and ``events replay``."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import msgspec

from contracts.events import AnyEvent, MessageDeadLettered


class EventFilter(msgspec.Struct, frozen=True, kw_only=True):
    chat_id: int | None = None
    task_number: int | None = None
    # A whole tag ("telegram.message_received.v1") or any part of one ("message_received").
    event_type: str | None = None
    correlation_id: str | None = None

    def matches(self, event: AnyEvent | None) -> bool:
        if event is None:
            # Undecodable messages match only when nothing narrower was asked for.
            return self.chat_id is None and self.task_number is None and self.event_type is None
        if self.chat_id is not None and getattr(event, "chat_id", None) != self.chat_id:
            return False
        if self.task_number is not None and getattr(event, "task_number", None) != self.task_number:
            return False
        if self.event_type is not None and self.event_type not in event.tag:
            return False
        return self.correlation_id is None or event.correlation_id == self.correlation_id


def parse_moment(text: str) -> datetime:
    """An ISO time (UTC when no zone is given) or an age such as ``15m``, ``2h``, ``3d``."""
    text = text.strip()
    units = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}
    if text[:-1].isdigit() and text[-1:] in units:
        return datetime.now(UTC) - timedelta(**{units[text[-1]]: int(text[:-1])})
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def is_dead_letter(event: AnyEvent | None) -> bool:
    return isinstance(event, MessageDeadLettered)
