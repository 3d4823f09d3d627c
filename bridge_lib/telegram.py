"""The aiogram ``Bot`` every service builds the same way: HTML by default, configurable API server.

``TELEGRAM_API_BASE_URL`` points the real aiogram client at another Bot API server: a local
``telegram-bot-api`` or, in tests and the sandbox, the fake one.
"""

from __future__ import annotations

import contextlib
import time
import urllib.parse
from collections.abc import Iterator
from http import HTTPStatus
from typing import Any, TypeVar

import aiohttp
import msgspec
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
from aiogram.methods import TelegramMethod
from aiogram.types import Message

from bridge_lib.metrics import OUTBOUND_CALLS, OUTBOUND_SECONDS

log = structlog.get_logger("telegram")

T = TypeVar("T")

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


class _SentMessage(msgspec.Struct):
    message_id: int


class _SentAnswer(msgspec.Struct):
    ok: bool
    result: _SentMessage | None = None


_SENT_ANSWER = msgspec.json.Decoder(_SentAnswer)
_FORM = {"Content-Type": "application/x-www-form-urlencoded"}


async def sent_message_id(bot: Bot, method: TelegramMethod[Message]) -> int:
    """Send a method without files that Telegram answers with the message it made (``sendMessage``)
    and return that message's id. The form is aiogram's (its defaults and values, urlencoded as
    its session does); a successful answer is read by msgspec for the id alone instead of
    validated whole as aiogram's ``Message`` (that costs more than the rest of the send)."""
    session = bot.session
    if not isinstance(session, AiohttpSession):
        return (await bot(method)).message_id
    files: dict[str, Any] = {}
    fields = {}
    for key, value in method.model_dump(warnings=False).items():
        prepared = session.prepare_value(value, bot=bot, files=files)
        if prepared:
            fields[key] = prepared
    if files:
        return (await bot(method)).message_id
    # doseq as aiohttp's form: a str enum (the default ParseMode) is sent as its value.
    with counted_telegram_call(method.__api_method__):
        status, content = await post_beside_aiogram(
            bot,
            method,
            body=urllib.parse.urlencode(fields, doseq=True).encode(),
            headers=_FORM,
            timeout_s=session.timeout,
        )
        if status == HTTPStatus.OK:
            with contextlib.suppress(msgspec.ValidationError, msgspec.DecodeError):
                answer = _SENT_ANSWER.decode(content)
                if answer.ok and answer.result is not None:
                    return answer.result.message_id
        return checked_result(bot, method, status, content).message_id


async def post_beside_aiogram(
    bot: Bot, method: TelegramMethod[Any], *, body: bytes, headers: dict[str, str], timeout_s: float
) -> tuple[int, bytes]:
    """POST a Bot API method on aiogram's own aiohttp session without its request machinery;
    the status and the body. A network failure is aiogram's ``TelegramNetworkError``."""
    session = bot.session
    assert isinstance(session, AiohttpSession)
    url = session.api.api_url(token=bot.token, method=method.__api_method__)
    http = await session.create_session()
    try:
        async with http.post(
            url, data=body, headers=headers, timeout=aiohttp.ClientTimeout(total=timeout_s)
        ) as response:
            return response.status, await response.read()
    except TimeoutError as error:
        raise TelegramNetworkError(method=method, message="Request timeout error") from error
    except aiohttp.ClientError as error:
        raise TelegramNetworkError(method=method, message=f"{type(error).__name__}: {error}") from error


def checked_result(bot: Bot, method: TelegramMethod[T], status: int, content: bytes) -> T:
    """An answer read as aiogram reads it: the result, or aiogram's error for it (also for a
    success without a result)."""
    text = content.decode("utf-8", "replace")
    result = bot.session.check_response(bot=bot, method=method, status_code=status, content=text).result
    if result is None:
        raise ClientDecodeError("Failed to deserialize object", ValueError("no result"), text)
    return result


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
