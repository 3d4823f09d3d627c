"""The whole bridge as real processes for end-to-end tests: four services on their own NATS,
the real store, the session's fake Telegram and Planfix servers.

``running_bridge`` starts them (a module's tests share one bridge; they stay independent by
using their own chats and tasks) and, on the way out, fails the module if a service logged a
traceback; ``bridge_fixture`` makes it a module's ``bridge`` fixture.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from motor.motor_asyncio import AsyncIOMotorClient

from contracts.events import TaskBound
from devtools import devstack
from devtools.devstack import SERVICES
from sandbox.fake_planfix import FakePlanfix
from sandbox.fake_telegram import FakeTelegram
from tests.conftest import BOT_TOKEN, GROUP_PACE, PLANFIX_TOKEN, WEBHOOK_SECRET
from tests.support import LoopThread, ServiceProcess, eventually, read_stream_events, wait_for_binding_notice


@dataclass
class Bridge:
    nats_url: str
    mongo_url: str
    database: str
    webhook_url: str
    processes: dict[str, ServiceProcess]
    loop: LoopThread

    def events(self, subject_filter: str) -> list[Any]:
        return [event for _, event in self.loop.run(read_stream_events(self.nats_url, subject_filter))]

    def binding_document(self, chat_id: int) -> dict[str, Any] | None:
        async def find() -> dict[str, Any] | None:
            client: AsyncIOMotorClient[dict[str, Any]] = AsyncIOMotorClient(self.mongo_url)
            try:
                document: dict[str, Any] | None = await client[self.database]["bindings"].find_one(
                    {"chat_id": chat_id}
                )
                return document
            finally:
                client.close()

        return self.loop.run(find())

    def insert_document(self, collection: str, document: dict[str, Any]) -> None:
        async def insert() -> None:
            client: AsyncIOMotorClient[dict[str, Any]] = AsyncIOMotorClient(self.mongo_url)
            try:
                await client[self.database][collection].insert_one(document)
            finally:
                client.close()

        self.loop.run(insert())

    def update_documents(self, collection: str, query: dict[str, Any], change: dict[str, Any]) -> int:
        """Change stored documents as time would have (e.g. an item sent a day ago); how many."""

        async def update() -> int:
            client: AsyncIOMotorClient[dict[str, Any]] = AsyncIOMotorClient(self.mongo_url)
            try:
                result = await client[self.database][collection].update_many(query, change)
                return int(result.modified_count)
            finally:
                client.close()

        return self.loop.run(update())

    def restart(self, name: str) -> None:
        assert self.processes[name].stop() == 0, (
            f"{name} did not stop cleanly:\n{self.processes[name].log_text()}"
        )
        self.processes[name].start()


def stack_env(
    nats_url: str,
    mongo_url: str,
    database: str,
    telegram: FakeTelegram,
    planfix: FakePlanfix,
    *,
    webhook_port: int,
    bot_token: str = BOT_TOKEN,
    planfix_token: str = PLANFIX_TOKEN,
) -> dict[str, str]:
    """What every service of a test's stack is told: its NATS and store (``database``), the fake
    Telegram and Planfix and their tokens, and where the Planfix webhook listens."""
    return {
        "NATS_URL": nats_url,
        "MONGODB_URL": mongo_url,
        "MONGODB_DATABASE": database,
        "TELEGRAM_BOT_TOKEN": bot_token,
        "TELEGRAM_API_BASE_URL": telegram.base_url,
        "PLANFIX_BASE_URL": planfix.base_url,
        "PLANFIX_API_TOKEN": planfix_token,
        "PLANFIX_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "PLANFIX_WEBHOOK_PORT": str(webhook_port),
        "PLANFIX_WEBHOOK_HOST": "127.0.0.1",
    }


def started(process: ServiceProcess, name: str) -> bool:
    return f"{name}_started" in process.log_text()


def wait_until_ready(processes: Mapping[str, ServiceProcess], webhook_port: int, *, timeout_s: float) -> None:
    """Ready when the planfix gateway listens on ``webhook_port`` and the relay's consumers exist
    (it starts them after its directory caught up), and the binder's."""
    devstack.wait_for_port(webhook_port, timeout_s=timeout_s, what="planfix_gateway")
    for name in ("relay", "binder"):
        eventually(partial(started, processes[name], name), timeout_s=timeout_s, what=f"{name} started")


