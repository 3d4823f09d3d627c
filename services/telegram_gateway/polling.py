"""Long polling that confirms an update to Telegram only after it was handled.

Why not ``Dispatcher.start_polling``: with ``handle_as_tasks=False`` it does handle updates in
order, but when a handler raises it logs the error, moves the offset past the update anyway and
confirms it with the next ``getUpdates`` (aiogram 3.31 ``Dispatcher._process_update`` returns
True on any exception). An event that could not be stored would be lost. Here, when handling
an update fails (JetStream unreachable, a stream electing a new leader after a node died), the
offset stays before it, the rest of the batch is left, and after a growing pause the same
updates are fetched again, in order; JetStream's ``Nats-Msg-Id`` drops a repeat if the event had
been stored after all. The process keeps running through a NATS outage.
"""

from __future__ import annotations

import asyncio

import structlog
from aiogram import Bot, Dispatcher
from aiogram.exceptions import (
    ClientDecodeError,
    TelegramAPIError,
    TelegramConflictError,
    TelegramRetryAfter,
    TelegramUnauthorizedError,
)
from aiogram.types import Update
from aiogram.utils.backoff import Backoff, BackoffConfig

log = structlog.get_logger("telegram_gateway")

# Long enough to keep idle traffic low, well under the 60 s session timeout plus this value.
POLL_TIMEOUT_S = 25
BACKOFF = BackoffConfig(min_delay=1.0, max_delay=30.0, factor=1.6, jitter=0.1)


async def poll_updates(
    bot: Bot, dispatcher: Dispatcher, *, allowed_updates: list[str], timeout_s: int = POLL_TIMEOUT_S
) -> None:
    """Fetch and handle updates until cancelled; an update whose handling failed is fetched again."""
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
        except (TelegramAPIError, ClientDecodeError) as error:
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
            try:
                await _handle(bot, dispatcher, update)
            except Exception as error:
                delay = next(handling_backoff)
                log.warning(
                    "update_not_stored",
                    update_id=update.update_id,
                    error=redact(f"{type(error).__name__}: {error}", bot.token),
                    retry_in_s=delay,
                )
                await asyncio.sleep(delay)
                break  # fetch again from the same offset: this update comes first
            handling_backoff.reset()
            # max(): an update delivered again must not move the offset back.
            offset = update.update_id + 1 if offset is None else max(offset, update.update_id + 1)


async def _handle(bot: Bot, dispatcher: Dispatcher, update: Update) -> None:
    with structlog.contextvars.bound_contextvars(update_id=update.update_id):
        await dispatcher.feed_update(bot, update)


def redact(text: str, token: str) -> str:
    """Error texts can carry request URLs, and those carry the token."""
    return text.replace(token, "<token>") if token else text
