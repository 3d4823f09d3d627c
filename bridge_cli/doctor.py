"""``bridge doctor``: check everything the bridge depends on and say how to fix what is wrong.

Checks, in order: the settings of the four services; the Telegram token (``getMe``), group
privacy and whose the bot's webhook is (another program's stops the gateway); the Planfix token;
NATS and JetStream; MongoDB; the streams (present, on file storage, with their subjects); the
services' durable consumers (present, how far behind); dead letters; and, for the bound groups,
other bots that answer ``/task`` too (admin bots, and bots ``/task@<bot>`` was written to: with
Planfix's own bot bound as well, every message reaches Planfix twice).
Each check prints one line (ok, warning or problem) and, for anything not ok, how to fix it.
The exit code is 1 when any check found a problem, so scripts and CI can use it.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

import msgspec
import typer
from motor.motor_asyncio import AsyncIOMotorClient
from nats.js.api import StorageType
from pydantic import ValidationError
from rich.text import Text

from bridge_cli import context
from bridge_cli.bindings import fold_bindings
from bridge_cli.streams import connect, read_stream
from bridge_cli.topology import expected_consumers
from bridge_lib.planfix import (
    PlanfixAuthError,
    PlanfixClient,
    PlanfixRejected,
    PlanfixUnavailable,
    TaskNotFound,
)
from bridge_lib.settings import HOW_TO_GET, PlanfixSettings, TelegramSettings, describe_settings_error
from contracts.events import OtherBotCommanded
from contracts.subjects import (
    ALL_OTHER_BOTS_COMMANDED,
    ALL_STREAMS,
    BINDING_STREAM,
    DEADLETTER_STREAM,
    TELEGRAM_STREAM,
)

PRIVACY_FIX = (
    "in @BotFather: /setprivacy -> choose the bot -> Disable; then remove the bot from each group "
    "and add it again (Telegram applies the change only on re-adding)"
)
LAG_WARNING = 1000
TIMEOUT_S = 5.0
# getChatAdministrators is asked for at most this many bound groups (one call each).
MAX_GROUPS_ASKED = 50
OTHER_BOT_FIX = (
    "keep one bot per group: remove the other bot from the group (or unbind it there), or stop "
    "this bridge's binding with `bridge bindings unbind {chat_id}`"
)


class Finding(msgspec.Struct, frozen=True):
    status: str  # "ok" | "warn" | "fail"
    check: str
    message: str
    fix: str = ""


MARKS = {"ok": ("ok  ", "green"), "warn": ("warn", "yellow"), "fail": ("FAIL", "bold red")}


def doctor_command(
    ctx: typer.Context,
    skip_external: Annotated[
        bool, typer.Option("--skip-external", help="do not call Telegram and Planfix")
    ] = False,
) -> None:
    """Check settings, Telegram, Planfix, NATS, MongoDB, streams and consumers; say how to fix problems."""
    target = context.target(ctx)
    findings = context.run(diagnose(target, external=not skip_external))
    out = context.console()
    for finding in findings:
        mark, style = MARKS[finding.status]
        line = Text()
        line.append(f"[{mark}] ", style=style)
        line.append(f"{finding.check}: ", style="bold")
        line.append(finding.message)
        out.print(line)
        if finding.fix:
            out.print(f"       fix: {finding.fix}")
    failed = sum(1 for f in findings if f.status == "fail")
    warned = sum(1 for f in findings if f.status == "warn")
    out.print(f"{failed} problem(s), {warned} warning(s)")
    if failed:
        raise typer.Exit(1)


async def diagnose(target: context.Target, *, external: bool = True) -> list[Finding]:
    findings = check_settings()
    if external:
        findings.extend(await check_telegram())
        findings.append(await check_planfix())
    findings.extend(await check_nats(target.nats_url))
    findings.append(await check_mongodb(target))
    if external:
        findings.extend(await check_other_bots(target.nats_url))
    return findings


# --- settings -----------------------------------------------------------------------------------


def check_settings() -> list[Finding]:
    from bridge_cli.service_settings import settings_problems

    problems = settings_problems()
    if not problems:
        return [Finding("ok", "settings", "every service's settings are present and valid")]
    findings = []
    for problem in problems:
        what, _, how = problem.partition("how to get it:")
        fix = how.strip() or "see .env.example"
        findings.append(
            Finding("fail", "settings", what.strip(), fix=f"{fix} (set it in .env or the environment)")
        )
    return findings


# --- Telegram -----------------------------------------------------------------------------------


async def check_telegram() -> list[Finding]:
    """The token (getMe) and, when it works, group privacy."""
    # aiogram takes seconds to import; only this check needs it.
    from aiogram.exceptions import TelegramAPIError, TelegramUnauthorizedError

    try:
        settings = TelegramSettings()
    except ValidationError as error:
        return [
            Finding("fail", "telegram", "cannot check: " + " ".join(describe_settings_error(error)).strip())
        ]
    bot = _bot(settings)
    try:
        me = await asyncio.wait_for(bot.get_me(), TIMEOUT_S * 2)
    except TelegramUnauthorizedError:
        return [
            Finding(
                "fail",
                "telegram",
                "Telegram refuses TELEGRAM_BOT_TOKEN (401 Unauthorized): it is wrong or was revoked",
                fix=HOW_TO_GET["TELEGRAM_BOT_TOKEN"],
            )
        ]
    except (TelegramAPIError, TimeoutError, OSError) as error:
        return [
            Finding(
                "fail",
                "telegram",
                f"cannot reach the Bot API at {settings.telegram_api_base_url} ({type(error).__name__})",
                fix="check the network and TELEGRAM_API_BASE_URL",
            )
        ]
    finally:
        await bot.session.close()
    found = [Finding("ok", "telegram", f"token accepted: the bot is @{me.username} (id {me.id})")]
    found.append(await check_webhook(settings))
    if me.can_read_all_group_messages:
        found.append(
            Finding("ok", "telegram privacy", "group privacy is off: the bot sees every group message")
        )
    else:
        found.append(
            Finding(
                "fail",
                "telegram privacy",
                "group privacy is on: in groups the bot sees only commands and replies to itself",
                fix=PRIVACY_FIX,
            )
        )
    return found


def _bot(settings: TelegramSettings) -> Any:
    from bridge_lib.telegram import make_bot

    return make_bot(
        settings.telegram_bot_token.get_secret_value(),
        api_base_url=settings.telegram_api_base_url,
        timeout_s=TIMEOUT_S,
    )


async def check_webhook(settings: TelegramSettings) -> Finding:
    """Whose the bot's webhook is: none or the gateway's is fine; another program's stops the gateway."""
    from aiogram.exceptions import TelegramAPIError

    from services.telegram_gateway.app import WEBHOOK_IN_USE_FIX, foreign_webhook
    from services.telegram_gateway.config import TelegramGatewaySettings

    try:
        gateway = TelegramGatewaySettings()
        ours, take_over = gateway.telegram_webhook_url, gateway.telegram_take_over_webhook
    except ValidationError:
        ours, take_over = None, False  # the settings check names what is wrong
    bot = _bot(settings)
    try:
        info = await asyncio.wait_for(bot.get_webhook_info(), TIMEOUT_S * 2)
    except (TelegramAPIError, TimeoutError, OSError) as error:
        return Finding("warn", "telegram webhook", f"getWebhookInfo failed ({type(error).__name__})")
    finally:
        await bot.session.close()
    if not info.url:
        return Finding("ok", "telegram webhook", "none set: the bot's updates are fetched by polling")
    # The host only: a webhook's path often holds a secret.
    host = context.host_of(info.url)
    if not foreign_webhook(info.url, ours):
        return Finding("ok", "telegram webhook", f"set to this bridge ({host})")
    elsewhere = f"the bot's webhook points to another program at {host} (Planfix's own Telegram integration?)"
    if take_over:
        return Finding(
            "warn",
            "telegram webhook",
            f"{elsewhere}; TELEGRAM_TAKE_OVER_WEBHOOK=true: the gateway takes it over",
        )
    return Finding(
        "fail",
        "telegram webhook",
        f"{elsewhere}: it gets the bot's updates, and the gateway stops at start rather than take it over",
        fix=WEBHOOK_IN_USE_FIX,
    )


