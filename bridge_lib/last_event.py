"""The last event stored on one subject: a direct read by subject (``get_last_msg``), no fold.

Used where one subject holds the current word on something (a task's state, a group's move to a
supergroup, a bind request's decision). A subject never written, aged out of its stream, or
holding what this version cannot decode reads as nothing stored.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import msgspec
import nats.js.errors

from contracts.events import AnyEvent, decode_event


class LastEvent(NamedTuple):
    event: AnyEvent
    # The stored message (its ``seq`` orders it among the stream's).
    message: Any


async def last_event(js: Any, stream: str, subject: str) -> LastEvent | None:
    """The event last stored on ``subject`` of ``stream``, or None."""
    try:
        raw = await js.get_last_msg(stream, subject)
    except nats.js.errors.NotFoundError:
        return None
    try:
        return LastEvent(decode_event(raw.data or b""), raw)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None
