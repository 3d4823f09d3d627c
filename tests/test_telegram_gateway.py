"""The Telegram gateway as a process: the real aiogram client polls the fake Bot API server and
stores what groups write as events in the real JetStream TELEGRAM stream.

The fake Telegram server is shared by the whole session and only one process may poll it, so
one gateway runs for this module and the last test stops it.
"""

from __future__ import annotations

import asyncio
import base64
import json
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiogram import Dispatcher
from aiogram.types import Message

from bridge_lib.cancel import cancelled
from bridge_lib.telegram import make_bot
from contracts import subjects
from contracts.events import (
    TELEGRAM_UPDATES_SOURCE,
    AnonymousAdminPosted,
    AnyEvent,
    BindRequested,
    BotMembershipChanged,
    ChatMigrated,
    DeadLetterReason,
    GroupCommand,
    GroupCommandReceived,
    MessageDeadLettered,
    OtherBotCommanded,
    TelegramMessageEdited,
    TelegramMessageReceived,
    TelegramReactionChanged,
    TelegramUser,
    UnbindRequested,
    event_id_for,
    telegram_bind_key,
    telegram_message_key,
)
from contracts.subjects import dead_letter
from devtools import devstack
from sandbox.fake_telegram import FakeTelegram
from services.telegram_gateway.app import foreign_webhook
from services.telegram_gateway.commands import TaskArgs, our_command, parse_task_args
from services.telegram_gateway.polling import poll_updates
from services.telegram_gateway.webhook import SECRET_HEADER
from tests.conftest import BOT_TOKEN
from tests.support import LoopThread, ServiceProcess, eventually, read_stream_events, run_module, stays


def gateway_env(fake: FakeTelegram, nats_url: str) -> dict[str, str]:
    return {
        "TELEGRAM_BOT_TOKEN": BOT_TOKEN,
        "TELEGRAM_API_BASE_URL": fake.base_url,
        "NATS_URL": nats_url,
        "LOG_LEVEL": "INFO",
    }


@pytest.fixture(scope="module")
def gateway(fake_telegram: FakeTelegram, nats_url: str, work_dir: Path) -> Iterator[ServiceProcess]:
    log_dir = work_dir / "telegram-gateway"
    log_dir.mkdir(exist_ok=True)
    started_at = time.time()
    process = ServiceProcess("telegram_gateway", gateway_env(fake_telegram, nats_url), log_dir).start()
    try:
        eventually(
            lambda: any(c.method == "getUpdates" and c.at >= started_at for c in fake_telegram.calls),
            timeout_s=30,
            what=f"gateway polling; log:\n{process.log_text()}",
        )
        yield process
    finally:
        process.stop()


class Streams:
    def __init__(self, loop: LoopThread, nats_url: str) -> None:
        self._loop = loop
        self._nats_url = nats_url

    def events(self, subject: str) -> list[AnyEvent]:
        return [event for _, event in self._loop.run(read_stream_events(self._nats_url, subject))]

    def messages(self, chat_id: int) -> list[TelegramMessageReceived]:
        found = self.events(subjects.telegram_message_received(chat_id))
        return [e for e in found if isinstance(e, TelegramMessageReceived)]

    def bind_requests(self, chat_id: int) -> list[BindRequested]:
        found = self.events(subjects.telegram_bind_requested(chat_id))
        return [e for e in found if isinstance(e, BindRequested)]

    def bind_requests_and_unbinds(self, chat_id: int) -> list[AnyEvent]:
        return self.events(subjects.telegram_bind_requested(chat_id))

    def anything(self, chat_id: int) -> list[AnyEvent]:
        return self.events(f"telegram.*.*.{chat_id}")

    def group_events(self, chat_id: int) -> list[AnyEvent]:
        return self.events(f"telegram.group.*.{chat_id}")


@pytest.fixture
def streams(loop: LoopThread, nats_url: str, gateway: ServiceProcess) -> Streams:
    return Streams(loop, nats_url)


def add_undecodable_message(fake: FakeTelegram, chat_id: int, *, message_id: int) -> dict[str, Any]:
    """Queue a group message aiogram cannot decode (``is_bot`` is not a bool), as Telegram would
    send it; its text is what no log may show."""
    return fake.add_update(
        {
            "message": {
                "message_id": message_id,
                "date": int(time.time()),
                "chat": {"id": chat_id, "type": "supergroup", "title": "Support group"},
                "from": {"id": 501, "is_bot": "perhaps", "first_name": "Ivan"},
                "text": "a secret plan nobody may log",
            }
        }
    )


def handled_up_to(fake: FakeTelegram, streams: Streams, chat_id: int) -> None:
    """Updates are handled in order: once a later marker is stored, everything before it was handled."""
    marker = fake.add_group_message(chat_id, "marker")["message"]["message_id"]
    eventually(
        lambda: [e for e in streams.messages(chat_id) if e.message_id == marker], what="marker message stored"
    )


# --- /task parsing (pure) ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ("Fix the printer", TaskArgs(None, "Fix the printer")),
        ("  Fix the printer  ", TaskArgs(None, "Fix the printer")),
        ("4821", TaskArgs(4821, None)),
        ("#4821", TaskArgs(4821, None)),
        (" #0042 ", TaskArgs(42, None)),
        ("4821 printer", TaskArgs(None, "4821 printer")),
        ("# 4821", TaskArgs(None, "# 4821")),
        ("²", TaskArgs(None, "²")),
        ("Fix\nthe printer", TaskArgs(None, "Fix\nthe printer")),
        # A link alone is carried as a link (the binder decides), never as a title.
        (
            " https://acme.planfix.com/task/4821?comment=5 ",
            TaskArgs(None, None, "https://acme.planfix.com/task/4821?comment=5"),
        ),
        ("https://evil.example/x", TaskArgs(None, None, "https://evil.example/x")),
        ("acme.planfix.ru/task/4821/", TaskArgs(None, None, "acme.planfix.ru/task/4821/")),
        (
            "Printer https://acme.planfix.com/task/4821",
            TaskArgs(None, "Printer https://acme.planfix.com/task/4821"),
        ),
        ("", TaskArgs(None, None)),
        ("   ", TaskArgs(None, None)),
        (None, TaskArgs(None, None)),
    ],
)
def test_task_arguments_are_a_number_a_link_or_a_title(args: str | None, expected: TaskArgs) -> None:
    assert parse_task_args(args) == expected


