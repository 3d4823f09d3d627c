"""The bridge as production runs it, started for a benchmark: real processes, real NATS and store.

``BenchStack`` starts ``nats-server`` and ``nx-27017`` (``devtools.devstack``), the fake
Telegram and Planfix HTTP servers on a background loop, and the four services as
``python -m services.<name>`` processes configured only through environment variables, which is
all the harness relies on (besides the fakes' public methods and ``contracts``). It also reads
each process's resident memory and CPU time, and can add or remove relay replicas.
"""

from __future__ import annotations

import os
import re
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil

from bench.settings_probe import pacing_off_env
from devtools import devstack
from devtools.devstack import HEALTH_PORT_VARIABLES, SERVICES
from sandbox.fake_planfix import FakePlanfix
from sandbox.fake_telegram import FakeTelegram
from tests import support
from tests.support import LoopThread

STORE_OPERATIONS_METRIC = "bridge_store_operations_total{"

REPO_ROOT = Path(__file__).resolve().parent.parent
BOT_TOKEN = "123456:BENCH-token-for-the-fake"
PLANFIX_TOKEN = "bench-planfix-token"
WEBHOOK_SECRET = "bench-webhook-path-secret"
# What each service logs once it serves (its consumers are bound, its listener is up).
READY_MARKERS = {
    "binder": "binder_started",
    "relay": "relay_started",
    "planfix_gateway": "planfix_gateway_started",
    "telegram_gateway": "telegram_gateway_started",
}


class ServiceProcess(support.ServiceProcess):
    """One service process (``tests.support.ServiceProcess``); ``label`` tells replicas apart
    (``relay``, ``relay#2``), and the start time is kept for start-up figures."""

    def __init__(self, service: str, label: str, env: dict[str, str], log_dir: Path) -> None:
        super().__init__(service, env, log_dir)
        self.service = service
        self.label = label
        self.log_path = log_dir / f"{label.replace('#', '-')}.log"
        self.started_at = 0.0
        self.metrics_url = ""

    def start(self) -> ServiceProcess:
        self.started_at = time.monotonic()
        super().start()
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def log_has(self, marker: str) -> bool:
        if not self.log_path.exists():
            return False
        with open(self.log_path, "rb") as log:
            return marker.encode() in log.read()

    def stop(self, timeout_s: float = 15.0) -> int | None:
        return super().stop(timeout_s)


@dataclass
class Usage:
    """Resident memory and CPU seconds (user + system) of one process."""

    rss_mb: float
    cpu_s: float


