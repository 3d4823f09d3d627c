"""Long polling that confirms an update to Telegram only after it was handled.

When handling an update fails (NATS away, a stream electing a leader), the offset stays before
it and the same updates are fetched again, in order, after a growing pause; a repeat is dropped
by its key. ``Dispatcher.start_polling`` would confirm the update anyway (aiogram 3.31). A batch
aiogram cannot decode is decoded update by update, the bad ones kept as dead letters
(``undecodable``). Why this way: docs/architecture.md.
"""

from __future__ import annotations

import asyncio

import structlog
from aiogram import Bot, Dispatcher
from aiogram.dispatcher.event.bases import UNHANDLED
from aiogram.exceptions import (
    ClientDecodeError,
    TelegramAPIError,
    TelegramConflictError,
    TelegramRetryAfter,
    TelegramUnauthorizedError,
)
from aiogram.types import Update
from aiogram.types.update import UpdateTypeLookupError
from aiogram.utils.backoff import Backoff, BackoffConfig
from pydantic import ValidationError

from services.telegram_gateway.undecodable import UndecodableUpdates, raw_updates_of, update_id_of

log = structlog.get_logger("telegram_gateway")

# Long enough to keep idle traffic low, well under the 60 s session timeout plus this value.
POLL_TIMEOUT_S = 25
BACKOFF = BackoffConfig(min_delay=1.0, max_delay=30.0, factor=1.6, jitter=0.1)


async def poll_updates(
    bot: Bot,
    dispatcher: Dispatcher,
    *,
    allowed_updates: list[str],
    timeout_s: int = POLL_TIMEOUT_S,
    undecodable: UndecodableUpdates | None = None,
) -> None:
    """Fetch and handle updates until cancelled; an update whose handling failed is fetched again.

    Without ``undecodable`` a batch aiogram cannot decode is only retried (and logged).
    """
    offset: int | None = None
    backoff = Backoff(config=BACKOFF)
    handling_backoff = Backoff(config=BACKOFF)
    # Without this the HTTP request times out before Telegram ends the long poll.
    request_timeout = int(bot.session.timeout + timeout_s)
    while True:
        try:
            updates = await bot.get_updates(
                offset=offset,
                timeout=timeout_s,
                allowed_updates=allowed_updates,
                request_timeout=request_timeout,
            )
        except TelegramRetryAfter as error:
            log.warning("get_updates_flood_wait", retry_after_s=error.retry_after)
            await asyncio.sleep(error.retry_after)
            continue
        except TelegramUnauthorizedError:
            raise
        except ClientDecodeError as error:
            raw_updates = raw_updates_of(error.data)
            if raw_updates is not None and undecodable is not None:
                confirmed = await _handle_one_by_one(
                    bot, dispatcher, raw_updates, offset, undecodable, handling_backoff
                )
                if confirmed != offset:
                    offset = confirmed
                    backoff.reset()
                    continue
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
        for update in updates:
            if not await _handled_or_paused(bot, dispatcher, update, handling_backoff):
                break  # fetch again from the same offset: this update comes first
            # max(): an update delivered again must not move the offset back.
            offset = update.update_id + 1 if offset is None else max(offset, update.update_id + 1)


async def _handled_or_paused(bot: Bot, dispatcher: Dispatcher, update: Update, backoff: Backoff) -> bool:
    """Handle one update; False (after a growing pause) when its event could not be stored."""
    try:
        await handle_update(bot, dispatcher, update)
    except Exception as error:
        delay = next(backoff)
        log.warning(
            "update_not_stored",
            update_id=update.update_id,
            error=redact(f"{type(error).__name__}: {error}", bot.token),
            retry_in_s=delay,
        )
        await asyncio.sleep(delay)
        return False
    backoff.reset()
    return True


async def _handle_one_by_one(
    bot: Bot,
    dispatcher: Dispatcher,
    raw_updates: list[object],
    offset: int | None,
    undecodable: UndecodableUpdates,
    handling_backoff: Backoff,
) -> int | None:
    """Handle what decodes, dead-letter what does not, in order; the offset that confirms them
    (up to the first update whose event or dead letter could not be stored: it comes again)."""
    log.warning(
        "get_updates_batch_undecodable",
        updates=len(raw_updates),
        what_now="decoding the updates one by one; those that cannot be read become dead letters",
    )
    for raw in raw_updates:
        try:
            update = Update.model_validate(raw, context={"bot": bot})
        except ValidationError as error:
            try:
                await undecodable.store(raw, error)
            except Exception as store_error:
                delay = next(handling_backoff)
                log.warning("dead_letter_not_stored", error=type(store_error).__name__, retry_in_s=delay)
                await asyncio.sleep(delay)
                return offset
        else:
            if not await _handled_or_paused(bot, dispatcher, update, handling_backoff):
                return offset
        update_id = update_id_of(raw)
        if update_id is not None:
            offset = update_id + 1 if offset is None else max(offset, update_id + 1)
    return offset


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