@pytest.mark.parametrize(
    ("text", "command"),
    [
        ("/task Fix the printer", "task"),
        ("/TASK@BridgeBot 4821", "task"),
        ("/unbind", "unbind"),
        ("/status@bridgebot", "status"),
        ("/help", "help"),
        ("/task@PlanfixBot Fix", None),  # another bot's
        ("/tasks", None),
        ("/start", None),
        ("/link", None),  # a private chat's command
        ("see /task", None),
        (None, None),
    ],
)
def test_an_anonymous_admins_message_is_known_as_one_of_our_commands(
    text: str | None, command: str | None
) -> None:
    assert our_command(text, "BridgeBot") == command


# --- polling (in-process, against a fake of its own) ------------------------------------------


def test_an_update_whose_handling_failed_is_fetched_again_before_the_ones_after_it(loop: LoopThread) -> None:
    fake = FakeTelegram(token=BOT_TOKEN)
    loop.run(fake.start())
    chat_id = -1009999999999
    seen: list[str] = []
    failures_left = 2

    async def scenario() -> list[str]:
        nonlocal failures_left
        bot = make_bot(BOT_TOKEN, api_base_url=fake.base_url)
        dispatcher = Dispatcher()
        done = asyncio.Event()

        @dispatcher.message()
        async def store(message: Message) -> None:
            nonlocal failures_left
            seen.append(str(message.text))
            if message.text == "cannot be stored yet" and failures_left:
                failures_left -= 1
                raise ConnectionError("NATS unreachable for a while")
            if message.text == "after it":
                done.set()

        polling = asyncio.create_task(poll_updates(bot, dispatcher, allowed_updates=["message"], timeout_s=1))
        try:
            await asyncio.wait_for(done.wait(), 30)
            assert not polling.done(), "polling keeps running through failures"
            # One more poll confirms everything handled.
            await asyncio.sleep(0.5)
        finally:
            await cancelled(polling)
        try:
            left = await bot.get_updates(timeout=0)
            return [str(update.message.text) for update in left if update.message]
        finally:
            await bot.session.close()

    # A 429 on the first getUpdates is waited out, not fatal.
    fake.fail_next("getUpdates", retry_after=1)
    for text in ("stored", "cannot be stored yet", "after it"):
        fake.add_group_message(chat_id, text)
    try:
        unconfirmed = loop.run(scenario(), timeout_s=60)
    finally:
        loop.run(fake.stop())

    # The failed update came again (twice), and nothing after it was handled before it was stored.
    assert seen == ["stored"] + ["cannot be stored yet"] * 3 + ["after it"]
    assert unconfirmed == []
    assert next(c.error_code for c in fake.calls if c.method == "getUpdates") == 429


# --- settings ---------------------------------------------------------------------------------


