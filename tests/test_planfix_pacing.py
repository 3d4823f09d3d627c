"""Planfix's limits, end to end: a fake Planfix that enforces 1 request/second (429 on overrun)
against the whole bridge with two relay replicas, the binder and the planfix_gateway all
calling it, through the budget they share in NATS.

How fast a burst drains is a benchmark figure (``bench/burst_to_planfix.py``), not asserted
here: these tests assert that everything arrives, in order, combined, and that the fake never
had to refuse a request.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from bridge_lib.pacing import SharedPacer, account_key, open_pacing_bucket
from contracts.events import TaskBound
from devtools import devstack
from sandbox.fake_planfix import FakePlanfix
from sandbox.fake_telegram import FakeTelegram
from tests.conftest import PLANFIX_TOKEN, WEBHOOK_SECRET
from tests.e2e_bridge import stack_env
from tests.support import (
    LoopThread,
    ServiceProcess,
    connect_nats,
    eventually,
    link_test_admin,
    read_stream_events,
    relayed_comments,
    stays,
)

BURST = 100


@dataclass
class PacedBridge:
    nats_url: str
    planfix: FakePlanfix
    processes: list[ServiceProcess]
    loop: LoopThread

    def bound_task(self, chat_id: int) -> int:
        def bound() -> list[TaskBound]:
            events = self.loop.run(read_stream_events(self.nats_url, "binding.>"))
            return [e for _, e in events if isinstance(e, TaskBound) and e.chat_id == chat_id]

        return eventually(bound, timeout_s=30, what=f"group {chat_id} bound")[0].task_number


def started(process: ServiceProcess) -> Callable[[], bool]:
    return lambda: f"{process.name}_started" in process.log_text()


@pytest.fixture(scope="module")
def paced(
    loop: LoopThread, work_dir: Path, mongo_url: str, fake_telegram: FakeTelegram
) -> Iterator[PacedBridge]:
    planfix = FakePlanfix(token=PLANFIX_TOKEN, rate_per_s=1.0)
    link_test_admin(planfix)
    loop.run(planfix.start())
    nats = devstack.start_nats(work_dir / "paced-nats", log_file=work_dir / "paced-nats.log")
    webhook_port = devstack.free_port()
    database = f"paced_{webhook_port}"
    env = {
        **stack_env(
            nats.extra["url"], mongo_url, database, fake_telegram, planfix, webhook_port=webhook_port
        ),
        "PLANFIX_RATE_PER_S": "1",
        "PLANFIX_BURST": "1",
    }
    processes = []
    for index, name in enumerate(("binder", "relay", "relay", "planfix_gateway", "telegram_gateway")):
        log_dir = work_dir / f"paced-logs-{index}"
        log_dir.mkdir(exist_ok=True)
        processes.append(ServiceProcess(name, env, log_dir).start())
    # The fake's scenario fires for every comment, the bridge's own too: the gateway fetches
    # those, so it spends the account's budget alongside the relay and the binder.
    planfix.webhook_url = f"http://127.0.0.1:{webhook_port}/planfix/webhook/{WEBHOOK_SECRET}"
    try:
        devstack.wait_for_port(webhook_port, timeout_s=30, what="planfix_gateway")
        for process in processes:
            eventually(started(process), timeout_s=30, what=f"{process.name} started")
        yield PacedBridge(nats.extra["url"], planfix, processes, loop)
    finally:
        for process in processes:
            process.stop()
        nats.stop()
        loop.run(planfix.stop())
        for process in processes:
            assert "Traceback" not in process.log_text(), process.log_text()


def test_two_pacers_on_one_account_never_share_a_slot(loop: LoopThread, nats_url: str) -> None:
    async def take_turns() -> list[float]:
        clients = [await connect_nats(nats_url) for _ in range(2)]
        try:
            key = account_key(f"https://pacing-{time.time_ns()}.planfix.example/rest/")
            pacers = [
                SharedPacer(await open_pacing_bucket(nc.jetstream()), key, rate_per_s=5.0) for nc in clients
            ]
            granted: list[float] = []

            async def turns(pacer: SharedPacer) -> None:
                for _ in range(4):
                    await pacer.wait_turn()
                    granted.append(time.time())

            await asyncio.gather(*(turns(pacer) for pacer in pacers))
            return sorted(granted)
        finally:
            for nc in clients:
                await nc.close()

    granted = loop.run(take_turns())

    assert len(granted) == 8
    gaps = [later - earlier for earlier, later in itertools.pairwise(granted)]
    # 5 per second: 200 ms apart, less a little for the scheduler waking one late and the next on time.
    assert min(gaps) > 0.15, gaps


def test_a_pause_over_the_daily_cap_reaches_the_other_pacers_of_the_account(
    loop: LoopThread, nats_url: str
) -> None:
    async def pauses() -> tuple[float, float, float]:
        clients = [await connect_nats(nats_url) for _ in range(2)]
        try:
            key = account_key(f"https://pause-{time.time_ns()}.planfix.example/rest/")
            first, second = [
                SharedPacer(await open_pacing_bucket(nc.jetstream()), key, rate_per_s=5.0) for nc in clients
            ]
            before = await second.paused_for()
            await first.pause(120)
            # A fresh replica reads the pause at once; one that looked lately, within PAUSE_REFRESH_S.
            third = SharedPacer(await open_pacing_bucket(clients[1].jetstream()), key, rate_per_s=5.0)
            return before, await first.paused_for(), await third.paused_for()
        finally:
            for nc in clients:
                await nc.close()

    before, own, other = loop.run(pauses())

    assert before == 0
    assert 115 < own <= 120
    assert 115 < other <= 120


def test_a_burst_of_100_arrives_complete_in_order_in_few_comments_without_overrunning_planfix(
    paced: PacedBridge, fake_telegram: FakeTelegram, unique_chat_id: int
) -> None:
    other_groups = [unique_chat_id - 1, unique_chat_id - 2]
    for chat_id in (unique_chat_id, *other_groups):
        fake_telegram.set_member_status(chat_id, 501, "administrator")  # only admins bind
    fake_telegram.add_group_message(unique_chat_id, "/task Burst")
    number = paced.bound_task(unique_chat_id)
    # The binder creates two more tasks while the burst is carried: three services spend one budget.
    for chat_id in other_groups:
        fake_telegram.add_group_message(chat_id, f"/task Side {chat_id}")
    sent = [fake_telegram.add_group_message(unique_chat_id, f"burst message {i:03d}") for i in range(BURST)]

    def delivered() -> list[str]:
        text = "".join(c.description for c in relayed_comments(paced.planfix, number))
        return [f"burst message {i:03d}" for i in range(BURST) if f"burst message {i:03d}" in text]

    eventually(lambda: len(delivered()) == BURST, timeout_s=120, what="all 100 messages in the task")
    comments = relayed_comments(paced.planfix, number)
    text = "".join(c.description for c in comments)
    positions = [text.index(f"burst message {i:03d}") for i in range(BURST)]
    assert positions == sorted(positions), "messages out of order"
    assert len(comments) <= 20, f"{len(comments)} comments for {BURST} messages: the backlog was not combined"
    for chat_id in other_groups:
        paced.bound_task(chat_id)
    assert paced.planfix.throttled_calls() == []

    # An edit of one of them rewrites the comment that holds it, and only that one.
    target = sent[57]
    holder = next(c for c in relayed_comments(paced.planfix, number) if "burst message 057" in c.description)
    fake_telegram.edit_group_message(target, "burst message 057, corrected")

    eventually(
        lambda: "burst message 057, corrected" in (paced.planfix.comment(holder.id) or holder).description,
        timeout_s=30,
        what="the holding comment updated",
    )
    assert [c.id for c in relayed_comments(paced.planfix, number) if c.updates] == [holder.id]
    stays(
        lambda: len(relayed_comments(paced.planfix, number)) == len(comments),
        for_s=1.0,
        what="no new comment",
    )
    assert paced.planfix.throttled_calls() == []


def test_when_the_active_relay_stops_the_standby_carries_on(
    paced: PacedBridge, fake_telegram: FakeTelegram, unique_chat_id: int
) -> None:
    fake_telegram.set_member_status(unique_chat_id, 501, "administrator")  # only admins bind
    fake_telegram.add_group_message(unique_chat_id, "/task Takeover")
    number = paced.bound_task(unique_chat_id)
    relays = [p for p in paced.processes if p.name == "relay"]
    [active] = [p for p in relays if "lease_acquired" in p.log_text()]
    [standby] = [p for p in relays if p is not active]

    assert active.stop() == 0
    fake_telegram.add_group_message(unique_chat_id, "after the switch")

    eventually(
        lambda: any("after the switch" in c.description for c in relayed_comments(paced.planfix, number)),
        timeout_s=60,
        what="the standby relay carried the message",
    )
    assert "lease_acquired" in standby.log_text()
