"""A token Telegram or Planfix refuses stops the services that use it, plainly and without a leak.

A refused token is fatal at start: each service that uses it logs which setting was refused and
how to fix it, and exits 2 (a restart cannot help; an unreachable API only warns and waits).
Neither token, nor its secret part after the colon, appears in any log line.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

import pytest

from devtools import devstack
from devtools.devstack import HEALTH_PORT_VARIABLES
from sandbox.fake_planfix import FakePlanfix
from sandbox.fake_telegram import FakeTelegram
from tests.conftest import BOT_TOKEN, PLANFIX_TOKEN
from tests.e2e_bridge import stack_env
from tests.support import ServiceProcess, eventually

WRONG_BOT_TOKEN = "424242:AAwrong-bot-token-secret-part"
WRONG_PLANFIX_TOKEN = "wrong-planfix-token-0123456789abcdef"


def service_env(
    nats_url: str,
    mongo_url: str,
    telegram: FakeTelegram,
    planfix: FakePlanfix,
    *,
    bot_token: str,
    planfix_token: str,
) -> dict[str, str]:
    return {
        **stack_env(
            nats_url,
            mongo_url,
            f"tokens_{devstack.free_port()}",
            telegram,
            planfix,
            webhook_port=devstack.free_port(),
            bot_token=bot_token,
            planfix_token=planfix_token,
        ),
        **{variable: "0" for variable in HEALTH_PORT_VARIABLES.values()},
    }


def exited(process: ServiceProcess) -> bool:
    return not process.alive()


def run_until_exit(names: tuple[str, ...], env: dict[str, str], log_dir: Path) -> dict[str, ServiceProcess]:
    processes = {name: ServiceProcess(name, env, log_dir).start() for name in names}
    try:
        for process in processes.values():
            eventually(partial(exited, process), timeout_s=90, interval_s=0.2, what=f"{process.name} exits")
    finally:
        for process in processes.values():
            process.stop()
    return processes


def assert_no_leak(process: ServiceProcess, token: str) -> None:
    log = process.log_text()
    for part in {token, token.split(":", 1)[-1]}:
        assert part not in log, f"{process.name} logged the token"


@pytest.mark.parametrize(
    ("wrong", "names", "setting", "event"),
    [
        ("telegram", ("telegram_gateway", "relay"), "TELEGRAM_BOT_TOKEN", "telegram_token_refused"),
        ("planfix", ("relay", "binder", "planfix_gateway"), "PLANFIX_API_TOKEN", "planfix_token_rejected"),
    ],
)
def test_a_refused_token_stops_each_service_using_it_naming_the_setting_and_never_logging_it(
    wrong: str,
    names: tuple[str, ...],
    setting: str,
    event: str,
    nats_url: str,
    mongo_url: str,
    fake_telegram: FakeTelegram,
    fake_planfix: FakePlanfix,
    tmp_path: Path,
) -> None:
    bot_token = WRONG_BOT_TOKEN if wrong == "telegram" else BOT_TOKEN
    planfix_token = WRONG_PLANFIX_TOKEN if wrong == "planfix" else PLANFIX_TOKEN
    env = service_env(
        nats_url, mongo_url, fake_telegram, fake_planfix, bot_token=bot_token, planfix_token=planfix_token
    )

    processes = run_until_exit(names, env, tmp_path)

    for process in processes.values():
        assert process.process is not None
        assert process.process.returncode == 2, process.log_text()[-2000:]
        log = process.log_text()
        assert event in log
        assert setting in log
        assert "Traceback" not in log
        assert_no_leak(process, bot_token)
        assert_no_leak(process, planfix_token)