def run_gateway_briefly(env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    # cwd outside the repository: a developer's .env must not supply what the test leaves out.
    return run_module("services.telegram_gateway", env=env, without=("TELEGRAM_", "NATS_"), cwd=cwd)


def test_a_missing_token_is_named_and_exits_2_without_a_traceback(work_dir: Path) -> None:
    result = run_gateway_briefly({}, work_dir)

    assert result.returncode == 2
    assert "TELEGRAM_BOT_TOKEN" in result.stderr
    assert "@BotFather" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_refused_token_exits_2_and_never_logs_the_token(
    fake_telegram: FakeTelegram, nats_url: str, work_dir: Path
) -> None:
    wrong = "999999:not-the-right-token"
    env = {**gateway_env(fake_telegram, nats_url), "TELEGRAM_BOT_TOKEN": wrong}

    result = run_gateway_briefly(env, work_dir)

    assert result.returncode == 2
    assert "telegram_token_refused" in result.stderr
    assert wrong not in result.stderr
    assert "Traceback" not in result.stderr


def test_group_privacy_on_is_reported_with_the_fix(loop: LoopThread, nats_url: str, work_dir: Path) -> None:
    # Its own fake server: this gateway must not poll the shared one.
    private_fake = FakeTelegram(token=BOT_TOKEN, can_read_all_group_messages=False)
    loop.run(private_fake.start())
    process = ServiceProcess("telegram_gateway", gateway_env(private_fake, nats_url), work_dir)
    process.log_path = work_dir / "telegram-gateway-privacy.log"
    try:
        process.start()
        eventually(lambda: "telegram_gateway_started" in process.log_text(), timeout_s=30, what="started")
        log = process.log_text()
        assert "telegram_group_privacy_enabled" in log
        assert "/setprivacy" in log
    finally:
        process.stop()
        loop.run(private_fake.stop())


# --- whose webhook: Planfix's own bot (or another program) may hold the token ------------------

ELSEWHERE = "https://planfix.example/telegram/hook/path-secret-of-another-program"


def set_webhook_as_another_program(fake: FakeTelegram, url: str = ELSEWHERE) -> None:
    answer = httpx.post(f"{fake.base_url}/bot{BOT_TOKEN}/setWebhook", json={"url": url}, timeout=10)
    assert answer.json() == {"ok": True, "result": True}


@pytest.mark.parametrize(
    ("current", "ours", "foreign"),
    [
        ("", None, False),  # polling, nothing set: today's start
        ("", "https://bridge.example/tg", False),
        ("https://bridge.example/tg", "https://bridge.example/tg", False),  # our own, a restart
        ("https://planfix.example/hook", None, True),  # polling: any webhook is someone else's
        ("https://planfix.example/hook", "https://bridge.example/tg", True),
        ("https://bridge.example/tg/", "https://bridge.example/tg", True),  # not exactly ours
    ],
)
def test_a_webhook_is_another_programs_when_set_and_not_our_address(
    current: str, ours: str | None, foreign: bool
) -> None:
    assert foreign_webhook(current, ours) is foreign


@pytest.mark.parametrize("mode", ["polling", "webhook"])
def test_a_webhook_set_by_another_program_stops_the_gateway_with_exit_2_and_is_left_as_it_was(
    loop: LoopThread, nats_url: str, work_dir: Path, mode: str
) -> None:
    fake = FakeTelegram(token=BOT_TOKEN)
    loop.run(fake.start())
    env = gateway_env(fake, nats_url)
    if mode == "webhook":
        port = devstack.free_port()
        env |= {
            "TELEGRAM_WEBHOOK_URL": f"http://127.0.0.1:{port}/telegram/updates",
            "TELEGRAM_WEBHOOK_HOST": "127.0.0.1",
            "TELEGRAM_WEBHOOK_PORT": str(port),
        }
    try:
        set_webhook_as_another_program(fake)
        result = run_gateway_briefly(env, work_dir)
        webhook = fake.webhook["url"]
        methods = [call.method for call in fake.calls]
    finally:
        loop.run(fake.stop())

    assert result.returncode == 2, result.stderr[-2000:]
    assert "telegram_webhook_in_use" in result.stderr
    assert "TELEGRAM_TAKE_OVER_WEBHOOK=true" in result.stderr
    assert "planfix.example" in result.stderr
    assert "path-secret-of-another-program" not in result.stderr
    assert BOT_TOKEN.split(":", 1)[1] not in result.stderr
    assert "Traceback" not in result.stderr
    # Nothing of the other program's was touched: its webhook, nor the bot's command menu.
    assert webhook == ELSEWHERE
    assert methods.count("setWebhook") == 1  # the other program's
    assert not set(methods) & {"deleteWebhook", "setMyCommands", "getUpdates"}


def test_with_take_over_set_the_gateway_takes_the_bot_over_and_says_whose_it_was(
    loop: LoopThread, nats_url: str, work_dir: Path
) -> None:
    fake = FakeTelegram(token=BOT_TOKEN)
    loop.run(fake.start())
    env = {**gateway_env(fake, nats_url), "TELEGRAM_TAKE_OVER_WEBHOOK": "true"}
    process = ServiceProcess("telegram_gateway", env, work_dir)
    process.log_path = work_dir / "telegram-gateway-take-over.log"
    try:
        set_webhook_as_another_program(fake)
        process.start()
        eventually(lambda: "telegram_gateway_started" in process.log_text(), timeout_s=30, what="started")
        assert fake.webhook["url"] == ""
        eventually(lambda: any(c.method == "getUpdates" for c in fake.calls), what="polling")
    finally:
        process.stop()
        loop.run(fake.stop())
    log = process.log_text()
    assert "telegram_webhook_taken_over" in log
    assert "planfix.example" in log
    assert "path-secret-of-another-program" not in log


def test_with_no_webhook_set_the_gateway_starts_polling_as_before(
    fake_telegram: FakeTelegram, gateway: ServiceProcess
) -> None:
    methods = [call.method for call in fake_telegram.calls]
    assert methods.index("getWebhookInfo") < methods.index("deleteWebhook") < methods.index("getUpdates")
    assert "telegram_webhook_in_use" not in gateway.log_text()
    assert "telegram_webhook_taken_over" not in gateway.log_text()


def test_webhook_mode_registers_checks_the_secret_and_stores_what_telegram_posts(
    loop: LoopThread, nats_url: str, work_dir: Path, unique_chat_id: int
) -> None:
    """…and what it cannot decode is a dead letter answered 200, never a 400 Telegram resends."""
    # Its own fake: in webhook mode the fake posts updates instead of answering getUpdates.
    fake = FakeTelegram(token=BOT_TOKEN)
    loop.run(fake.start())
    port = devstack.free_port()
    url = f"http://127.0.0.1:{port}/telegram/updates"
    env = {
        **gateway_env(fake, nats_url),
        "TELEGRAM_WEBHOOK_URL": url,
        "TELEGRAM_WEBHOOK_HOST": "127.0.0.1",
        "TELEGRAM_WEBHOOK_PORT": str(port),
    }
    process = ServiceProcess("telegram_gateway", env, work_dir)
    process.log_path = work_dir / "telegram-gateway-webhook.log"
    streams = Streams(loop, nats_url)
    try:
        process.start()
        eventually(
            lambda: fake.webhook["url"] == url, timeout_s=30, what=f"setWebhook; log:\n{process.log_text()}"
        )
        secret = fake.webhook["secret_token"]
        assert secret
        assert BOT_TOKEN not in secret
        assert {"message", "my_chat_member"} <= set(fake.webhook["allowed_updates"])
        assert fake.webhook["max_connections"] == 1

        forged = {
            "update_id": 1,
            "message": {
                "message_id": 1,
                "date": 0,
                "chat": {"id": unique_chat_id, "type": "supergroup", "title": "x"},
                "from": {"id": 5, "is_bot": False, "first_name": "Eve"},
                "text": "forged",
            },
        }
        with httpx.Client(timeout=10) as client:
            assert client.post(url, json=forged).status_code == 401
            assert client.post(url, json=forged, headers={SECRET_HEADER: "wrong"}).status_code == 401
            too_big = b"{" + b" " * 2_000_000 + b"}"
            assert client.post(url, content=too_big, headers={SECRET_HEADER: secret}).status_code == 413
            # Telegram sends only JSON; a body that is not is still kept, and not asked for again.
            assert client.post(url, content=b"not json", headers={SECRET_HEADER: secret}).status_code == 200

        # An update aiogram cannot decode, as Telegram posts it, then an ordinary one behind it.
        odd = add_undecodable_message(fake, unique_chat_id, message_id=778)
        fake.add_group_message(unique_chat_id, "carried by the webhook")

        [event] = eventually(lambda: streams.messages(unique_chat_id), what="the posted update stored")
        assert event.text == "carried by the webhook"
        eventually(lambda: (event.update_id, 200) in fake.webhook_deliveries, what="answered 200")
        assert all(e.text != "forged" for e in streams.messages(unique_chat_id))
        # The odd one was answered 200 the first time (Telegram does not send it again) and kept.
        assert [status for update_id, status in fake.webhook_deliveries if update_id == odd["update_id"]] == [
            200
        ]
        dead = [
            e for e in streams.events(dead_letter("telegram_gateway")) if isinstance(e, MessageDeadLettered)
        ]
        [odd_dead] = [e for e in dead if e.stream_seq == odd["update_id"]]
        assert odd_dead.reason == DeadLetterReason.UNDECODABLE
        assert odd_dead.original_subject == "webhook"
        assert json.loads(base64.b64decode(odd_dead.body_b64)) == odd
        assert "is_bot" in odd_dead.detail
        [not_json] = [e for e in dead if base64.b64decode(e.body_b64) == b"not json"]
        assert "not a JSON update" in not_json.detail
    finally:
        process.stop()
        loop.run(fake.stop())
    assert "Traceback" not in process.log_text()
    assert BOT_TOKEN not in process.log_text()
    assert "a secret plan" not in process.log_text()


# --- group messages ---------------------------------------------------------------------------


def test_a_group_text_becomes_one_message_event(
    fake_telegram: FakeTelegram, streams: Streams, unique_chat_id: int
) -> None:
    update = fake_telegram.add_group_message(unique_chat_id, "The printer is out of toner")
    message: dict[str, Any] = update["message"]

    [event] = eventually(lambda: streams.messages(unique_chat_id), what="message event")

    key = telegram_message_key(unique_chat_id, message["message_id"])
    assert event.event_id == event_id_for(key)
    assert event.correlation_id == event.event_id
    assert event.causation_id == f"tg:update:{update['update_id']}"
    assert event.chat_id == unique_chat_id
    assert event.message_id == message["message_id"]
    assert event.update_id == update["update_id"]
    assert event.text == "The printer is out of toner"
    assert event.sender == TelegramUser(id=501, full_name="Ivan Petrov", username="ivan_p", is_bot=False)
    assert event.sent_at == datetime.fromtimestamp(message["date"], UTC)
    assert event.chat_title == "Support group"
    assert event.thread_id is None


def test_a_forum_topic_message_keeps_its_thread(
    fake_telegram: FakeTelegram, streams: Streams, unique_chat_id: int
) -> None:
    fake_telegram.add_group_message(unique_chat_id, "In a topic", thread_id=77, username=None, last_name=None)

    [event] = eventually(lambda: streams.messages(unique_chat_id), what="message event")

    assert event.thread_id == 77
    assert event.sender == TelegramUser(id=501, full_name="Ivan", username=None, is_bot=False)


def test_the_same_update_delivered_twice_is_still_one_event(
    fake_telegram: FakeTelegram, streams: Streams, unique_chat_id: int
) -> None:
    update = fake_telegram.add_group_message(unique_chat_id, "only once please")
    eventually(lambda: streams.messages(unique_chat_id), what="first delivery stored")

    fake_telegram.add_update(update)
    handled_up_to(fake_telegram, streams, unique_chat_id)

    texts = [e.text for e in streams.messages(unique_chat_id)]
    assert texts == ["only once please", "marker"]


@pytest.mark.parametrize(
    ("text", "number", "title", "link"),
    [
        ("/task Fix the printer", None, "Fix the printer", None),
        ("/task 4821", 4821, None, None),
        ("/task #4821", 4821, None, None),
        ("/task@planfix_bridge_bot   Replace toner  ", None, "Replace toner", None),
        ("/task", None, None, None),
        ("/task https://acme.planfix.com/task/4821", None, None, "https://acme.planfix.com/task/4821"),
    ],
)
def test_task_command_becomes_a_bind_request(
    fake_telegram: FakeTelegram,
    streams: Streams,
    unique_chat_id: int,
    text: str,
    number: int | None,
    title: str | None,
    link: str | None,
) -> None:
    update = fake_telegram.add_group_message(unique_chat_id, text, thread_id=5)
    message_id = update["message"]["message_id"]

    [event] = eventually(lambda: streams.bind_requests(unique_chat_id), what="bind request")

    assert event.task_number == number
    assert event.task_title == title
    assert event.task_link == link
    assert event.event_id == event_id_for(telegram_bind_key(unique_chat_id, message_id))
    assert event.causation_id == f"tg:update:{update['update_id']}"
    assert event.message_id == message_id
    assert event.requested_by.username == "ivan_p"
    assert event.chat_title == "Support group"
    assert event.thread_id == 5
    # A command is a request to the bot, not a message to carry over.
    handled_up_to(fake_telegram, streams, unique_chat_id)
    assert [e.text for e in streams.messages(unique_chat_id)] == ["marker"]


def test_a_command_for_another_bot_is_an_ordinary_message(
    fake_telegram: FakeTelegram, streams: Streams, unique_chat_id: int
) -> None:
    fake_telegram.add_group_message(unique_chat_id, "/task@some_other_bot Fix it")

    [event] = eventually(lambda: streams.messages(unique_chat_id), what="message event")

    assert event.text == "/task@some_other_bot Fix it"
    assert streams.bind_requests(unique_chat_id) == []


def test_an_anonymous_admin_message_is_stored_as_such_and_nothing_else(
    fake_telegram: FakeTelegram, streams: Streams, unique_chat_id: int
) -> None:
    group = {"id": unique_chat_id, "type": "supergroup", "title": "Support group"}
    update = fake_telegram.add_group_message(unique_chat_id, "/task Secret admin task", sender_chat=group)
    fake_telegram.add_group_message(unique_chat_id, "still anonymous", sender_chat=group)

    handled_up_to(fake_telegram, streams, unique_chat_id)

    posted = [e for e in streams.anything(unique_chat_id) if isinstance(e, AnonymousAdminPosted)]
    assert [e.message_id for e in posted] == [
        update["message"]["message_id"],
        update["message"]["message_id"] + 1,
    ]
    assert [e.text for e in streams.messages(unique_chat_id)] == ["marker"]
    assert streams.bind_requests(unique_chat_id) == []
    # The gateway only reports it; the relay gives the guidance (see the end-to-end tests).
    assert fake_telegram.sent_messages(unique_chat_id) == []


def test_a_message_posted_as_a_channel_is_stored_under_the_channel(
    fake_telegram: FakeTelegram, streams: Streams, unique_chat_id: int
) -> None:
    channel_id = unique_chat_id - 7
    channel = {
        "id": channel_id,
        "type": "channel",
        "title": "Support news",
        "username": "support_news",
    }
    fake_telegram.add_group_message(unique_chat_id, "Posted as the channel", sender_chat=channel)

    [event] = eventually(lambda: streams.messages(unique_chat_id), what="message event")

    assert event.sender == TelegramUser(
        id=channel_id, full_name="Support news", username="support_news", is_channel=True
    )


def test_private_chats_store_nothing_and_get_the_help_once(
    fake_telegram: FakeTelegram, streams: Streams, unique_chat_id: int
) -> None:
    private_chat_id = abs(unique_chat_id)  # positive ids are people
    fake_telegram.add_group_message(private_chat_id, "/task Fix the printer", user_id=private_chat_id)
    fake_telegram.add_group_message(private_chat_id, "hello bot", user_id=private_chat_id)

    handled_up_to(fake_telegram, streams, unique_chat_id)

    assert streams.anything(private_chat_id) == []
    [help_text] = [m["text"] for m in fake_telegram.sent_messages(private_chat_id)]
    assert "/link" in help_text


def test_an_update_aiogram_cannot_decode_becomes_a_dead_letter_and_the_others_are_carried(
    fake_telegram: FakeTelegram, gateway: ServiceProcess, streams: Streams, unique_chat_id: int
) -> None:
    # aiogram refuses the whole getUpdates answer when one update in it does not fit its models.
    fake_telegram.add_group_message(unique_chat_id, "before the odd one")
    odd = add_undecodable_message(fake_telegram, unique_chat_id, message_id=777)
    fake_telegram.add_group_message(unique_chat_id, "after the odd one")

    eventually(
        lambda: (
            [e.text for e in streams.messages(unique_chat_id)] == ["before the odd one", "after the odd one"]
        ),
        what="both good messages stored",
    )
    [dead] = eventually(
        lambda: [
            e
            for e in streams.events(dead_letter("telegram_gateway"))
            if isinstance(e, MessageDeadLettered) and e.stream_seq == odd["update_id"]
        ],
        what="the odd update dead-lettered",
    )
    assert dead.stream == TELEGRAM_UPDATES_SOURCE
    assert dead.reason == DeadLetterReason.UNDECODABLE
    assert json.loads(base64.b64decode(dead.body_b64)) == odd
    assert "is_bot" in dead.detail
    # Confirmed with the rest: the next getUpdates asks for what comes after it.
    eventually(
        lambda: any(
            c.method == "getUpdates" and (c.params.get("offset") or 0) > odd["update_id"]
            for c in fake_telegram.calls
        ),
        what="the odd update confirmed",
    )
    handled_up_to(fake_telegram, streams, unique_chat_id)
    assert "telegram_update_dead_lettered" in gateway.log_text()
    assert "a secret plan" not in gateway.log_text()
    # An operator sees it in the dead-letter queue; there is nothing to re-publish it to.
    listing = bridge_cli(gateway, "dlq", "list").stdout
    [line] = [
        line for line in listing.splitlines() if f"{TELEGRAM_UPDATES_SOURCE}/{odd['update_id']}" in line
    ]
    assert "cannot read" in bridge_cli(gateway, "dlq", "retry", line.split()[0]).stdout


def bridge_cli(gateway: ServiceProcess, *args: str) -> subprocess.CompletedProcess[str]:
    return run_module(
        "bridge_cli",
        *args,
        env={"NATS_URL": gateway.env["NATS_URL"], "COLUMNS": "250"},
        check=True,
    )


def test_a_caption_is_never_a_command_and_service_messages_are_not_carried(
    fake_telegram: FakeTelegram, streams: Streams, unique_chat_id: int
) -> None:
    photo = {
        "message_id": 900,
        "from": {"id": 501, "is_bot": False, "first_name": "Ivan"},
        "chat": {"id": unique_chat_id, "type": "supergroup", "title": "Support group"},
        "date": int(time.time()),
        "photo": [{"file_id": "AgAD", "file_unique_id": "AQAD", "width": 90, "height": 90}],
        "caption": "/task from a caption",
    }
    fake_telegram.add_update({"message": photo})
    fake_telegram.add_group_message(unique_chat_id, None, extra={"new_chat_title": "Renamed"})

    handled_up_to(fake_telegram, streams, unique_chat_id)

    assert [e.text for e in streams.messages(unique_chat_id)] == ["/task from a caption", "marker"]
    assert streams.bind_requests(unique_chat_id) == []


# --- every kind of message, edits and reactions ----------------------------------------------------

USER = {"id": 777, "is_bot": False, "first_name": "Olga", "username": "olga_s"}
KINDS: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
    (
        "photo: the largest size",
        {
            "photo": [
                {"file_id": "small", "file_unique_id": "s1", "width": 90, "height": 90, "file_size": 900},
                {"file_id": "large", "file_unique_id": "l1", "width": 1280, "height": 960, "file_size": 9e4},
            ],
            "caption": "the jam",
        },
        {"text": "the jam", "content_type": "photo", "files": [("photo", "large")]},
    ),
    (
        "document",
        {"document": {"file_id": "doc", "file_unique_id": "d1", "file_name": "log.txt", "file_size": 5}},
        {"text": "", "content_type": "document", "files": [("document", "doc")], "name": "log.txt"},
    ),
    (
        "voice",
        {"voice": {"file_id": "v", "file_unique_id": "v1", "duration": 3, "mime_type": "audio/ogg"}},
        {"content_type": "voice", "files": [("voice", "v")]},
    ),
    (
        "audio",
        {"audio": {"file_id": "a", "file_unique_id": "a1", "duration": 3, "file_name": "song.mp3"}},
        {"content_type": "audio", "files": [("audio", "a")], "name": "song.mp3"},
    ),
    (
        "video",
        {"video": {"file_id": "vi", "file_unique_id": "vi1", "width": 1, "height": 1, "duration": 1}},
        {"content_type": "video", "files": [("video", "vi")]},
    ),
    (
        "video note",
        {"video_note": {"file_id": "vn", "file_unique_id": "vn1", "length": 1, "duration": 1}},
        {"content_type": "video_note", "files": [("video_note", "vn")]},
    ),
    (
        "animation",
        {
            "animation": {"file_id": "an", "file_unique_id": "an1", "width": 1, "height": 1, "duration": 1},
            "document": {"file_id": "an", "file_unique_id": "an1"},
        },
        {"content_type": "animation", "files": [("animation", "an")]},
    ),
    (
        "sticker",
        {
            "sticker": {
                "file_id": "st",
                "file_unique_id": "st1",
                "type": "regular",
                "width": 512,
                "height": 512,
                "is_animated": True,
                "is_video": False,
                "emoji": "😀",
                "set_name": "HappyCats",
            }
        },
        {"content_type": "sticker", "files": [("sticker", "st")], "sticker": ("😀", "HappyCats", False)},
    ),
    ("location", {"location": {"latitude": 55.75, "longitude": 37.61}}, {"location": (55.75, 37.61, None)}),
    (
        "venue",
        {
            "location": {"latitude": 1.5, "longitude": 2.5},
            "venue": {
                "location": {"latitude": 1.5, "longitude": 2.5},
                "title": "Office",
                "address": "Main 1",
            },
        },
        {"location": (1.5, 2.5, "Office")},
    ),
    (
        "contact",
        {"contact": {"phone_number": "+100200", "first_name": "Petr", "last_name": "Sidorov", "user_id": 9}},
        {"contact": ("Petr Sidorov", "+100200")},
    ),
    (
        "poll",
        {
            "poll": {
                "id": "p",
                "question": "Lunch?",
                "total_voter_count": 0,
                "is_closed": False,
                "is_anonymous": True,
                "type": "regular",
                "allows_multiple_answers": False,
                "allows_revoting": False,
                "members_only": False,
                "options": [
                    {"persistent_id": "1", "text": "Pizza", "voter_count": 0},
                    {"persistent_id": "2", "text": "Soup", "voter_count": 0},
                ],
            }
        },
        {"poll": ("Lunch?", ["Pizza", "Soup"])},
    ),
    (
        "forwarded from a person",
        {"text": "fwd", "forward_origin": {"type": "user", "date": 1, "sender_user": USER}},
        {"forwarded": "Olga (@olga_s)"},
    ),
    (
        "forwarded from a channel",
        {
            "text": "news",
            "forward_origin": {
                "type": "channel",
                "date": 1,
                "message_id": 3,
                "chat": {"id": -1009, "type": "channel", "title": "Ops news", "username": "opsnews"},
            },
        },
        {"forwarded": "channel Ops news (@opsnews)"},
    ),
]


