"""`make run`: the whole bridge from one command, stopped by Ctrl-C; without credentials, a clear message."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

from devtools import devstack
from devtools.launcher import chosen_mode
from sandbox.fake_planfix import FakePlanfix
from sandbox.fake_telegram import FakeTelegram
from tests.conftest import BOT_TOKEN, PLANFIX_TOKEN, WEBHOOK_SECRET
from tests.support import REPO_ROOT, environ_without, eventually, run_module

REQUIRED = ("TELEGRAM_BOT_TOKEN", "PLANFIX_BASE_URL", "PLANFIX_API_TOKEN", "PLANFIX_WEBHOOK_SECRET")


@pytest.mark.parametrize(
    ("environ", "mode"),
    [
        ({}, "sandbox"),
        ({"TELEGRAM_BOT_TOKEN": "", "PLANFIX_API_TOKEN": " "}, "sandbox"),  # .env.example left empty
        ({"TELEGRAM_BOT_TOKEN": "1:x"}, "live"),  # one credential: live, and the rest is named missing
        ({"PLANFIX_API_TOKEN": "t"}, "live"),
        ({"BRIDGE_MODE": "live"}, "live"),
        ({"BRIDGE_MODE": "Sandbox", "TELEGRAM_BOT_TOKEN": "1:x", "PLANFIX_API_TOKEN": "t"}, "sandbox"),
    ],
)
def test_sandbox_mode_is_chosen_only_without_credentials_or_when_asked_for(
    environ: dict[str, str], mode: str
) -> None:
    assert chosen_mode(environ) == mode


def test_an_unknown_bridge_mode_is_refused() -> None:
    with pytest.raises(ValueError, match="live or sandbox"):
        chosen_mode({"BRIDGE_MODE": "demo"})


def test_missing_credentials_are_named_with_how_to_get_them(tmp_path: Path) -> None:
    # Live mode asked for: without credentials it names them and stops (no sandbox instead).
    result = run_module(
        "devtools.launcher",
        env={"BRIDGE_MODE": "live"},
        without=("TELEGRAM_", "PLANFIX_", "NATS_", "MONGODB_", "BRIDGE_"),
        cwd=tmp_path,
    )

    assert result.returncode == 2
    for name in REQUIRED:
        assert name in result.stderr
    assert "BotFather" in result.stderr
    assert "Traceback" not in result.stderr
    # Nothing was started: no runtime data was written.
    assert not (tmp_path / "var").exists()


def test_make_run_starts_the_whole_bridge_and_ctrl_c_stops_it(
    tmp_path: Path, fake_telegram: FakeTelegram, fake_planfix: FakePlanfix, unique_chat_id: int
) -> None:
    webhook_port = devstack.free_port()
    env = environ_without("TELEGRAM_", "PLANFIX_", "NATS_", "MONGODB_", "BRIDGE_", "SANDBOX_")
    env.update(
        PYTHONPATH=str(REPO_ROOT),
        TELEGRAM_BOT_TOKEN=BOT_TOKEN,
        TELEGRAM_API_BASE_URL=fake_telegram.base_url,
        PLANFIX_BASE_URL=fake_planfix.base_url,
        PLANFIX_API_TOKEN=PLANFIX_TOKEN,
        PLANFIX_WEBHOOK_SECRET=WEBHOOK_SECRET,
        PLANFIX_WEBHOOK_PORT=str(webhook_port),
        NATS_PORT=str(devstack.free_port()),
        MONGODB_PORT=str(devstack.free_port()),
    )
    output = tmp_path / "make-run.log"
    with open(output, "wb") as sink:
        launcher = subprocess.Popen(
            [sys.executable, "-m", "devtools.launcher"],
            cwd=tmp_path,
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    try:
        eventually(lambda: "relay_started" in output.read_text(), timeout_s=60, what="relay started")
        eventually(
            lambda: "telegram_gateway_started" in output.read_text(), timeout_s=60, what="gateway started"
        )

        fake_telegram.set_member_status(unique_chat_id, 501, "administrator")  # only admins bind
        fake_telegram.add_group_message(unique_chat_id, "/task Started by make run")

        eventually(lambda: fake_telegram.sent_messages(unique_chat_id), timeout_s=30, what="confirmation")
        assert "Started by make run" in fake_telegram.sent_messages(unique_chat_id)[0]["text"]
    finally:
        launcher.send_signal(signal.SIGINT)
        code = launcher.wait(30)
    log = output.read_text()
    assert code == 0, log
    assert "Traceback" not in log
    assert (tmp_path / "var" / "nats").is_dir()
    assert (tmp_path / "var" / "mongo").is_dir()
    # Real credentials: no fake was started, no sandbox state was written.
    assert "SANDBOX" not in log
    assert "sandbox          |" not in log
    assert not (tmp_path / "var" / "sandbox").exists()
    for name in ("binder", "relay", "planfix_gateway", "telegram_gateway"):
        assert f'"{name}_stopping"' in log or f"{name}_stopping" in log
