"""Shared set-up of the benchmarks: real nats-server and store, fakes, services as processes."""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from devtools import devstack
from sandbox.fake_planfix import FakePlanfix
from sandbox.fake_telegram import FakeTelegram
from tests.support import LoopThread, ServiceProcess, eventually

BOT_TOKEN = "123456:BENCH-token-for-the-fake"
PLANFIX_TOKEN = "bench-planfix-token"
WEBHOOK_SECRET = "bench-webhook-secret-path-token"


@dataclass
class Stack:
    loop: LoopThread
    telegram: FakeTelegram
    planfix: FakePlanfix
    nats_url: str
    webhook_url: str
    processes: list[ServiceProcess]
    work_dir: Path


@contextlib.contextmanager
def running_stack(services: tuple[str, ...], *, planfix_rate_per_s: float | None) -> Iterator[Stack]:
    loop = LoopThread()
    work_dir = Path(tempfile.mkdtemp(prefix="bridge-bench-"))
    telegram = FakeTelegram(token=BOT_TOKEN, group_pace=None)
    planfix = FakePlanfix(token=PLANFIX_TOKEN, rate_per_s=planfix_rate_per_s)
    # The admin who writes /task (FakeTelegram\'s default sender), linked in Planfix.
    planfix.add_employee("Bench Admin", telegram_id=501)
    loop.run(telegram.start())
    loop.run(planfix.start())
    nats = devstack.start_nats(work_dir / "nats", log_file=work_dir / "nats.log")
    mongo = devstack.start_nx27017(work_dir / "mongo", log_file=work_dir / "mongo.log")
    port = devstack.free_port()
    env = {
        "NATS_URL": nats.extra["url"],
        "MONGODB_URL": mongo.extra["url"],
        "TELEGRAM_BOT_TOKEN": BOT_TOKEN,
        "TELEGRAM_API_BASE_URL": telegram.base_url,
        "PLANFIX_BASE_URL": planfix.base_url,
        "PLANFIX_API_TOKEN": PLANFIX_TOKEN,
        "PLANFIX_RATE_PER_S": str(planfix_rate_per_s or 100),
        "PLANFIX_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "PLANFIX_WEBHOOK_PORT": str(port),
        "PLANFIX_WEBHOOK_HOST": "127.0.0.1",
        # Bursts of the fake's scenario requests, back to back: measured without the flood limit.
        "PLANFIX_WEBHOOK_RATE_PER_S": "0",
        "LOG_LEVEL": "WARNING",
    }
    webhook_url = f"http://127.0.0.1:{port}/planfix/webhook/{WEBHOOK_SECRET}"
    planfix.webhook_url = webhook_url
    processes = [ServiceProcess(name, env, work_dir).start() for name in services]
    try:
        if "planfix_gateway" in services:
            devstack.wait_for_port(port, timeout_s=30, what="planfix_gateway")
        for process in processes:
            eventually(process.alive, timeout_s=5, what=f"{process.name} running")
        yield Stack(loop, telegram, planfix, nats.extra["url"], webhook_url, processes, work_dir)
    finally:
        for process in processes:
            process.stop()
        mongo.stop()
        nats.stop()
        loop.run(planfix.stop())
        loop.run(telegram.stop())
        loop.close()
