"""Wiring: NATS connection and streams, the bot's identity check and command menu, then long
polling, or the webhook endpoint when ``TELEGRAM_WEBHOOK_URL`` is set, until a signal.

Before it changes anything for the bot (its command menu, its webhook), the gateway asks
Telegram where the bot's updates go (``getWebhookInfo``). A webhook set to an address that is
not this gateway's means another program receives them (Planfix's own Telegram integration,
another copy of the bridge): deleting or replacing it would cut that program off without a
word, so the gateway stops instead, unless ``TELEGRAM_TAKE_OVER_WEBHOOK=true``.

Exit codes: 0 after SIGTERM/SIGINT, 2 when Telegram refuses the token or the bot's webhook
belongs to another program (a restart cannot help), 1 when handling an update failed in polling
mode (the update stays unconfirmed; a restart retries it) or the webhook port cannot be opened.
"""

from __future__ import annotations

import asyncio
import functools
import traceback
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar
from urllib.parse import urlsplit

import structlog
from aiogram import Bot, Dispatcher
from aiogram.exceptions import (
    TelegramNetworkError,
    TelegramRetryAfter,
    TelegramServerError,
    TelegramUnauthorizedError,
)
from aiogram.types import BotCommand, BotCommandScopeAllGroupChats, BotCommandScopeAllPrivateChats, User
from aiogram.utils.backoff import Backoff
from aiohttp import web
from faststream.nats import NatsBroker

from bridge_lib.cancel import cancelled
from bridge_lib.eventbus import EventPublisher, ensure_streams
from bridge_lib.i18n import DEFAULT_LANGUAGE
from bridge_lib.jetstream_ready import JetStreamNotReady
from bridge_lib.runtime import (
    broker_and_health,
    freeze_startup_heap,
    log_startup_failed,
    wait_for_stop_signal,
)
from bridge_lib.telegram import TOKEN_HINT, TOKEN_REFUSED, make_bot
from contracts.events import AnswerPrivateCommand, PrivateCommandAnswered
from services.telegram_gateway.commands import BOT_COMMANDS, BotProfile, build_commands_router, command_menus
from services.telegram_gateway.config import TelegramGatewaySettings
from services.telegram_gateway.group_life import AdmitAsker, build_group_life_router
from services.telegram_gateway.inbound import build_inbound_router
from services.telegram_gateway.other_bots import OtherBots
from services.telegram_gateway.polling import BACKOFF, poll_updates, redact
from services.telegram_gateway.private_chat import (
    PRIVATE_COMMANDS,
    AskBinder,
    BinderAsker,
    HelpOnce,
    build_private_chat_router,
)
from services.telegram_gateway.record import Record
from services.telegram_gateway.task_commands import TASK_BOT_COMMANDS, build_task_commands_router
from services.telegram_gateway.undecodable import UndecodableUpdates
from services.telegram_gateway.webhook import TelegramWebhook, webhook_path

log = structlog.get_logger("telegram_gateway")
T = TypeVar("T")

WEBHOOK_IN_USE = (
    "The bot's webhook is set to another address, so another program receives this bot's "
    "updates (Planfix's own Telegram integration, or another copy of the bridge). Deleting or "
    "replacing it would cut that program off, so the gateway stopped without changing anything."
)
WEBHOOK_IN_USE_FIX = (
    "Give the bridge a bot of its own (@BotFather -> /newbot); or, for the bridge to take this "
    "bot over, set TELEGRAM_TAKE_OVER_WEBHOOK=true and start it again (in polling mode also when "
    "the address is this bridge's own, left from running in webhook mode)."
)
PRIVACY_HINT = (
    "Group Privacy is on, so the bot only sees commands and replies to itself in groups. In "
    "@BotFather: /setprivacy -> choose the bot -> Disable; then remove the bot from each group and "
    "add it again (Telegram applies the change only on re-adding)."
)


class WebhookInUse(Exception):
    """The bot's webhook points to another program's address."""

    def __init__(self, url: str) -> None:
        super().__init__("the bot's webhook is set to another address")
        # The host only: a webhook's path often holds a secret (or the bot's token).
        self.host = _host_of(url)


def foreign_webhook(current: str, ours: str | None) -> bool:
    """Whether the webhook Telegram holds for the bot belongs to another program: one is set,
    and it is not the address this gateway registers (in polling mode there is none of ours)."""
    return bool(current) and current != ours


