"""Updates Telegram sent that aiogram cannot decode: kept as dead letters, never a stuck poll.

aiogram decodes a ``getUpdates`` answer as a whole, so one update it cannot read (a field newer
than its models, a value of an unexpected type) fails the whole batch with
``ClientDecodeError``; asked again, Telegram answers the same batch, for ever. ``polling`` then
decodes the raw updates one by one: the good ones are handled, each bad one is stored here, on
``deadletter.telegram_gateway`` with its raw JSON and the reason, and then confirmed with the rest.
In webhook mode (``webhook``) the same holds for one posted update: stored here, answered 200,
so Telegram does not send it again and again.
"""

from __future__ import annotations

import base64
import hashlib
from typing import Any

import msgspec
import structlog
from pydantic import ValidationError

from bridge_lib.eventbus import EventPublisher
from bridge_lib.redaction import redact
from contracts.events import (
    TELEGRAM_UPDATES_SOURCE,
    DeadLetterReason,
    MessageDeadLettered,
    dead_letter_key,
    root_envelope,
)
from contracts.subjects import dead_letter

log = structlog.get_logger("telegram_gateway")

# Its dead letters' "consumer" (and subject token): the gateway itself.
CONSUMER = "telegram_gateway"
# Where an update came from, as its dead letter's "original subject".
FROM_POLLING = "getUpdates"
FROM_WEBHOOK = "webhook"


def raw_updates_of(answer: Any) -> list[Any] | None:
    """The raw updates of a successful getUpdates answer, None for anything else."""
    if isinstance(answer, dict) and answer.get("ok") is True and isinstance(answer.get("result"), list):
        return list(answer["result"])
    return None


def update_id_of(raw: Any) -> int | None:
    update_id = raw.get("update_id") if isinstance(raw, dict) else None
    return update_id if isinstance(update_id, int) and not isinstance(update_id, bool) else None


def what_failed(error: ValidationError) -> str:
    """Where and how the update broke aiogram's models, without the values (they are people's text)."""
    return "; ".join(f"{'.'.join(map(str, problem['loc']))}: {problem['type']}" for problem in error.errors())


class UndecodableUpdates:
    def __init__(self, publisher: EventPublisher) -> None:
        self._publisher = publisher

    async def store(
        self, raw: Any, error: ValidationError, *, body: bytes | None = None, came_by: str = FROM_POLLING
    ) -> None:
        """Store ``raw`` (``body``: the bytes as received, when there are any) as a dead letter;
        raises when it cannot be stored (it stays unconfirmed)."""
        await self._store(
            msgspec.json.encode(raw) if body is None else body,
            update_id_of(raw),
            detail=f"aiogram cannot decode this update: {error}",
            problems=what_failed(error),
            came_by=came_by,
        )

    async def store_unreadable(self, body: bytes, error: Exception, *, came_by: str = FROM_WEBHOOK) -> None:
        """Store a body that is not JSON at all (Telegram never sends one; nothing is lost anyway)."""
        # msgspec and codec errors name a position and a reason, never the body's text.
        reason = f"{type(error).__name__}: {error}"
        await self._store(body, None, detail=f"not a JSON update: {reason}", problems=reason, came_by=came_by)

    async def _store(
        self, body: bytes, update_id: int | None, *, detail: str, problems: str, came_by: str
    ) -> None:
        seq = update_id if update_id is not None else 0
        # One dead letter per update, however often Telegram sends it.
        key = (
            dead_letter_key(TELEGRAM_UPDATES_SOURCE, seq, CONSUMER)
            if update_id is not None
            else f"dlq:{TELEGRAM_UPDATES_SOURCE}:body:{hashlib.sha256(body).hexdigest()}"
        )
        dead = MessageDeadLettered(
            **root_envelope(key, caused_by=f"tg:update:{seq}"),
            consumer=CONSUMER,
            stream=TELEGRAM_UPDATES_SOURCE,
            stream_seq=seq,
            original_subject=came_by,
            original_headers={},
            body_b64=base64.b64encode(body).decode("ascii"),
            reason=DeadLetterReason.UNDECODABLE,
            detail=redact(detail)[:2000],
            num_delivered=1,
        )
        stored = await self._publisher.publish(dead, subject=dead_letter(CONSUMER), msg_id=key)
        log.error(
            "telegram_update_dead_lettered",
            update_id=update_id,
            came_by=came_by,
            problems=problems[:500],
            duplicate=not stored,
            hint="`bridge dlq list` shows it with its raw JSON; it cannot be retried, only read and dropped",
        )