async def check_other_bots(nats_url: str) -> list[Finding]:
    """Bound groups where another bot answers /task too, as far as the Bot API shows it."""
    from aiogram.exceptions import TelegramAPIError

    from services.telegram_gateway.other_bots import merged, named

    try:
        settings = TelegramSettings()
        nc = await connect(nats_url, timeout_s=TIMEOUT_S)
    except Exception:
        return []  # the telegram and nats checks say why
    try:
        js = nc.jetstream()
        bindings = fold_bindings([message async for message in read_stream(js, BINDING_STREAM.name)])
        commanded = await _bots_commanded(js)
    except Exception as error:
        return [Finding("warn", "other bots", f"cannot read the bindings ({type(error).__name__})")]
    finally:
        await nc.close()
    tasks: dict[int, list[int]] = {}
    for binding in bindings.values():
        tasks.setdefault(binding.bound.chat_id, []).append(binding.bound.task_number)
    if not tasks:
        return [Finding("ok", "other bots", "no group is bound yet")]
    groups = sorted(tasks)[:MAX_GROUPS_ASKED]
    findings: list[Finding] = []
    bot = _bot(settings)
    try:
        me = await asyncio.wait_for(bot.get_me(), TIMEOUT_S * 2)
        for chat_id in groups:
            try:
                admins = await asyncio.wait_for(
                    bot.get_chat_administrators(chat_id=chat_id, return_bots=True), TIMEOUT_S * 2
                )
            except (TelegramAPIError, TimeoutError):
                admins = []  # e.g. the bot was removed from the group: the binding is suspended
            others = merged(named((member.user for member in admins), me.id), commanded.get(chat_id, []))
            if others:
                names = ", ".join(f"@{name}" for name in others)
                numbers = ", ".join(f"#{number}" for number in sorted(tasks[chat_id]))
                findings.append(
                    Finding(
                        "warn",
                        "other bots",
                        f"group {chat_id} (task {numbers}): {names} may answer /task there too; if "
                        "it is bound to a task as well, every message of the group reaches Planfix twice",
                        fix=OTHER_BOT_FIX.format(chat_id=chat_id),
                    )
                )
    except (TelegramAPIError, TimeoutError, OSError):
        return []  # the telegram check says why
    finally:
        await bot.session.close()
    asked = (
        f"{len(groups)} of {len(tasks)} bound group(s)"
        if len(tasks) > len(groups)
        else f"{len(groups)} bound group(s)"
    )
    if not findings:
        findings.append(
            Finding(
                "ok",
                "other bots",
                f"in {asked}, no other bot that answers /task (admin bots, /task@<bot> written there)",
            )
        )
    elif len(tasks) > len(groups):
        findings.append(Finding("warn", "other bots", f"only {asked} were asked (one Bot API call each)"))
    return findings