def build_dispatcher(
    publisher: EventPublisher,
    me: User,
    *,
    jetstream: Any | None = None,
    ask_binder: AskBinder | None = None,
    admit_group: AdmitAsker | None = None,
    default_language: str = DEFAULT_LANGUAGE,
) -> Dispatcher:
    """The gateway's handlers, with what they need; ``jetstream``: where /status reads which other
    bots were sent /task (None: not read); ``ask_binder``: where private commands go (None: the
    bridge cannot answer them); ``admit_group``: set with TELEGRAM_LEAVE_UNKNOWN_GROUPS."""
    profile = BotProfile(username=me.username, reads_all_group_messages=bool(me.can_read_all_group_messages))
    # Keyword arguments become handler parameters of the same name (aiogram's injection).
    dispatcher = Dispatcher(
        record=Record(publisher),
        bot_profile=profile,
        other_bots=OtherBots(me_id=me.id, jetstream=jetstream),
        ask_binder=ask_binder or _no_binder,
        private_help=HelpOnce(),
        admit_group=admit_group,
        default_language=default_language,
    )
    # The first matching handler wins: a group's life (anonymous admins, service messages),
    # then commands, the private chat, then ordinary messages.
    dispatcher.include_routers(
        build_group_life_router(),
        build_commands_router(),
        build_task_commands_router(),
        build_private_chat_router(),
        build_inbound_router(),
    )
    return dispatcher


async def _no_binder(command: AnswerPrivateCommand) -> PrivateCommandAnswered | None:
    return None


async def run(settings: TelegramGatewaySettings) -> None:
    # No local variable holds the token: tracebacks rendered with locals would print it.
    bot = make_bot(
        settings.telegram_bot_token.get_secret_value(), api_base_url=settings.telegram_api_base_url
    )
    broker, health = await broker_and_health("telegram_gateway", settings)
    stop = asyncio.create_task(wait_for_stop_signal())
    work = asyncio.create_task(_serve(bot, broker, settings))
    try:
        done, _ = await asyncio.wait({stop, work}, return_when=asyncio.FIRST_COMPLETED)
        if work in done:
            work.result()  # polling only ends by failing
        else:
            log.info("telegram_gateway_stopping")
            await cancelled(work)
    except TelegramUnauthorizedError:
        log.error("telegram_token_refused", detail=TOKEN_REFUSED, hint=TOKEN_HINT)
        raise SystemExit(2) from None
    except WebhookInUse as error:
        log.error(
            "telegram_webhook_in_use",
            webhook_host=redact(error.host, bot.token),
            detail=WEBHOOK_IN_USE,
            fix=WEBHOOK_IN_USE_FIX,
        )
        raise SystemExit(2) from None
    except JetStreamNotReady as error:
        log_startup_failed(error)
        raise SystemExit(1) from None
    except Exception as error:
        # Formatted here, without the frames' locals (bridge_lib's dict_tracebacks shows them).
        text = "".join(traceback.format_exception(error))
        log.error("telegram_gateway_failed", error=type(error).__name__, traceback=redact(text, bot.token))
        raise SystemExit(1) from None
    finally:
        await cancelled(stop)
        await broker.stop()
        await health.stop()
        await bot.session.close()
    log.info("telegram_gateway_stopped")


