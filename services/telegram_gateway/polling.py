"""Long polling that confirms an update to Telegram only after it was handled.

When handling an update fails (NATS away, a stream electing a leader), the offset stays before
it and the same updates are fetched again, in order, after a growing pause; a repeat is dropped
by its key. ``Dispatcher.start_polling`` would confirm the update anyway (aiogram 3.31). Updates
are read one by one: a plain group text without the dispatcher (``plain_messages``), the rest as
aiogram's ``Update``; one aiogram cannot decode is kept as a dead letter (``undecodable``). Why
this way: docs/architecture.md.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable
from http import HTTPStatus
from typing import Any, cast

import msgspec
import structlog
from aiogram import Bot, Dispatcher
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.dispatcher.event.bases import UNHANDLED
from aiogram.exceptions import (
    ClientDecodeError,
    TelegramAPIError,
    TelegramConflictError,
    TelegramRetryAfter,
    TelegramUnauthorizedError,
)
from aiogram.methods import GetUpdates
from aiogram.types import Update
from aiogram.types.update import UpdateTypeLookupError
from aiogram.utils.backoff import Backoff, BackoffConfig
from pydantic import ValidationError

from bridge_lib.telegram import checked_result, counted_telegram_call, post_beside_aiogram
from services.telegram_gateway.plain_messages import plain_group_message, record_plain
from services.telegram_gateway.record import Record
from services.telegram_gateway.undecodable import UndecodableUpdates, update_id_of, what_failed

log = structlog.get_logger("telegram_gateway")

# Long enough to keep idle traffic low, well under the 60 s session timeout plus this value.
POLL_TIMEOUT_S = 25
BACKOFF = BackoffConfig(min_delay=1.0, max_delay=30.0, factor=1.6, jitter=0.1)


class RawUpdates(GetUpdates):
    """``getUpdates`` through aiogram's session (its errors, retries and call metrics), answered
    as plain dicts: each update is read on its own (``plain_messages`` or aiogram's ``Update``)."""

    __returning__ = list[dict[str, Any]]  # type: ignore[assignment]


class _UpdatesAnswer(msgspec.Struct):
    ok: bool
    result: list[dict[str, Any]] = []


_UPDATES_ANSWER = msgspec.json.Decoder(_UpdatesAnswer)


async def fetch_updates(bot: Bot, method: RawUpdates, *, request_timeout: int) -> list[dict[str, Any]]:
    """``getUpdates`` on aiogram's own aiohttp session, the request sent as JSON and a successful
    answer read by msgspec: aiogram's form building and its ``Response`` model cost the gateway
    more than the updates it reads when they come a few at a time. Any other answer goes
    through aiogram's ``check_response``, so the errors are aiogram's, as through ``bot(...)``."""
    session = bot.session
    if not isinstance(session, AiohttpSession):
        answer: Any = await bot(method, request_timeout=request_timeout)
        return cast(list[dict[str, Any]], answer)
    body = msgspec.json.encode(method.model_dump(exclude_none=True))
    with counted_telegram_call(method.__api_method__):
        status, content = await post_beside_aiogram(
            bot, method, body=body, headers=_JSON, timeout_s=request_timeout
        )
        if status == HTTPStatus.OK:
            with contextlib.suppress(msgspec.ValidationError, msgspec.DecodeError):
                answer_read = _UPDATES_ANSWER.decode(content)
                if answer_read.ok:
                    return answer_read.result
        return cast(list[dict[str, Any]], checked_result(bot, method, status, content))


_JSON = {"Content-Type": "application/json"}


async def poll_updates(
    bot: Bot,
    dispatcher: Dispatcher,
    *,
    allowed_updates: list[str],
    timeout_s: int = POLL_TIMEOUT_S,
    undecodable: UndecodableUpdates | None = None,
    plain_record: Record | None = None,
) -> None:
    """Fetch and handle updates until cancelled; an update whose handling failed is fetched again.

    Without ``undecodable`` an update aiogram cannot decode is only fetched again (and logged);
    with ``plain_record`` a plain group text is stored through it without the dispatcher.
    """
    offset: int | None = None
    backoff = Backoff(config=BACKOFF)
    handling_backoff = Backoff(config=BACKOFF)
    # Without this the HTTP request times out before Telegram ends the long poll.
    request_timeout = int(bot.session.timeout + timeout_s)
    while True:
        try:
            raw_updates = await fetch_updates(
                bot,
                RawUpdates(offset=offset, timeout=timeout_s, allowed_updates=allowed_updates),
                request_timeout=request_timeout,
            )
        except TelegramRetryAfter as error:
            log.warning("get_updates_flood_wait", retry_after_s=error.retry_after)
            await asyncio.sleep(error.retry_after)
            continue
        except TelegramUnauthorizedError:
            raise
        except ClientDecodeError as error:
            delay = next(backoff)
            # Not str(error): it holds the whole answer, people's messages included.
            detail = f"{error.message}: {type(error.original).__name__}"
            log.warning("get_updates_failed", error=type(error).__name__, detail=detail, retry_in_s=delay)
            await asyncio.sleep(delay)
            continue
        except TelegramAPIError as error:
            delay = next(backoff)
            event = (
                "get_updates_conflict" if isinstance(error, TelegramConflictError) else "get_updates_failed"
            )
            # A conflict means another gateway (or a webhook) uses this bot: only one may poll.
            log.warning(
                event, error=type(error).__name__, detail=redact(str(error), bot.token), retry_in_s=delay
            )
            await asyncio.sleep(delay)
            continue
        backoff.reset()
        offset = await _handle_in_order(
            bot, dispatcher, plain_record, raw_updates, offset, undecodable, handling_backoff
        )


async def _handle_in_order(
    bot: Bot,
    dispatcher: Dispatcher,
    plain_record: Record | None,
    raw_updates: list[dict[str, Any]],
    offset: int | None,
    undecodable: UndecodableUpdates | None,
    backoff: Backoff,
) -> int | None:
    """Handle the updates in order, a plain group text without the dispatcher, one aiogram cannot
    decode as a dead letter; the offset that confirms them (up to the first whose event or dead
    letter could not be stored: it comes again)."""
    for raw in raw_updates:
        plain = plain_group_message(raw) if plain_record is not None else None
        if plain is not None and plain_record is not None:
            event, subject = plain
            handled = await _handled_or_paused(
                event.update_id, record_plain(plain_record, event, subject), bot.token, backoff
            )
        else:
            try:
                update = Update.model_validate(raw, context={"bot": bot})
            except ValidationError as error:
                handled = await _dead_lettered_or_paused(raw, error, undecodable, backoff)
            else:
                handled = await _handled_or_paused(
                    update.update_id, handle_update(bot, dispatcher, update), bot.token, backoff
                )
        if not handled:
            return offset  # fetched again from here: this update comes first
        update_id = update_id_of(raw)
        if update_id is not None:
            # max(): an update delivered again must not move the offset back.
            offset = update_id + 1 if offset is None else max(offset, update_id + 1)
    return offset


async def _handled_or_paused(
    update_id: int | None, handling: Awaitable[None], token: str, backoff: Backoff
) -> bool:
    """Handle one update; False (after a growing pause) when its event could not be stored."""
    try:
        with structlog.contextvars.bound_contextvars(update_id=update_id):
            await handling
    except Exception as error:
        delay = next(backoff)
        log.warning(
            "update_not_stored",
            update_id=update_id,
            error=redact(f"{type(error).__name__}: {error}", token),
            retry_in_s=delay,
        )
        await asyncio.sleep(delay)
        return False
    backoff.reset()
    return True


async def _dead_lettered_or_paused(
    raw: dict[str, Any], error: ValidationError, undecodable: UndecodableUpdates | None, backoff: Backoff
) -> bool:
    """An update aiogram cannot read: kept as a dead letter and confirmed; False (after a pause)
    when it could not be kept, or there is nowhere to keep it."""
    if undecodable is None:
        delay = next(backoff)
        log.warning(
            "update_undecodable", update_id=update_id_of(raw), problems=what_failed(error), retry_in_s=delay
        )
        await asyncio.sleep(delay)
        return False
    log.warning("update_undecodable_dead_lettered", update_id=update_id_of(raw), problems=what_failed(error))
    try:
        await undecodable.store(raw, error)
    except Exception as store_error:
        delay = next(backoff)
        log.warning("dead_letter_not_stored", error=type(store_error).__name__, retry_in_s=delay)
        await asyncio.sleep(delay)
        return False
    return True


async def handle_update(bot: Bot, dispatcher: Dispatcher, update: Update) -> None:
    """Feed one update to the handlers (polling and webhook alike); a publish failure raises.

    An update no handler takes (a channel post, a kind not asked for) is logged with why, so
    every update leaves a trace: an event, or a line saying why there is none.
    """
    with structlog.contextvars.bound_contextvars(update_id=update.update_id):
        result = await dispatcher.feed_update(bot, update)
        if result is UNHANDLED:
            log.info("update_not_handled", update_type=_kind_of(update), why=NOT_HANDLED_WHY)


NOT_HANDLED_WHY = "no handler takes this kind of update or chat (only group messages and changes are carried)"


def _kind_of(update: Update) -> str:
    try:
        return update.event_type
    except UpdateTypeLookupError:
        return "unknown"


def redact(text: str, token: str) -> str:
    """Error texts can carry request URLs, and those carry the token."""
    return text.replace(token, "<token>") if token else text