@pytest.mark.parametrize(("fields", "expected"), [(f, e) for _, f, e in KINDS], ids=[n for n, _, _ in KINDS])
def test_every_kind_of_message_becomes_a_message_event_with_its_content(
    fake_telegram: FakeTelegram,
    streams: Streams,
    unique_chat_id: int,
    fields: dict[str, Any],
    expected: dict[str, Any],
) -> None:
    fake_telegram.add_group_message(unique_chat_id, None, extra=fields)

    [event] = eventually(lambda: streams.messages(unique_chat_id), what="message event")

    if "text" in expected:
        assert event.text == expected["text"]
    if "content_type" in expected:
        assert event.content_type == expected["content_type"]
    if "files" in expected:
        assert [(a.kind, a.file_id) for a in event.attachments] == expected["files"]
    if "name" in expected:
        assert event.attachments[0].file_name == expected["name"]
    if "sticker" in expected:
        sticker = event.attachments[0]
        assert (sticker.emoji, sticker.set_name, sticker.is_image) == expected["sticker"]
    if "location" in expected:
        assert event.location is not None
        assert (event.location.latitude, event.location.longitude, event.location.title) == expected[
            "location"
        ]
    if "contact" in expected:
        assert event.contact is not None
        assert (event.contact.full_name, event.contact.phone_number) == expected["contact"]
    if "poll" in expected:
        assert event.poll is not None
        assert (event.poll.question, event.poll.options) == expected["poll"]
    if "forwarded" in expected:
        assert event.forwarded_from == expected["forwarded"]