async def _serve(bot: Bot, broker: NatsBroker, settings: TelegramGatewaySettings) -> None:
    # The broker retries forever while NATS is down; say what it is waiting for.
    log.info("nats_connecting", server=_host_of(settings.nats_url))
    await broker.start()
    await ensure_streams(
        broker, replicas=settings.nats_stream_replicas, timeout_s=settings.nats_startup_timeout_s
    )
    log.info("nats_connected")
    me = await _retrying("getMe", bot.me)
    log.info("telegram_bot_identified", bot_username=me.username, bot_id=me.id)
    if not me.can_read_all_group_messages:
        log.warning("telegram_group_privacy_enabled", bot_username=me.username, fix=PRIVACY_HINT)
    # Before setMyCommands: a bot another program serves keeps its command menu too.
    await _check_webhook_owner(bot, settings)
    # One menu per language (language_code) and one for everyone else, in groups and in private.
    for scope, table in (
        (BotCommandScopeAllGroupChats(), {**BOT_COMMANDS, **TASK_BOT_COMMANDS}),
        (BotCommandScopeAllPrivateChats(), PRIVATE_COMMANDS),
    ):
        for language_code, menu in command_menus(settings.bridge_language, table):
            commands = [BotCommand(command=name, description=text) for name, text in menu.items()]
            await _retrying(
                "setMyCommands",
                functools.partial(bot.set_my_commands, commands, scope=scope, language_code=language_code),
            )
    publisher = EventPublisher(broker)
    dispatcher = build_dispatcher(
        publisher,
        me,
        jetstream=broker.connection.jetstream(),
        ask_binder=BinderAsker(broker.connection),
        admit_group=AdmitAsker(broker.connection) if settings.telegram_leave_unknown_groups else None,
        default_language=settings.bridge_language,
    )
    allowed_updates = dispatcher.resolve_used_update_types()
    undecodable = UndecodableUpdates(publisher)
    if settings.telegram_webhook_url:
        await _serve_webhook(bot, dispatcher, undecodable, settings, allowed_updates)
        return
    # getUpdates fails with 409 while a webhook is set.
    await _retrying("deleteWebhook", lambda: bot.delete_webhook(drop_pending_updates=False))
    log.info("telegram_gateway_started", mode="polling", allowed_updates=allowed_updates)
    freeze_startup_heap()
    await poll_updates(
        bot,
        dispatcher,
        allowed_updates=allowed_updates,
        undecodable=undecodable,
        plain_record=dispatcher["record"],
    )


async def _check_webhook_owner(bot: Bot, settings: TelegramGatewaySettings) -> None:
    """Raise ``WebhookInUse`` when another program's webhook is set and may not be taken over."""
    info = await _retrying("getWebhookInfo", bot.get_webhook_info)
    if not foreign_webhook(info.url, settings.telegram_webhook_url):
        return
    if not settings.telegram_take_over_webhook:
        raise WebhookInUse(info.url)
    log.warning(
        "telegram_webhook_taken_over",
        previous_webhook_host=redact(_host_of(info.url), bot.token),
        why="TELEGRAM_TAKE_OVER_WEBHOOK=true; the program that received the updates gets none now",
    )


async def _serve_webhook(
    bot: Bot,
    dispatcher: Dispatcher,
    undecodable: UndecodableUpdates,
    settings: TelegramGatewaySettings,
    allowed_updates: list[str],
) -> None:
    url = settings.telegram_webhook_url or ""
    path = webhook_path(url)
    endpoint = TelegramWebhook(
        bot=bot,
        dispatcher=dispatcher,
        undecodable=undecodable,
        secret=settings.webhook_secret(),
        max_body=settings.telegram_webhook_max_body,
        path=path,
    )
    runner = web.AppRunner(endpoint.app(), access_log=None)
    await runner.setup()
    try:
        # Listen before Telegram is told where to post.
        await web.TCPSite(runner, settings.telegram_webhook_host, settings.telegram_webhook_port).start()
        await _retrying(
            "setWebhook",
            lambda: bot.set_webhook(
                url,
                secret_token=settings.webhook_secret(),
                allowed_updates=allowed_updates,
                max_connections=settings.telegram_webhook_max_connections,
                drop_pending_updates=False,
            ),
        )
        log.info(
            "telegram_gateway_started",
            mode="webhook",
            path=path,
            port=settings.telegram_webhook_port,
            allowed_updates=allowed_updates,
        )
        freeze_startup_heap()
        await asyncio.Event().wait()  # until cancelled by the stop signal
    finally:
        await runner.cleanup()


def _host_of(url: str) -> str:
    """host:port only: a NATS URL may carry a user and password."""
    try:
        parts = urlsplit(url)
        return f"{parts.hostname}:{parts.port}" if parts.port else str(parts.hostname)
    except ValueError:  # e.g. a comma-separated server list
        return "(see NATS_URL)"


async def _retrying(what: str, call: Callable[[], Awaitable[T]]) -> T:
    """Start-up calls wait out a Telegram outage instead of crashing the service."""
    backoff = Backoff(config=BACKOFF)
    while True:
        try:
            return await call()
        except TelegramRetryAfter as error:
            delay, reason = float(error.retry_after), "flood_wait"
        except (TelegramNetworkError, TelegramServerError) as error:
            delay, reason = next(backoff), type(error).__name__
        log.warning("telegram_call_retry", call=what, reason=reason, retry_in_s=round(delay, 1))
        await asyncio.sleep(delay)
