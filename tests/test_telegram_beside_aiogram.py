"""Bot API calls sent beside aiogram's request machinery: ``getUpdates`` (``polling.fetch_updates``)
answered as plain dicts, and ``sendMessage`` (``bridge_lib.telegram.sent_message_id``) answered
by the new message's id. What goes out is what aiogram would send, and every failure is the error
aiogram would raise for it, so the answers to a conflict, a flood wait, a refused text or a
revoked token stay as they were.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

import pytest
from aiogram.exceptions import (
    ClientDecodeError,
    TelegramBadRequest,
    TelegramConflictError,
    TelegramForbiddenError,
    TelegramMigrateToChat,
    TelegramNetworkError,
    TelegramRetryAfter,
    TelegramServerError,
    TelegramUnauthorizedError,
)
from aiogram.methods import SendMessage
from aiogram.types import ReplyParameters
from aiohttp import web

from bridge_lib.metrics import OUTBOUND_CALLS
from bridge_lib.telegram import make_bot, sent_message_id
from services.telegram_gateway.polling import RawUpdates, fetch_updates
from tests.support import named_cases

TOKEN = "42:polling-test"
UPDATE = {"update_id": 7, "message": {"message_id": 1, "date": 0, "chat": {"id": -5, "type": "group"}}}


async def answering(
    status: int, body: bytes, run: Any, method: str = "getUpdates"
) -> tuple[Any, list[dict[str, Any]]]:
    """Serve ``method`` with this answer while ``run(base_url)`` runs; its result and the
    requests the server got (a JSON body, or a form's fields)."""
    received: list[dict[str, Any]] = []

    async def answer(request: web.Request) -> web.Response:
        if request.content_type == "application/json":
            received.append(await request.json())
        else:
            received.append(dict(await request.post()))
        return web.Response(status=status, body=body, content_type="application/json")

    app = web.Application()
    app.router.add_post(f"/bot{TOKEN}/{method}", answer)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        return await run(f"http://127.0.0.1:{port}"), received
    finally:
        await runner.cleanup()


def poll_once(status: int, body: bytes) -> tuple[Any, list[dict[str, Any]]]:
    async def run(base_url: str) -> Any:
        bot = make_bot(TOKEN, api_base_url=base_url)
        try:
            method = RawUpdates(offset=8, timeout=0, allowed_updates=["message"])
            return await fetch_updates(bot, method, request_timeout=5)
        finally:
            await bot.session.close()

    return asyncio.run(answering(status, body, run))


def test_the_updates_come_as_dicts_and_the_request_is_json() -> None:
    updates, received = poll_once(200, json.dumps({"ok": True, "result": [UPDATE]}).encode())

    assert updates == [UPDATE]
    assert received == [{"offset": 8, "timeout": 0, "allowed_updates": ["message"]}]


def _error(code: int, description: str, **parameters: Any) -> bytes:
    answer: dict[str, Any] = {"ok": False, "error_code": code, "description": description}
    if parameters:
        answer["parameters"] = parameters
    return json.dumps(answer).encode()


@named_cases(
    ("status", "body", "raised", "counted_as"),
    [
        ("another poller", 409, _error(409, "Conflict: terminated by other getUpdates request"),
         TelegramConflictError, "client_error"),
        ("flood wait", 429, _error(429, "Too Many Requests: retry after 3", retry_after=3),
         TelegramRetryAfter, "throttled"),
        ("token revoked", 401, _error(401, "Unauthorized"), TelegramUnauthorizedError, "client_error"),
        ("Telegram down", 502, _error(502, "Bad Gateway"), TelegramServerError, "server_error"),
        ("not JSON", 200, b"<html>proxy error</html>", ClientDecodeError, "server_error"),
        ("not ok at 200", 200, _error(400, "Bad Request: odd"), Exception, "client_error"),
    ],
)  # fmt: skip
def test_a_failure_is_aiograms_error_and_is_counted(
    status: int, body: bytes, raised: type[Exception], counted_as: str
) -> None:
    counted = OUTBOUND_CALLS.labels("telegram", "getUpdates", counted_as)
    before = counted._value.get()

    with pytest.raises(raised):
        poll_once(status, body)

    assert counted._value.get() == before + 1


def test_a_flood_wait_says_how_long() -> None:
    with pytest.raises(TelegramRetryAfter) as refused:
        poll_once(429, _error(429, "Too Many Requests: retry after 3", retry_after=3))

    assert refused.value.retry_after == 3


def test_no_server_is_a_network_error() -> None:
    async def run() -> Any:
        bot = make_bot(TOKEN, api_base_url="http://127.0.0.1:9")  # discard port: refused
        try:
            return await fetch_updates(bot, RawUpdates(timeout=0), request_timeout=2)
        finally:
            await bot.session.close()

    with pytest.raises(TelegramNetworkError):
        asyncio.run(run())


# --- sendMessage --------------------------------------------------------------------------------


def send_once(status: int, body: bytes, **fields: Any) -> tuple[Any, list[dict[str, Any]]]:
    """``sent_message_id`` of a sendMessage, then the same method through aiogram itself."""

    async def run(base_url: str) -> Any:
        bot = make_bot(TOKEN, api_base_url=base_url)
        method = SendMessage(chat_id=-5, text="<b>hi</b>", **fields)
        try:
            message_id = await sent_message_id(bot, method)
            with contextlib.suppress(Exception):
                await bot(method)
            return message_id
        finally:
            await bot.session.close()

    return asyncio.run(answering(status, body, run, method="sendMessage"))


SENT = {"message_id": 77, "date": 0, "chat": {"id": -5, "type": "group"}, "text": "hi"}


def test_a_sent_message_gives_its_id_and_the_form_is_aiograms() -> None:
    message_id, (ours, aiograms) = send_once(
        200,
        json.dumps({"ok": True, "result": SENT}).encode(),
        message_thread_id=9,
        reply_parameters=ReplyParameters(message_id=5, allow_sending_without_reply=True),
    )

    assert message_id == 77
    assert ours == aiograms
    assert ours["parse_mode"] == "HTML"  # the bot's default, as aiogram fills it in
    assert json.loads(ours["link_preview_options"]) == {"is_disabled": True}
    assert json.loads(ours["reply_parameters"])["message_id"] == 5


@named_cases(
    ("status", "body", "raised"),
    [
        ("group flood wait", 429, _error(429, "Too Many Requests: retry after 5", retry_after=5),
         TelegramRetryAfter),
        ("HTML refused", 400, _error(400, "Bad Request: can't parse entities"), TelegramBadRequest),
        ("kicked", 403, _error(403, "Forbidden: bot was kicked from the group chat"), TelegramForbiddenError),
        ("group moved", 400, _error(400, "Bad Request: group chat was upgraded", migrate_to_chat_id=-1009),
         TelegramMigrateToChat),
        ("answer without a message", 200, json.dumps({"ok": True}).encode(), ClientDecodeError),
    ],
)  # fmt: skip
def test_a_refused_send_is_aiograms_error(status: int, body: bytes, raised: type[Exception]) -> None:
    with pytest.raises(raised):
        send_once(status, body)