def test_a_reply_carries_a_quote_and_entities_and_albums_keep_their_group(
    fake_telegram: FakeTelegram, streams: Streams, unique_chat_id: int
) -> None:
    first = fake_telegram.add_group_message(
        unique_chat_id, "Printer on floor 3\nsecond line", first_name="Anna"
    )
    bold = [{"type": "bold", "offset": 0, "length": 4}]
    fake_telegram.add_group_message(
        unique_chat_id,
        "Done, replaced it",
        extra={"reply_to_message": first["message"], "entities": bold, "media_group_id": "album-1"},
    )

    events = eventually(lambda: streams.messages(unique_chat_id)[1:], what="reply event")

    [reply] = events
    assert reply.reply_to is not None
    assert (reply.reply_to.author, reply.reply_to.first_line) == (
        "Anna Petrov (@ivan_p)",
        "Printer on floor 3",
    )
    assert [(e.type, e.offset, e.length) for e in reply.entities] == [("bold", 0, 4)]
    assert reply.media_group_id == "album-1"


def test_an_edit_and_a_reaction_become_events_and_reactions_are_asked_for(
    fake_telegram: FakeTelegram, streams: Streams, unique_chat_id: int
) -> None:
    original = fake_telegram.add_group_message(unique_chat_id, "typo hree")
    message_id = original["message"]["message_id"]
    eventually(lambda: streams.messages(unique_chat_id), what="message stored")

    fake_telegram.edit_group_message(original, "typo here")
    fake_telegram.add_reaction(unique_chat_id, message_id, ["👍", "🔥"])

    [edited] = eventually(
        lambda: [e for e in streams.anything(unique_chat_id) if isinstance(e, TelegramMessageEdited)],
        what="edit event",
    )
    [reacted] = eventually(
        lambda: [e for e in streams.anything(unique_chat_id) if isinstance(e, TelegramReactionChanged)],
        what="reaction event",
    )
    assert (edited.message_id, edited.text) == (message_id, "typo here")
    assert reacted.message_id == message_id
    assert [r.emoji for r in reacted.reactions] == ["👍", "🔥"]
    assert reacted.actor.display == "Anna (@anna_iv)"
    polls = [c for c in fake_telegram.calls if c.method == "getUpdates" and "allowed_updates" in c.params]
    assert {"message", "edited_message", "message_reaction"} <= set(polls[-1].params["allowed_updates"])