async def _bots_commanded(js: Any) -> dict[int, list[str]]:
    """Chat id -> the bots someone wrote /task@<bot> to there (as the gateway stored it)."""
    info = await js.stream_info(TELEGRAM_STREAM.name, subjects_filter=ALL_OTHER_BOTS_COMMANDED)
    if not info.state.subjects:
        return {}  # none: no need to wait for a first message that never comes
    commanded: dict[int, list[str]] = {}
    async for message in read_stream(js, TELEGRAM_STREAM.name, subject_filter=ALL_OTHER_BOTS_COMMANDED):
        event = message.event()
        if isinstance(event, OtherBotCommanded):
            commanded.setdefault(event.chat_id, []).append(event.bot_username)
    return commanded


# --- Planfix ------------------------------------------------------------------------------------


async def check_planfix() -> Finding:
    try:
        settings = PlanfixSettings()
    except ValidationError as error:
        return Finding("fail", "planfix", "cannot check: " + " ".join(describe_settings_error(error)).strip())
    async with PlanfixClient(
        base_url=settings.planfix_base_url,
        token=settings.planfix_api_token.get_secret_value(),
        timeout_s=TIMEOUT_S,
    ) as planfix:
        try:
            # Any task number does: "not found" proves the token works as well as a hit.
            await planfix.get_task(1)
        except PlanfixAuthError:
            return Finding(
                "fail",
                "planfix",
                "Planfix refuses PLANFIX_API_TOKEN: it is wrong, inactive or lacks rights",
                fix=HOW_TO_GET["PLANFIX_API_TOKEN"],
            )
        except PlanfixUnavailable as error:
            return Finding(
                "fail",
                "planfix",
                f"cannot reach Planfix ({str(error)[:120]})",
                fix="check PLANFIX_BASE_URL (https://<account>.planfix.com/rest/) and the network",
            )
        except TaskNotFound:
            pass
        except PlanfixRejected as error:
            return Finding(
                "warn", "planfix", f"token accepted, but Planfix refused a task read (code {error.code})"
            )
    return Finding("ok", "planfix", "token accepted")


# --- NATS, streams, consumers ---------------------------------------------------------------------


