"""The aiogram ``Bot`` every service builds the same way: HTML by default, configurable API server.

``TELEGRAM_API_BASE_URL`` points the real aiogram client at another Bot API server: a local
``telegram-bot-api`` or, in tests and the sandbox, the fake one.
"""

from __future__ import annotations

from aiogram import Bot
from aiogram.client.default import DefaultBotProperties
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.enums import ParseMode

from bridge_lib.metrics import TelegramCallMetrics


def make_bot(token: str, *, api_base_url: str = "https://api.telegram.org", timeout_s: float = 60.0) -> Bot:
    session = AiohttpSession(api=TelegramAPIServer.from_base(api_base_url.rstrip("/")), timeout=timeout_s)
    session.middleware(TelegramCallMetrics())
    return Bot(
        token=token,
        session=session,
        default=DefaultBotProperties(parse_mode=ParseMode.HTML, link_preview_is_disabled=True),
    )
