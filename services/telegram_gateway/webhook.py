"""Webhook mode: Telegram POSTs each update to us instead of being polled.

The endpoint checks ``X-Telegram-Bot-Api-Secret-Token`` before it reads the body (wrong or
missing: 401, nothing read, nothing published), refuses bodies over the limit (413), and
answers 200 only after the update's event is stored: a failure is a 500, and Telegram delivers
the update again later, as an unconfirmed update is in polling mode. Updates are handled one at
a time, in the order they arrive (with the default ``max_connections`` of 1 Telegram sends them
in order).

An update aiogram cannot decode (a field newer than its models), or a body that is not JSON at
all, is stored as a dead letter (``undecodable``) and answered 200, as polling confirms such an
update: a 4xx would make Telegram send it again and again, holding back every update after it.
Only when the dead letter cannot be stored is the answer a 500 (Telegram sends it again later).
"""

from __future__ import annotations

import asyncio
import hmac
from collections.abc import Awaitable
from urllib.parse import urlsplit

import msgspec
import structlog
from aiogram import Bot, Dispatcher
from aiogram.types import Update
from aiohttp import web
from pydantic import ValidationError

from bridge_lib.http_body import read_bounded
from services.telegram_gateway.polling import handle_update
from services.telegram_gateway.undecodable import FROM_WEBHOOK, UndecodableUpdates

log = structlog.get_logger("telegram_gateway.webhook")

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
BODY_READ_TIMEOUT_S = 10.0


def webhook_path(url: str) -> str:
    """The path to listen on: the path of the public URL (a proxy forwards it unchanged)."""
    return urlsplit(url).path or "/"


class TelegramWebhook:
    def __init__(
        self,
        *,
        bot: Bot,
        dispatcher: Dispatcher,
        undecodable: UndecodableUpdates,
        secret: str,
        max_body: int,
        path: str,
    ) -> None:
        self._bot = bot
        self._dispatcher = dispatcher
        self._undecodable = undecodable
        self._secret = secret.encode()
        self._max_body = max_body
        self._path = path
        self._in_order = asyncio.Lock()

    def app(self) -> web.Application:
        app = web.Application(client_max_size=self._max_body)
        app.router.add_post(self._path, self.handle)
        return app

    async def handle(self, request: web.Request) -> web.Response:
        given = request.headers.get(SECRET_HEADER, "").encode()
        if not hmac.compare_digest(given, self._secret):
            log.warning("telegram_webhook_bad_secret", remote=request.remote)
            return web.json_response({"error": "unauthorized"}, status=401)
        if request.content_length is not None and request.content_length > self._max_body:
            return web.json_response({"error": "body too large"}, status=413)
        try:
            raw = await self._read_body(request)
        except TimeoutError:
            return web.json_response({"error": "body not received in time"}, status=408)
        if raw is None:
            return web.json_response({"error": "body too large"}, status=413)
        async with self._in_order:
            try:
                value = msgspec.json.decode(raw)
            except (msgspec.DecodeError, UnicodeDecodeError) as error:
                unreadable = self._undecodable.store_unreadable(raw, error, came_by=FROM_WEBHOOK)
                return await self._dead_letter(unreadable)
            try:
                update = Update.model_validate(value, context={"bot": self._bot})
            except ValidationError as error:
                undecodable = self._undecodable.store(value, error, body=raw, came_by=FROM_WEBHOOK)
                return await self._dead_letter(undecodable)
            try:
                await handle_update(self._bot, self._dispatcher, update)
            except Exception:
                # Not stored: Telegram keeps the update and sends it again later.
                log.exception("telegram_webhook_update_failed", update_id=update.update_id)
                return web.json_response({"error": "not stored, retry later"}, status=500)
        return web.json_response({"ok": True})

    async def _dead_letter(self, storing: Awaitable[None]) -> web.Response:
        """200 once the update is kept as a dead letter (Telegram then drops it); else 500."""
        try:
            await storing
        except Exception as error:
            # Not kept: Telegram keeps the update and sends it again later.
            log.warning("dead_letter_not_stored", error=type(error).__name__)
            return web.json_response({"error": "not stored, retry later"}, status=500)
        return web.json_response({"ok": True, "dead_lettered": True})

    async def _read_body(self, request: web.Request) -> bytes | None:
        return await read_bounded(request, max_bytes=self._max_body, timeout_s=BODY_READ_TIMEOUT_S)