@contextlib.contextmanager
def running_bridge(
    loop: LoopThread,
    work_dir: Path,
    mongo_url: str,
    fake_telegram: FakeTelegram,
    fake_planfix: FakePlanfix,
    *,
    name: str = "e2e",
    extra_env: dict[str, str] | None = None,
    nats_users: bool = False,
) -> Iterator[Bridge]:
    """``nats_users``: NATS with deploy/nats/accounts.conf's users, each service connecting as
    its own (the test's reads connect as the operator)."""
    # A NATS server of its own: no events from other test modules reach these services (and a
    # directory of its own, as several modules use this fixture).
    webhook_port = devstack.free_port()
    run_dir = work_dir / f"{name}-{webhook_port}"
    service_env: dict[str, dict[str, str]] = {service: {} for service in SERVICES}
    if nats_users:
        from tools import nats_auth

        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "accounts.conf").write_text(nats_auth.ACCOUNTS_FILE.read_text(encoding="utf-8"))
        (run_dir / "nats.conf").write_text('include "accounts.conf"\n', encoding="utf-8")
        users = {user.user: user for user in nats_auth.all_permissions()}
        passwords = {user: f"{user}-password-for-tests" for user in users}
        nats = devstack.start_nats(
            run_dir / "nats", log_file=run_dir / "nats.log", config_file=run_dir / "nats.conf",
            env={users[user].password_variable: password for user, password in passwords.items()},
        )  # fmt: skip
        for service in SERVICES:
            service_env[service] = {"NATS_USER": service, "NATS_PASSWORD": passwords[service]}
        operator = nats_auth.OPERATOR
        reader_url = nats.extra["url"].replace("nats://", f"nats://{operator}:{passwords[operator]}@")
    else:
        nats = devstack.start_nats(run_dir / "nats", log_file=run_dir / "nats.log")
        reader_url = nats.extra["url"]
    database = f"{name.replace('-', '_')}_{webhook_port}"
    env = {
        **stack_env(
            nats.extra["url"], mongo_url, database, fake_telegram, fake_planfix, webhook_port=webhook_port
        ),
        # The shared fake enforces no rate (test_planfix_pacing does); keep these tests quick.
        "PLANFIX_RATE_PER_S": "50",
        "PLANFIX_BURST": "5",
        # The fake sends its scenario requests back to back, much faster than Planfix over the
        # internet (which the default of 50 a second is made for): the limit stays on, higher.
        "PLANFIX_WEBHOOK_RATE_PER_S": "1000",
        "RELAY_GROUP_PACE_MESSAGES": str(GROUP_PACE[0]),
        "RELAY_GROUP_PACE_WINDOW_S": str(GROUP_PACE[1]),
        "LOG_LEVEL": "INFO",
        # The task card (issue 18) is one more message in every bound group; the modules that
        # test it switch it on (tests/test_task_life_end_to_end.py), the others count without it.
        "RELAY_TASK_CARDS": "false",
        **(extra_env or {}),
    }
    log_dir = run_dir / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    processes = {
        name: ServiceProcess(name, {**env, **service_env[name]}, log_dir).start() for name in SERVICES
    }
    webhook_url = f"http://127.0.0.1:{webhook_port}/planfix/webhook/{WEBHOOK_SECRET}"
    try:
        with fake_planfix.webhooks_to(webhook_url):
            wait_until_ready(processes, webhook_port, timeout_s=30)
            yield Bridge(reader_url, mongo_url, database, webhook_url, processes, loop)
    finally:
        for process in processes.values():
            process.stop()
        nats.stop()
        for name, process in processes.items():
            assert "Traceback" not in process.log_text(), f"{name} logged a traceback:\n{process.log_text()}"
            # No secret ever reaches a log line (issue: security), whatever the traffic was.
            for secret in (BOT_TOKEN, BOT_TOKEN.split(":", 1)[1], PLANFIX_TOKEN, WEBHOOK_SECRET):
                assert secret not in process.log_text(), f"{name} logged a secret"


def texts_sent(fake_telegram: FakeTelegram, chat_id: int) -> list[str]:
    return [str(message["text"]) for message in fake_telegram.sent_messages(chat_id)]


def the_answer(fake_telegram: FakeTelegram, chat_id: int, text: str, *, what: str, **sender: Any) -> str:
    """Someone writes ``text`` in the group (``sender``: as ``add_group_message`` takes it); the
    bot's one message there, its answer."""
    fake_telegram.add_group_message(chat_id, text, **sender)
    [answer] = eventually(lambda: texts_sent(fake_telegram, chat_id), what=what)
    return answer


ADMIN_ID = 501  # the default sender of FakeTelegram.add_group_message


def bind_new_task(
    bridge: Bridge,
    fake_telegram: FakeTelegram,
    chat_id: int,
    title: str,
    fake_planfix: FakePlanfix | None = None,
) -> int:
    """An admin writes ``/task <title>``; the task number once the group is bound and told so."""
    fake_telegram.set_member_status(chat_id, ADMIN_ID, "administrator")
    fake_telegram.add_group_message(chat_id, f"/task {title}")
    bound = eventually(
        lambda: [e for e in bridge.events("binding.>") if isinstance(e, TaskBound) and e.chat_id == chat_id],
        what="task bound",
    )
    eventually(lambda: texts_sent(fake_telegram, chat_id), what="confirmation sent")
    number: int = bound[0].task_number
    if fake_planfix is not None:
        wait_for_binding_notice(bridge.events, fake_planfix, number)
    return number


def bridge_fixture(
    name: str, *, extra_env: dict[str, str] | None = None, fixture_name: str = "bridge"
) -> Any:
    """A test module's ``bridge`` fixture (``bridge = bridge_fixture(...)``): the whole bridge,
    started once for the module; ``name`` names its directory, ``extra_env`` adds settings."""

    @pytest.fixture(scope="module", name=fixture_name)
    def bridge(
        loop: LoopThread,
        work_dir: Path,
        mongo_url: str,
        fake_telegram: FakeTelegram,
        fake_planfix: FakePlanfix,
    ) -> Iterator[Bridge]:
        with running_bridge(
            loop, work_dir, mongo_url, fake_telegram, fake_planfix, name=name, extra_env=extra_env
        ) as running:
            yield running

    return bridge
