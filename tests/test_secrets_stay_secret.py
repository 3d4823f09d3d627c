"""Secrets stay secret: one redaction step (``bridge_lib.redaction``) for every log line and every
stored failure reason, and a Telegram file download that fails never carries the bot token (it
travels in the file URL) into a log or the DEADLETTER stream."""

from __future__ import annotations

import base64
import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import structlog
from nats.js.api import DeliverPolicy
from pydantic import SecretStr

from bridge_lib import redaction
from bridge_lib.eventbus import Delivery, store_dead_letter, stream_config
from bridge_lib.redaction import MASK, RedactingFormatter, redact, redact_event_dict
from contracts.events import DeadLetterReason
from contracts.subjects import DEADLETTER_STREAM
from sandbox.fake_planfix import FakePlanfix
from sandbox.fake_telegram import FakeTelegram
from tests.conftest import BOT_TOKEN, PLANFIX_TOKEN, WEBHOOK_SECRET
from tests.e2e_bridge import Bridge, bind_new_task, bridge_fixture
from tests.support import LoopThread, connect_nats, eventually, jetstream, relayed_comments

REAL_LOOKING_TOKEN = "7012345678:AAH3kq9ZP-xr_8Tt0Qy4mWv1Lb2Nc3Jd5Ke"
FILE_URL = f"https://api.telegram.org/file/bot{REAL_LOOKING_TOKEN}/photos/file_7.jpg"


@pytest.fixture
def registered() -> Iterator[None]:
    redaction.forget_registered_secrets()
    yield
    redaction.forget_registered_secrets()


# --- the step itself ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        (f"500, message='Internal Server Error', url='{FILE_URL}'", REAL_LOOKING_TOKEN),
        (f"POST https://api.telegram.org/bot{REAL_LOOKING_TOKEN}/sendMessage", REAL_LOOKING_TOKEN),
        (f"token {REAL_LOOKING_TOKEN} pasted", REAL_LOOKING_TOKEN),
        ("mongodb://bridge_relay:Sup3r-pass@mongo:27017/?authSource=admin", "Sup3r-pass"),
        ("nats://relay:n4ts-pass@nats-1:4222,nats://relay:n4ts-pass@nats-2:4222", "n4ts-pass"),
        ("Authorization: Bearer abcdef0123456789", "abcdef0123456789"),
        ("GET /planfix/webhook/Zq7-long-secret-path HTTP/1.1", "Zq7-long-secret-path"),
        ("https://x.example/hook?token=abc123def&x=1", "abc123def"),
    ],
)
def test_secret_shapes_are_cut_whoever_wrote_them(registered: None, text: str, secret: str) -> None:
    cleaned = redact(text)
    assert secret not in cleaned
    assert MASK in cleaned


def test_registered_secrets_are_cut_anywhere_and_a_bot_tokens_key_alone_too(registered: None) -> None:
    redaction.register_secret(SecretStr(BOT_TOKEN))
    redaction.register_secret(PLANFIX_TOKEN)
    key = BOT_TOKEN.split(":", 1)[1]
    cleaned = redact(f"a {BOT_TOKEN} b {key} c {PLANFIX_TOKEN} d")
    assert cleaned == f"a {MASK} b {MASK} c {MASK} d"