# --- commands and the group's life-cycle ----------------------------------------------------------


def test_the_commands_are_registered_for_groups_at_start(
    fake_telegram: FakeTelegram, gateway: ServiceProcess
) -> None:
    in_groups = fake_telegram.commands_in("all_group_chats")
    in_private = fake_telegram.commands_in("all_private_chats")

    assert [c["command"] for c in in_groups] == [
        "task",
        "status",
        "unbind",
        "lang",
        "help",
        "link",
        "done",
        "deadline",
        "assign",
    ]
    assert [c["command"] for c in in_private] == ["link", "whoami", "unlink", "help"]
    # One menu per language (setMyCommands' language_code); others get BRIDGE_LANGUAGE's (en here).
    russian = {c["command"]: c["description"] for c in fake_telegram.commands_shown_to("ru")}
    english = {c["command"]: c["description"] for c in fake_telegram.commands_shown_to("en-GB")}
    assert russian["status"] == "К какой задаче ПланФикса привязана группа"
    assert english["status"] == "Which Planfix task this group is bound to"
    assert fake_telegram.commands_shown_to("de") == in_groups
    private_ru = fake_telegram.commands_shown_to("ru", "all_private_chats")
    assert {c["command"]: c["description"] for c in private_ru}["whoami"] == "Кто вы в ПланФиксе"
    polls = [c for c in fake_telegram.calls if c.method == "getUpdates"]
    assert {"message", "my_chat_member"} <= set(polls[-1].params["allowed_updates"])


