"""The bridge under faults: the four services as processes on a 3-node NATS cluster (streams at
3 replicas), the real store, the session's fake Telegram and Planfix; plus the bursts and the
counting that every fault test shares.

``FAULTS_SCALE=full`` (``make faults-full``) runs the issue's sizes, ``default`` (``make faults``)
a fifth of them; unset (``make test``) the same faults on fewer messages still.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import nats
import nats.errors
import pytest

from bridge_lib.eventbus import server_urls
from contracts.events import TaskBound
from devtools import devstack
from sandbox.fake_planfix import FakePlanfix
from sandbox.fake_telegram import FakeTelegram
from tests.conftest import GROUP_PACE, WEBHOOK_SECRET
from tests.e2e_bridge import stack_env, started, wait_until_ready
from tests.faults.figures import Figures, count, marker, markers_in
from tests.support import LoopThread, ServiceProcess, eventually, read_stream_events, relayed_comments

SERVICES = ("binder", "relay", "planfix_gateway", "telegram_gateway")
ADMIN_ID = 501
TG, PF = "tg", "pf"  # the two ways: Telegram -> Planfix, Planfix -> Telegram
# After a relay dies, its groups wait this long for another replica (120 s by default; short
# here, but long enough that a replica starved of CPU on this 2-core machine keeps its groups).
GROUP_LEASE_TTL_S = 20.0


@dataclass(frozen=True)
class Sizes:
    groups: int
    messages_each_way: int
    replica_groups: int
    replica_messages: int
    outage_s: float
    # The faults of test_long_faults.py (long outages, lost webhooks, the store, clocks).
    long_groups: int = 5
    long_messages: int = 40
    # A Planfix outage with the retry delay capped at RETRY_MAX_DELAY_S_UNDER_TEST instead of
    # 300 s: each second stands for 600 (12 s: two hours of real back-off).
    long_outage_s: float = 12.0
    # Planfix's daily cap used up, starting over this much later (its timeToReset).
    daily_cap_reset_s: float = 6.0


# `make test` (FAULTS_SCALE unset): every fault, on fewer messages, so the suite stays quick.
QUICK_SIZES = Sizes(groups=10, messages_each_way=100, replica_groups=10, replica_messages=150, outage_s=3.0)
# `make faults`.
DEFAULT_SIZES = Sizes(
    groups=20,
    messages_each_way=200,
    replica_groups=20,
    replica_messages=300,
    outage_s=5.0,
    long_groups=10,
    long_messages=200,
    long_outage_s=30.0,
    daily_cap_reset_s=15.0,
)
# `make faults-full`: the sizes.
FULL_SIZES = Sizes(
    groups=20,
    messages_each_way=1000,
    replica_groups=50,
    replica_messages=2000,
    outage_s=30.0,
    long_groups=20,
    long_messages=1000,
    long_outage_s=60.0,
    daily_cap_reset_s=30.0,
)
# The retry delay cap of the long faults' services (RETRY_MAX_DELAY_S; 300 s in production):
# a Planfix outage of simulated hours in seconds, at 600 times the real pace.
RETRY_MAX_DELAY_S_UNDER_TEST = 0.5
# A Python start-up hook that shifts time.time() of a process by BRIDGE_TEST_CLOCK_SKEW_S.
SKEWED_CLOCK_DIR = Path(__file__).parent / "skewed_clock"
SIZES_BY_SCALE = {"quick": QUICK_SIZES, "default": DEFAULT_SIZES, "full": FULL_SIZES}


def sizes() -> Sizes:
    scale = os.environ.get("FAULTS_SCALE", "quick").lower()
    if scale not in SIZES_BY_SCALE:
        raise ValueError(f"FAULTS_SCALE={scale!r}: expected one of {', '.join(SIZES_BY_SCALE)}")
    return SIZES_BY_SCALE[scale]


@dataclass
class FaultBridge:
    loop: LoopThread
    cluster: devstack.NatsCluster
    env: dict[str, str]
    log_dir: Path
    fake_telegram: FakeTelegram
    fake_planfix: FakePlanfix
    figures_file: Path
    processes: dict[str, ServiceProcess]
    extra_relays: list[ServiceProcess] = field(default_factory=list)
    tasks: dict[int, int] = field(default_factory=dict)  # chat id -> task number
    # The store the services use when the bridge started its own (so a fault may kill it).
    store: devstack.ManagedProcess | None = None
    store_dir: Path | None = None
    # When the last burst began: how many scenario requests the fake Planfix had sent, and how
    # many messages were dead-lettered.
    webhooks_before_burst: int = 0
    dead_letters_before_burst: int = 0

    # --- processes ------------------------------------------------------------------------

    def kill(self, name: str) -> None:
        """kill -9: no SIGTERM handler runs, in-flight work is cut wherever it was."""
        process = self.processes[name].process
        assert process is not None
        process.send_signal(signal.SIGKILL)
        process.wait()

    def start(self, name: str) -> None:
        self.processes[name].start()

    def kill_store(self) -> None:
        assert self.store is not None, "the bridge uses a store it did not start"
        self.store.process.kill()
        self.store.process.wait()

    def start_store(self) -> None:
        """The store again, on the same port with the same data."""
        assert self.store is not None
        assert self.store_dir is not None
        self.store = devstack.start_nx27017(self.store_dir, port=self.store.port)

    def add_relay_replicas(self, how_many: int, *, clock_skew_s: float = 0.0) -> None:
        """More relays; ``clock_skew_s``: their wall clock (``time.time``) that far off."""
        first = len(self.extra_relays)
        for index in range(first, first + how_many):
            log_dir = self.log_dir / f"relay-replica-{index + 1}"
            log_dir.mkdir(parents=True, exist_ok=True)
            env = {**self.env, "RELAY_HEALTH_PORT": str(devstack.free_port())}
            if clock_skew_s:
                path = os.pathsep.join(p for p in (str(SKEWED_CLOCK_DIR), os.environ.get("PYTHONPATH")) if p)
                env |= {"BRIDGE_TEST_CLOCK_SKEW_S": str(clock_skew_s), "PYTHONPATH": path}
            self.extra_relays.append(ServiceProcess("relay", env, log_dir).start())
        for replica in self.extra_relays[first:]:
            eventually(partial(started, replica, "relay"), timeout_s=60, what="replica started")

    def stop_relay_replicas(self) -> None:
        for replica in self.extra_relays:
            replica.stop()
        self.extra_relays.clear()

    def dead_letters(self) -> int:
        return len(self.loop.run(read_stream_events(self.cluster.nodes[2].extra["url"], "deadletter.>")))

    def dead_lettered_since_the_burst(self) -> int:
        return self.dead_letters() - self.dead_letters_before_burst

    def all_processes(self) -> list[ServiceProcess]:
        return [*self.processes.values(), *self.extra_relays]

    def assert_logged(self, fault: str, event: str, each: str) -> None:
        """The services (or the extra relays) logged ``event`` during ``fault``; how many times is
        printed with the figures, as "N ``each``"."""
        times = sum(process.log_text().count(event) for process in self.all_processes())
        print(f"\n{fault}: {times} {each}")
        assert times >= 1, f"{fault}: no {event} logged"

    # --- groups -----------------------------------------------------------------------------

    def bind_groups(self, chat_ids: list[int]) -> None:
        """Admins bind each group to a new task (all at once), then wait for every binding."""
        for chat_id in chat_ids:
            self.fake_telegram.set_member_status(chat_id, ADMIN_ID, "administrator")
            self.fake_telegram.add_group_message(chat_id, f"/task Fault group {chat_id}")
        wanted = set(chat_ids)

        def bound() -> dict[int, int]:
            events = self.loop.run(read_stream_events(self.cluster.nodes[2].extra["url"], "binding.>"))
            found = {e.chat_id: e.task_number for _, e in events if isinstance(e, TaskBound)}
            assert wanted <= found.keys(), f"{len(wanted - found.keys())} groups not bound yet"
            return found

        found = eventually(bound, timeout_s=120, what="all groups bound")
        self.tasks.update({chat_id: found[chat_id] for chat_id in chat_ids})
        # The confirmations go out too; wait for them so they do not mix with a burst's pace.
        eventually(
            lambda: all(self.fake_telegram.sent_messages(c) for c in chat_ids),
            timeout_s=120,
            what="confirmed",
        )

    # --- bursts -----------------------------------------------------------------------------

    def burst(
        self,
        fault: str,
        chat_ids: list[int],
        messages_each_way: int,
        *,
        midway: Callable[[], None] | None = None,
    ) -> dict[int, int]:
        """Write ``messages_each_way`` messages in the groups and as many comments in their tasks,
        round-robin over the groups; ``midway`` runs (the fault) when half are written.
        Returns how many were written per group (each way)."""
        self.webhooks_before_burst = len(self.fake_planfix.webhook_deliveries)
        self.dead_letters_before_burst = self.dead_letters()
        written = dict.fromkeys(chat_ids, 0)
        for index in range(messages_each_way):
            if midway is not None and index == messages_each_way // 2:
                midway()
            group = index % len(chat_ids)
            chat_id = chat_ids[group]
            seq = written[chat_id]
            self.fake_telegram.add_group_message(
                chat_id, f"note {marker(fault, TG, group, seq)} from the group"
            )
            self.fake_planfix.add_employee_comment(
                self.tasks[chat_id], f"<p>reply {marker(fault, PF, group, seq)} from Planfix</p>"
            )
            written[chat_id] = seq + 1
        return written

    def redeliver_failed_webhooks(self, *, timeout_s: float = 120) -> int:
        """Planfix retries a scenario request that got no 200 (after 15 min for real; here now),
        again and again until every one since the last burst began was answered 200. Returns the
        retries."""
        since = self.webhooks_before_burst
        retried = 0

        def all_answered() -> bool:
            nonlocal retried
            # Only once the scenario's queue is empty: a request still waiting may yet succeed.
            assert self.fake_planfix.webhooks_waiting() == 0, "scenario requests still waiting"
            deliveries = self.fake_planfix.webhook_deliveries[since:]
            answered = {d.body for d in deliveries if d.status == 200}
            failed = {d.body: d for d in deliveries if d.status != 200 and d.body not in answered}
            for delivery in failed.values():
                event = json.loads(delivery.body)["event"]
                self.fake_planfix.post_webhook(delivery.task_number, delivery.comment_id, event)
            retried += len(failed)
            assert not failed, f"{len(failed)} scenario requests re-sent"
            return True

        eventually(all_answered, timeout_s=timeout_s, interval_s=1.0, what="every webhook answered 200")
        return retried

    # --- counting ---------------------------------------------------------------------------

    def seen_in_planfix(self, fault: str, chat_ids: list[int]) -> dict[int, list[int]]:
        seen: dict[int, list[int]] = {}
        for group, chat_id in enumerate(chat_ids):
            text = "\n".join(c.description for c in relayed_comments(self.fake_planfix, self.tasks[chat_id]))
            seen[group] = [seq for g, seq in markers_in(text, fault, TG) if g == group]
        return seen

    def seen_in_telegram(self, fault: str, chat_ids: list[int]) -> dict[int, list[int]]:
        seen: dict[int, list[int]] = {}
        for group, chat_id in enumerate(chat_ids):
            text = "\n".join(str(m.get("text", "")) for m in self.fake_telegram.sent_messages(chat_id))
            seen[group] = [seq for g, seq in markers_in(text, fault, PF) if g == group]
        return seen

    def figures(self, fault: str, chat_ids: list[int], written: dict[int, int]) -> tuple[Figures, Figures]:
        sent = {group: written[chat_id] for group, chat_id in enumerate(chat_ids)}
        return (
            count(sent, self.seen_in_planfix(fault, chat_ids)),
            count(sent, self.seen_in_telegram(fault, chat_ids)),
        )

    def settle(
        self, fault: str, chat_ids: list[int], written: dict[int, int], *, timeout_s: float = 180
    ) -> None:
        """Wait until nothing is missing either way (lost stays > 0 until the timeout fails the test)."""

        def all_there() -> bool:
            to_planfix, to_telegram = self.figures(fault, chat_ids, written)
            assert to_planfix.lost == 0, f"Telegram -> Planfix still missing {to_planfix.lost}"
            assert to_telegram.lost == 0, f"Planfix -> Telegram still missing {to_telegram.lost}"
            return True

        eventually(all_there, timeout_s=timeout_s, interval_s=0.5, what=f"{fault}: everything delivered")
        # A duplicate would come right after; give it the chance before counting.
        time.sleep(2.0)

    def report(self, fault: str, chat_ids: list[int], written: dict[int, int]) -> tuple[Figures, Figures]:
        to_planfix, to_telegram = self.figures(fault, chat_ids, written)
        lines = [to_planfix.line(fault, "Telegram->Planfix"), to_telegram.line(fault, "Planfix->Telegram")]
        with self.figures_file.open("a") as out:
            out.write("\n".join(lines) + "\n")
        print("\n" + "\n".join(lines))
        # What went wrong, group by group, for whoever reads a failed run.
        for way, seen in (
            ("Telegram->Planfix", self.seen_in_planfix),
            ("Planfix->Telegram", self.seen_in_telegram),
        ):
            for group, arrivals in seen(fault, chat_ids).items():
                if arrivals != sorted(set(arrivals)):
                    print(f"  {way} group {group} (chat {chat_ids[group]}) arrived as: {arrivals}")
        return to_planfix, to_telegram


async def jetstream_ready(url: str) -> bool:
    try:
        nc = await nats.connect(server_urls(url), connect_timeout=2, max_reconnect_attempts=1)
    except (nats.errors.Error, OSError):
        return False
    try:
        await nc.jetstream(timeout=20).account_info()
        return True
    except (nats.errors.Error, OSError):
        return False
    finally:
        await nc.close()


@contextlib.contextmanager
def fault_bridge(
    loop: LoopThread,
    run_dir: Path,
    mongo_url: str,
    fake_telegram: FakeTelegram,
    fake_planfix: FakePlanfix,
    figures_file: Path,
    *,
    own_store: bool = False,
    extra_env: dict[str, str] | None = None,
) -> Iterator[FaultBridge]:
    """``own_store``: a store of its own (that a fault may kill) unless MONGODB_URL names one."""
    store_dir = run_dir / "store"
    store = (
        devstack.start_nx27017(store_dir, log_file=run_dir / "nx-27017.out")
        if own_store and not os.environ.get("MONGODB_URL")
        else None
    )
    if store is not None:
        mongo_url = store.extra["url"]
    cluster = devstack.start_nats_cluster(run_dir / "nats", log_dir=run_dir)
    # A fresh cluster answers JetStream requests only once it elected a meta leader.
    eventually(lambda: loop.run(jetstream_ready(cluster.url)), timeout_s=60, what="JetStream cluster ready")
    webhook_port = devstack.free_port()
    env = {
        **stack_env(
            cluster.url,
            mongo_url,
            f"faults_{webhook_port}",
            fake_telegram,
            fake_planfix,
            webhook_port=webhook_port,
        ),
        "NATS_STREAM_REPLICAS": "3",
        "PLANFIX_RATE_PER_S": "50",
        "PLANFIX_BURST": "5",
        # A hung Planfix answer is given up on (and retried) after this long.
        "PLANFIX_TIMEOUT_S": "3",
        "RELAY_GROUP_PACE_MESSAGES": str(GROUP_PACE[0]),
        "RELAY_GROUP_PACE_WINDOW_S": str(GROUP_PACE[1]),
        "RELAY_GROUP_LEASE_TTL_S": str(GROUP_LEASE_TTL_S),
        "LOG_LEVEL": "INFO",
        **{f"{name.upper()}_HEALTH_PORT": str(devstack.free_port()) for name in SERVICES},
        **(extra_env or {}),
    }
    log_dir = run_dir / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    processes = {name: ServiceProcess(name, env, log_dir).start() for name in SERVICES}
    bridge = FaultBridge(
        loop,
        cluster,
        env,
        log_dir,
        fake_telegram,
        fake_planfix,
        figures_file,
        processes,
        store=store,
        store_dir=store_dir if store is not None else None,
    )
    try:
        with fake_planfix.webhooks_to(f"http://127.0.0.1:{webhook_port}/planfix/webhook/{WEBHOOK_SECRET}"):
            wait_until_ready(processes, webhook_port, timeout_s=60)
            yield bridge
    finally:
        for process in bridge.all_processes():
            process.stop()
        cluster.stop()
        if bridge.store is not None:
            bridge.store.stop()


def fault_bridge_fixture(
    label: str,
    groups: Callable[[], list[int]],
    *,
    own_store: bool = False,
    extra_env: dict[str, str] | None = None,
) -> Any:
    """A fault test module's ``bridge`` fixture (``bridge = fault_bridge_fixture(...)``): the bridge
    under faults with ``groups()`` bound, started once for the module; at the end the figures,
    kept in ``<label>-figures.txt`` of the run directory, are printed."""

    @pytest.fixture(scope="module", name="bridge")
    def bridge(
        loop: LoopThread,
        work_dir: Path,
        mongo_url: str,
        fake_telegram: FakeTelegram,
        fake_planfix: FakePlanfix,
    ) -> Iterator[FaultBridge]:
        figures_file = work_dir / f"{label.replace(' ', '-')}-figures.txt"
        with fault_bridge(
            loop,
            work_dir / f"{label.replace(' ', '-')}s",
            mongo_url,
            fake_telegram,
            fake_planfix,
            figures_file,
            own_store=own_store,
            extra_env=extra_env,
        ) as running:
            running.bind_groups(groups())
            yield running
        print(f"\n{label} figures ({os.environ.get('FAULTS_SCALE', 'quick')} sizes):")
        print(figures_file.read_text())

    return bridge