def test_settings_register_their_secret_fields_and_url_passwords(
    registered: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bridge_lib.settings import load_settings
    from services.relay.config import RelaySettings

    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", BOT_TOKEN)
    monkeypatch.setenv("PLANFIX_BASE_URL", "https://acc.planfix.com/rest/")
    monkeypatch.setenv("PLANFIX_API_TOKEN", PLANFIX_TOKEN)
    monkeypatch.setenv("MONGODB_URL", "mongodb://relay:p%40ss-word-1@mongo:27017")
    load_settings(RelaySettings, "relay")
    line = f"{BOT_TOKEN} {PLANFIX_TOKEN} p@ss-word-1 p%40ss-word-1"
    assert redact(line) == " ".join([MASK] * 4)


def test_hostile_input_costs_one_pass_per_rule(registered: None) -> None:
    # Long runs of what each rule starts with: a backtracking pattern would not finish.
    for hostile in ("a://" * 20_000, "1" * 80_000 + ":", "/bot1:" * 15_000, "Bearer " * 10_000):
        assert redact(hostile)


def test_every_structlog_line_passes_the_step_exceptions_included(registered: None) -> None:
    out = io.StringIO()
    structlog.configure(
        processors=[
            structlog.processors.format_exc_info,
            redact_event_dict,
            structlog.processors.JSONRenderer(),
        ],
        logger_factory=structlog.PrintLoggerFactory(file=out),
        cache_logger_on_first_use=False,
    )
    try:
        log = structlog.get_logger("test")
        try:
            raise RuntimeError(f"download failed: {FILE_URL}")
        except RuntimeError:
            log.exception("crashed", url=FILE_URL, nested={"urls": [FILE_URL]})
    finally:
        structlog.reset_defaults()
    written = out.getvalue()
    assert "download failed" in written
    assert REAL_LOOKING_TOKEN not in written
    assert REAL_LOOKING_TOKEN.split(":")[1] not in written


def test_the_standard_librarys_lines_pass_it_too(registered: None) -> None:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(RedactingFormatter("%(name)s %(message)s"))
    logger = logging.getLogger("test.redaction")
    logger.addHandler(handler)
    try:
        logger.error("GET %s failed", FILE_URL)
    finally:
        logger.removeHandler(handler)
    assert REAL_LOOKING_TOKEN not in out.getvalue()
    assert "failed" in out.getvalue()


# --- stored failure reasons ----------------------------------------------------------------------


def test_a_dead_letters_reason_is_stored_redacted(loop: LoopThread, nats_url: str, registered: None) -> None:
    consumer = "test-redaction-consumer"

    async def store_and_read() -> bytes:
        nc = await connect_nats(nats_url)
        try:
            js = nc.jetstream()
            try:
                await js.add_stream(stream_config(DEADLETTER_STREAM))
            except Exception:  # already there (another test made it): that is fine
                await js.stream_info(DEADLETTER_STREAM.name)
            raw = SimpleNamespace(
                metadata=SimpleNamespace(stream="TELEGRAM"),
                subject="telegram.message.received.-1",
                headers={},
                data=b"{}",
                _client=nc,
            )
            stored = await store_dead_letter(
                raw,
                Delivery(stream_seq=987654, num_delivered=10, consumer=consumer),
                None,
                DeadLetterReason.RETRIES_EXHAUSTED,
                f"ClientResponseError: 500, message='Internal Server Error', url='{FILE_URL}'",
            )
            assert stored
            sub = await js.subscribe(
                f"deadletter.{consumer}", ordered_consumer=True, deliver_policy=DeliverPolicy.LAST
            )
            msg = await sub.next_msg(timeout=5)
            await sub.unsubscribe()
            return bytes(msg.data)
        finally:
            await nc.close()

    data = loop.run(store_and_read())
    assert REAL_LOOKING_TOKEN not in data.decode()
    assert "Internal Server Error" in json.loads(data)["detail"]


# --- end to end: a failing download ------------------------------------------------------------


bridge = bridge_fixture("secrets")


def _photo(fake_telegram: FakeTelegram, data: bytes) -> tuple[str, list[dict[str, Any]]]:
    big = fake_telegram.add_file(data)
    small = fake_telegram.add_file(b"thumb")
    return str(big["file_id"]), [{**small, "width": 90, "height": 90}, {**big, "width": 1280, "height": 960}]


def _everything_stored_in_deadletter(bridge: Bridge) -> str:
    async def read() -> str:
        async with jetstream(bridge.nats_url) as js:
            try:
                info = await js.stream_info(DEADLETTER_STREAM.name)
            except Exception:
                return ""
            texts = []
            for seq in range(info.state.first_seq, info.state.last_seq + 1):
                try:
                    stored = await js.get_msg(DEADLETTER_STREAM.name, seq)
                except Exception:
                    continue
                data = bytes(stored.data or b"")
                texts.append(data.decode(errors="replace"))
                body = json.loads(data).get("body_b64")
                if body:
                    texts.append(base64.b64decode(body).decode(errors="replace"))
            return "\n".join(texts)

    return bridge.loop.run(read())


def test_a_failing_telegram_download_leaves_no_token_in_any_log_or_dead_letter(
    bridge: Bridge, fake_telegram: FakeTelegram, fake_planfix: FakePlanfix, unique_chat_id: int
) -> None:
    number = bind_new_task(bridge, fake_telegram, unique_chat_id, "Broken file server", fake_planfix)
    # One photo whose download fails twice with a 500, then works (retried, then attached); one
    # the file server refuses for good (named in the comment at once).
    flaky_id, flaky = _photo(fake_telegram, b"\x89PNG-flaky")
    fake_telegram.fail_downloads(flaky_id, 500, times=2)
    fake_telegram.add_group_message(unique_chat_id, None, extra={"photo": flaky, "caption": "flaky"})
    gone_id, gone = _photo(fake_telegram, b"\x89PNG-gone")
    fake_telegram.fail_downloads(gone_id, 403, times=50)
    fake_telegram.add_group_message(unique_chat_id, None, extra={"photo": gone, "caption": "gone"})

    def both_carried() -> list[Any]:
        found = relayed_comments(fake_planfix, number)
        return found if len(found) >= 2 else []

    comments = eventually(both_carried, timeout_s=40, what="both photos carried")
    by_caption = {("flaky" if "flaky" in c.description else "gone"): c for c in comments}
    assert len(by_caption["flaky"].files) == 1
    assert "could not be fetched from Telegram" in by_caption["gone"].description
    assert flaky_id in fake_telegram.downloads()

    relay_log = bridge.processes["relay"].log_text()
    assert "HTTP 500" in relay_log  # the retry was logged, with its status and nothing else
    secrets = (BOT_TOKEN, BOT_TOKEN.split(":", 1)[1], PLANFIX_TOKEN, WEBHOOK_SECRET)
    for name, process in bridge.processes.items():
        assert not redaction.secrets_in(process.log_text(), secrets), f"{name} logged a secret"
    assert not redaction.secrets_in(_everything_stored_in_deadletter(bridge), secrets)


def test_the_launcher_prints_where_nats_and_the_store_are_without_their_passwords(
    registered: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from devtools.launcher import infrastructure_line

    monkeypatch.setenv("NATS_URL", "nats://relay:n4ts-Secret-pw@127.0.0.1:4222")
    monkeypatch.setenv("MONGODB_URL", "mongodb://relay:m0ngo-Secret-pw@127.0.0.1:27017/?authSource=admin")
    line = infrastructure_line(tmp_path)
    assert "127.0.0.1:4222" in line
    assert "127.0.0.1:27017" in line
    assert "n4ts-Secret-pw" not in line
    assert "m0ngo-Secret-pw" not in line