def test_task_carries_whether_the_sender_is_an_admin(
    fake_telegram: FakeTelegram, streams: Streams, unique_chat_id: int
) -> None:
    fake_telegram.set_member_status(unique_chat_id, 601, "administrator")
    fake_telegram.add_group_message(unique_chat_id, "/task 4821", user_id=601)
    fake_telegram.add_group_message(unique_chat_id, "/task 4822", user_id=602)

    eventually(lambda: len(streams.bind_requests(unique_chat_id)) == 2, what="two bind requests")
    requests = streams.bind_requests(unique_chat_id)

    assert [(r.task_number, r.requester_is_admin) for r in requests] == [(4821, True), (4822, False)]
    asked = [
        c.params
        for c in fake_telegram.calls
        if c.method == "getChatMember" and c.params["chat_id"] == unique_chat_id
    ]
    assert [a["user_id"] for a in asked] == [601, 602]


def test_unbind_status_and_help_become_requests(
    fake_telegram: FakeTelegram, streams: Streams, unique_chat_id: int
) -> None:
    fake_telegram.add_group_message(unique_chat_id, "/unbind", thread_id=9)
    status = fake_telegram.add_group_message(unique_chat_id, "/status@planfix_bridge_bot")
    fake_telegram.add_group_message(unique_chat_id, "/help")
    fake_telegram.add_group_message(unique_chat_id, "/status@some_other_bot")

    handled_up_to(fake_telegram, streams, unique_chat_id)

    [unbind] = [
        e for e in streams.bind_requests_and_unbinds(unique_chat_id) if isinstance(e, UnbindRequested)
    ]
    assert (unbind.thread_id, unbind.requester_is_admin, unbind.requested_by.username) == (9, False, "ivan_p")
    questions = [e for e in streams.group_events(unique_chat_id) if isinstance(e, GroupCommandReceived)]
    assert [(q.command, q.bot_reads_all_messages, q.bot_username) for q in questions] == [
        (GroupCommand.STATUS, True, "planfix_bridge_bot"),
        (GroupCommand.HELP, True, "planfix_bridge_bot"),
    ]
    assert questions[0].message_id == status["message"]["message_id"]
    assert [e.text for e in streams.messages(unique_chat_id)] == ["/status@some_other_bot", "marker"]