@dataclass
class BenchStack:
    work_dir: Path
    loop: LoopThread = field(default_factory=LoopThread)
    services: dict[str, ServiceProcess] = field(default_factory=dict)
    infra: dict[str, devstack.ManagedProcess] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    pacing_warnings: list[str] = field(default_factory=list)
    telegram: FakeTelegram = field(init=False)
    planfix: FakePlanfix = field(init=False)
    webhook_url: str = ""
    # False: the services run with their default pacing (the pacing benchmarks).
    pacing_off: bool = True
    extra_env: dict[str, str] = field(default_factory=dict)

    def start(self) -> None:
        self.work_dir.mkdir(parents=True, exist_ok=True)
        (self.work_dir / "logs").mkdir(exist_ok=True)
        self.infra["nats"] = devstack.start_nats(
            self.work_dir / "nats", log_file=self.work_dir / "logs" / "nats-server.log"
        )
        self.infra["mongo"] = devstack.start_nx27017(
            self.work_dir / "mongo", log_file=self.work_dir / "logs" / "nx-27017.out"
        )
        self.telegram, self.planfix = start_fakes(self.loop)
        # A well-set-up Planfix scenario skips the bridge's own comments (docs: its condition
        # excludes the robot user), so the fake does not send them back here.
        self.planfix.fire_webhooks_for_api_comments = False
        webhook_port = devstack.free_port()
        pacing_env, self.pacing_warnings = pacing_off_env() if self.pacing_off else ({}, [])
        self.env = {
            **service_env(self.telegram, self.planfix, webhook_port),
            "NATS_URL": self.infra["nats"].extra["url"],
            "MONGODB_URL": self.infra["mongo"].extra["url"],
            "MONGODB_DATABASE": "bench",
            # Outside limits switched off: the bridge's own cost is what is measured.
            **pacing_env,
            **self.extra_env,
        }
        self.webhook_url = f"http://127.0.0.1:{webhook_port}/planfix/webhook/{WEBHOOK_SECRET}"
        self.planfix.webhook_url = self.webhook_url
        for name in SERVICES:
            self.start_service(name)
        self.wait_ready(list(self.services.values()))
        devstack.wait_for_port(webhook_port, timeout_s=30, what="planfix_gateway")

    def start_service(self, service: str, label: str | None = None) -> ServiceProcess:
        label = label or service
        # Each process its own health/metrics port (where the services have one): the fixed
        # defaults would collide between replicas and with other stacks on the machine.
        port = devstack.free_port()
        env = {**self.env, HEALTH_PORT_VARIABLES[service]: str(port)}
        process = ServiceProcess(service, label, env, self.work_dir / "logs").start()
        process.metrics_url = f"http://127.0.0.1:{port}/metrics"
        self.services[label] = process
        return process

    def stop_service(self, label: str) -> None:
        self.services.pop(label).stop()

    def wait_ready(self, processes: list[ServiceProcess], timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        waiting = list(processes)
        while waiting:
            for process in list(waiting):
                if not process.alive():
                    raise RuntimeError(f"{process.label} exited at start; see {process.log_path}")
                if process.log_has(READY_MARKERS[process.service]):
                    waiting.remove(process)
            if time.monotonic() > deadline:
                raise TimeoutError(f"not ready within {timeout_s}s: {[p.label for p in waiting]}")
            time.sleep(0.05)

    def check_alive(self) -> None:
        dead = [label for label, process in self.services.items() if not process.alive()]
        if dead:
            raise RuntimeError(f"service(s) died: {dead}; logs in {self.work_dir / 'logs'}")

    def usage(self) -> dict[str, Usage]:
        """Every service process, the NATS server, the store and this process (the fakes)."""
        pids = {label: process.pid for label, process in self.services.items()}
        pids |= {name: managed.process.pid for name, managed in self.infra.items()}
        pids["fakes (bench process)"] = os.getpid()
        return {label: usage_of(pid) for label, pid in pids.items()}

    def store_operations(self) -> dict[str, float]:
        """MongoDB commands each service has sent so far (``bridge_store_operations_total``)."""
        return {label: store_operations_of(process.metrics_url) for label, process in self.services.items()}

    def settle(
        self, label_prefix: str | tuple[str, ...] = SERVICES, *, below: float = 0.1, timeout_s: float = 30.0
    ) -> float:
        """Wait until the services named ``label_prefix*`` use less than ``below`` of a core
        (work left over from an earlier phase would land in the next one's figures)."""
        started = time.monotonic()
        while time.monotonic() - started < timeout_s:
            before = self.usage()
            time.sleep(0.5)
            after = self.usage()
            busy = sum(
                after[label].cpu_s - before[label].cpu_s for label in after if label.startswith(label_prefix)
            )
            if busy / 0.5 < below:
                break
        return time.monotonic() - started

    def stop(self) -> None:
        # All at once: each takes a second or two to drain, and they do not depend on each other.
        for process in self.services.values():
            if process.alive():
                assert process.process is not None
                process.process.send_signal(signal.SIGTERM)
        for process in self.services.values():
            process.stop()
        self.services.clear()
        self.loop.run(self.telegram.stop())
        self.loop.run(self.planfix.stop())
        for managed in reversed(list(self.infra.values())):
            managed.stop()
        self.loop.close()


def store_operations_of(metrics_url: str) -> float:
    try:
        text = httpx.get(metrics_url, timeout=5).text
    except httpx.HTTPError:
        return 0.0
    return sum(
        float(line.rpartition(" ")[2])
        for line in text.splitlines()
        if line.startswith(STORE_OPERATIONS_METRIC)
    )


def usage_of(pid: int) -> Usage:
    try:
        process = psutil.Process(pid)
        with process.oneshot():
            times = process.cpu_times()
            return Usage(rss_mb=process.memory_info().rss / 2**20, cpu_s=times.user + times.system)
    except psutil.NoSuchProcess:
        return Usage(rss_mb=0.0, cpu_s=0.0)


def start_fakes(loop: LoopThread) -> tuple[FakeTelegram, FakePlanfix]:
    # No per-group limit unless a benchmark sets one (the pacing item does).
    telegram = FakeTelegram(token=BOT_TOKEN, group_pace=None)
    planfix = FakePlanfix(token=PLANFIX_TOKEN)
    # The admin who writes /task (FakeTelegram\'s default sender), linked in Planfix.
    planfix.add_employee("Bench Admin", telegram_id=501)
    loop.run(telegram.start())
    loop.run(planfix.start())
    return telegram, planfix


def service_env(telegram: FakeTelegram, planfix: FakePlanfix, webhook_port: int) -> dict[str, str]:
    """The settings every service needs to talk to the fakes (no NATS or store: callers add them)."""
    return {
        "TELEGRAM_BOT_TOKEN": BOT_TOKEN,
        "TELEGRAM_API_BASE_URL": telegram.base_url,
        "PLANFIX_BASE_URL": planfix.base_url,
        "PLANFIX_API_TOKEN": PLANFIX_TOKEN,
        "PLANFIX_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "PLANFIX_WEBHOOK_PORT": str(webhook_port),
        "PLANFIX_WEBHOOK_HOST": "127.0.0.1",
        # The webhook benchmark posts hundreds at once: measured without the flood limit.
        "PLANFIX_WEBHOOK_RATE_PER_S": "0",
        "LOG_LEVEL": "INFO",
    }


_TASK_NUMBER = re.compile(r"#(\d+)")


def task_number_in(text: str) -> int | None:
    found = _TASK_NUMBER.search(text)
    return int(found[1]) if found else None
