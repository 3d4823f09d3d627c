"""The aiogram ``Bot`` every service builds the same way: HTML by default, configurable API server.

``TELEGRAM_API_BASE_URL`` points the real aiogram client at another Bot API server: a local
``telegram-bot-api`` or, in tests and the sandbox, the fake one.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import Any

import structlog
from aiogram import Bot
from aiogram.client.default import DefaultBotProperties
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.session.middlewares.base import BaseRequestMiddleware, NextRequestMiddlewareType
from aiogram.client.telegram import TelegramAPIServer
from aiogram.enums import ParseMode
from aiogram.exceptions import (
    ClientDecodeError,
    TelegramAPIError,
    TelegramNetworkError,
    TelegramRetryAfter,
    TelegramServerError,
    TelegramUnauthorizedError,
)

from bridge_lib.metrics import OUTBOUND_CALLS, OUTBOUND_SECONDS

log = structlog.get_logger("telegram")

TOKEN_REFUSED = "Telegram answered 401 Unauthorized: TELEGRAM_BOT_TOKEN is wrong or was revoked"
TOKEN_HINT = "copy the bot's token again from @BotFather (/mybots -> the bot -> API Token)"


def make_bot(token: str, *, api_base_url: str = "https://api.telegram.org", timeout_s: float = 60.0) -> Bot:
    session = AiohttpSession(api=TelegramAPIServer.from_base(api_base_url.rstrip("/")), timeout=timeout_s)
    session.middleware(TelegramCallMetrics())
    return Bot(
        token=token,
        session=session,
        default=DefaultBotProperties(parse_mode=ParseMode.HTML, link_preview_is_disabled=True),
    )


class TelegramCallMetrics(BaseRequestMiddleware):
    """aiogram session middleware: counts every Bot API call by method and result."""

    async def __call__(self, make_request: NextRequestMiddlewareType[Any], bot: Any, method: Any) -> Any:
        with counted_telegram_call(str(getattr(type(method), "__api_method__", "call"))):
            return await make_request(bot, method)


@contextlib.contextmanager
def counted_telegram_call(operation: str) -> Iterator[None]:
    """Count one Bot API call by its result (aiogram's error types), and time it; also for a
    call sent beside aiogram's session (``getUpdates`` in the gateway)."""
    started = time.perf_counter()
    result = "ok"
    try:
        yield
    except TelegramRetryAfter:
        result = "throttled"
        raise
    except TelegramNetworkError:
        result = "network_error"
        raise
    except (TelegramServerError, ClientDecodeError):
        # An answer that is not the API's JSON (a proxy's error page) is the other side's fault.
        result = "server_error"
        raise
    except TelegramAPIError:
        result = "client_error"
        raise
    finally:
        OUTBOUND_CALLS.labels("telegram", operation, result).inc()
        OUTBOUND_SECONDS.labels("telegram", operation).observe(time.perf_counter() - started)


async def telegram_self_check(bot: Bot) -> bool:
    """False when Telegram refuses the token (the operator must fix it; the service exits 2);
    True otherwise: an unreachable Telegram only warns, the work waits for it."""
    try:
        me = await bot.get_me()
    except TelegramUnauthorizedError:
        log.error("telegram_token_refused", detail=TOKEN_REFUSED, hint=TOKEN_HINT)
        return False
    except (TelegramAPIError, ClientDecodeError) as error:
        # Only the type: an aiogram error text can hold the request URL, and the URL the token.
        log.warning(
            "telegram_unreachable_at_start",
            error=type(error).__name__,
            hint="check TELEGRAM_API_BASE_URL; the work waits until Telegram answers",
        )
    else:
        log.info("telegram_self_check_ok", bot_username=me.username)
    return True