def test_status_names_the_other_bots_of_the_group_that_answer_task_too(
    fake_telegram: FakeTelegram, streams: Streams, unique_chat_id: int
) -> None:
    # Planfix's own bot is an admin here; a bot that is only a member is invisible to the Bot API.
    fake_telegram.add_other_bot(unique_chat_id, "planfix_bot")
    fake_telegram.add_other_bot(unique_chat_id, "quiet_bot", status="member")
    # Someone binds with another bot: we never see that bot's answer, but we see this.
    sent = fake_telegram.add_group_message(unique_chat_id, "/task@Helper_Bot Fix the printer")
    fake_telegram.add_group_message(unique_chat_id, "/help")
    fake_telegram.add_group_message(unique_chat_id, "/status")

    [status] = eventually(
        lambda: [
            e
            for e in streams.group_events(unique_chat_id)
            if isinstance(e, GroupCommandReceived) and e.command is GroupCommand.STATUS
        ],
        what="/status stored",
    )

    assert status.other_bots == ["planfix_bot", "Helper_Bot"]
    [seen] = [e for e in streams.events(subjects.telegram_other_bot_commanded(unique_chat_id))]
    assert isinstance(seen, OtherBotCommanded)
    assert (seen.bot_username, seen.command, seen.message_id) == (
        "Helper_Bot",
        "task",
        sent["message"]["message_id"],
    )
    # Still a message of the group like any other, and no bind request of ours.
    assert [e.text for e in streams.messages(unique_chat_id)] == ["/task@Helper_Bot Fix the printer"]
    assert streams.bind_requests(unique_chat_id) == []
    # Asked once, for /status; /help and messages ask nothing.
    asked = [
        c
        for c in fake_telegram.calls
        if c.method == "getChatAdministrators" and c.params.get("chat_id") == unique_chat_id
    ]
    assert len(asked) == 1
    assert asked[0].params.get("return_bots") is True
    [help_question] = [
        e
        for e in streams.group_events(unique_chat_id)
        if isinstance(e, GroupCommandReceived) and e.command is GroupCommand.HELP
    ]
    assert help_question.other_bots == []


def test_status_in_a_group_with_no_other_bot_names_none(
    fake_telegram: FakeTelegram, gateway: ServiceProcess, streams: Streams, unique_chat_id: int
) -> None:
    fake_telegram.add_group_message(unique_chat_id, "/status")

    [status] = eventually(lambda: streams.group_events(unique_chat_id), what="/status stored")

    assert isinstance(status, GroupCommandReceived)
    assert status.other_bots == []
    assert "other_bots_not_read" not in gateway.log_text()


def test_the_bot_joining_and_leaving_are_membership_changes_a_promotion_is_not(
    fake_telegram: FakeTelegram, streams: Streams, unique_chat_id: int
) -> None:
    fake_telegram.set_bot_membership(unique_chat_id, "left")
    fake_telegram.set_bot_membership(unique_chat_id, "member")
    fake_telegram.set_bot_membership(unique_chat_id, "administrator")
    fake_telegram.set_bot_membership(unique_chat_id, "kicked")

    eventually(lambda: len(streams.group_events(unique_chat_id)) == 3, what="three membership changes")
    changes = streams.group_events(unique_chat_id)

    assert [(c.is_member, c.status) for c in changes if isinstance(c, BotMembershipChanged)] == [
        (False, "left"),
        (True, "member"),
        (False, "kicked"),
    ]


def test_both_service_messages_of_an_upgrade_are_one_migration(
    fake_telegram: FakeTelegram, streams: Streams, unique_chat_id: int
) -> None:
    old_group = -(abs(unique_chat_id) % 10_000_000_000)  # a basic group's id: no -100 prefix
    new_group = fake_telegram.migrate_to_supergroup(old_group)

    [migrated] = eventually(lambda: streams.group_events(new_group), what="the migration")
    stays(lambda: len(streams.group_events(new_group)) == 1, for_s=1.0, what="only one")

    assert isinstance(migrated, ChatMigrated)
    assert (migrated.old_chat_id, migrated.chat_id) == (old_group, new_group)
    assert streams.messages(old_group) == []
    assert streams.messages(new_group) == []


# --- life-cycle (last: stops this module's gateway) ----------------------------------------------


def test_sigterm_stops_the_gateway_cleanly_within_seconds(gateway: ServiceProcess, streams: Streams) -> None:
    stays(gateway.alive, for_s=0.5, what="gateway running before the stop")
    started = time.monotonic()

    code = gateway.stop(timeout_s=10)

    assert code == 0, gateway.log_text()
    assert time.monotonic() - started < 5
    log = gateway.log_text()
    assert "telegram_gateway_stopped" in log
    assert "Traceback" not in log
    assert BOT_TOKEN not in log