async def check_nats(nats_url: str) -> list[Finding]:
    try:
        nc = await connect(nats_url, timeout_s=TIMEOUT_S)
    except Exception as error:
        return [
            Finding(
                "fail",
                "nats",
                f"cannot connect to NATS at {context.host_of(nats_url)} ({type(error).__name__}: {error})",
                fix="start NATS (docker compose ... up -d nats) or correct NATS_URL",
            )
        ]
    try:
        js = nc.jetstream()
        try:
            account = await js.account_info()
        except Exception as error:
            return [
                Finding(
                    "fail",
                    "nats",
                    f"connected, but JetStream does not answer ({type(error).__name__})",
                    fix="run nats-server with JetStream enabled (-js) and a store directory (-sd)",
                )
            ]
        findings = [
            Finding(
                "ok",
                "nats",
                f"connected to {context.host_of(nats_url)}; JetStream has {account.streams} stream(s)",
            )
        ]
        findings.extend(await check_streams(js))
        findings.extend(await check_consumers(js))
        findings.append(await check_dead_letters(js))
        return findings
    finally:
        await nc.close()


async def check_streams(js: Any) -> list[Finding]:
    findings: list[Finding] = []
    for spec in ALL_STREAMS:
        try:
            info = await js.stream_info(spec.name)
        except Exception:
            findings.append(
                Finding(
                    "fail",
                    f"stream {spec.name}",
                    "missing",
                    fix="start any bridge service once: each creates the streams at start",
                )
            )
            continue
        config = info.config
        problems = []
        if sorted(config.subjects or []) != sorted(spec.subjects):
            problems.append(f"subjects are {config.subjects}, expected {spec.subjects}")
        if config.storage != StorageType.FILE:
            problems.append("not on file storage: a NATS restart loses it")
        if problems:
            findings.append(
                Finding(
                    "fail",
                    f"stream {spec.name}",
                    "; ".join(problems),
                    fix="restart a bridge service (it updates the stream), or fix it with the nats CLI",
                )
            )
        else:
            findings.append(
                Finding(
                    "ok",
                    f"stream {spec.name}",
                    f"{info.state.messages} message(s), replicas {config.num_replicas}",
                )
            )
    return findings


async def check_consumers(js: Any) -> list[Finding]:
    findings: list[Finding] = []
    for service, consumers in expected_consumers().items():
        for consumer in consumers:
            name = f"consumer {consumer.durable}"
            try:
                info = await js.consumer_info(consumer.stream, consumer.durable)
            except Exception:
                findings.append(
                    Finding(
                        "fail", name, f"missing on {consumer.stream}", fix=f"start {service}: it creates it"
                    )
                )
                continue
            pending = info.num_pending or 0
            redelivered = info.num_redelivered or 0
            message = f"{pending} waiting, {info.num_ack_pending or 0} in flight, {redelivered} redelivered"
            if pending >= LAG_WARNING:
                findings.append(
                    Finding("warn", name, message, fix=f"{service} falls behind: check its logs, or scale it")
                )
            elif redelivered:
                findings.append(
                    Finding(
                        "warn",
                        name,
                        message,
                        fix=f"{service} is retrying: its logs (event_retry_later) say why",
                    )
                )
            else:
                findings.append(Finding("ok", name, message))
    return findings


async def check_dead_letters(js: Any) -> Finding:
    try:
        info = await js.stream_info(DEADLETTER_STREAM.name)
    except Exception:
        return Finding("warn", "dead letters", "no DEADLETTER stream yet (services create it at start)")
    count = info.state.messages
    if count:
        return Finding(
            "warn",
            "dead letters",
            f"{count} message(s) a consumer gave up on",
            fix="`bridge dlq list`; `bridge dlq retry SEQ` once the cause is fixed, or `bridge dlq drop SEQ`",
        )
    return Finding("ok", "dead letters", "none")


# --- MongoDB --------------------------------------------------------------------------------------


async def check_mongodb(target: context.Target) -> Finding:
    client: AsyncIOMotorClient[dict[str, Any]] = AsyncIOMotorClient(
        target.mongodb_url, serverSelectionTimeoutMS=int(TIMEOUT_S * 1000)
    )
    try:
        await client.admin.command("ping")
    except Exception as error:
        return Finding(
            "fail",
            "mongodb",
            f"no answer from MongoDB ({type(error).__name__})",
            fix="start MongoDB or correct MONGODB_URL",
        )
    finally:
        client.close()
    return Finding("ok", "mongodb", f"answers; database {target.mongodb_database}")
