"""Offered load and receipts: messages into the fakes, and when each one came out the other side.

Every benchmark message carries a token ``bm<run>x<seq>`` in its text. The bridge copies the
text into the Planfix comment (or the Telegram message), so the token is found again in the
call the fake received, even when several messages were combined into one call. Times are
``time.time()`` taken in this process: when the update was put into the fake Telegram's queue
(available to ``getUpdates`` from that moment), when the fake Planfix started the webhook POST,
and when the fake received the outbound call.
"""

from __future__ import annotations

import itertools
import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sandbox.fake_planfix import FakePlanfix
from sandbox.fake_telegram import FakeTelegram

TOKEN = re.compile(r"\bbm(\d+)x(\d+)\b")
_run_ids = itertools.count(1)
# A typical chat line (~110 characters), with a little markup-sensitive text in it.
FILLER = "the printer on floor 3 says <PC LOAD LETTER> & stops again, could someone have a look?"


def wall_time(at: float) -> float:
    """A fake's timestamp as ``time.time()``: the fakes stamp calls with ``time.time()`` or, in
    some versions, ``time.monotonic()``; both run in this process, so the latter converts."""
    return at if at > 1e9 else at + (time.time() - time.monotonic())


def new_run_id() -> int:
    return next(_run_ids)


def token(run: int, seq: int) -> str:
    return f"bm{run}x{seq}"


@dataclass
class Batch:
    """One phase's messages: when each entered the bridge and when each came out."""

    run: int
    count: int
    sent_at: dict[int, float] = field(default_factory=dict)
    comment_ids: dict[int, int] = field(default_factory=dict)  # P->T: seq -> Planfix comment id
    started: float = 0.0
    finished_sending: float = 0.0

    @property
    def offered_rate(self) -> float:
        span = self.finished_sending - self.started
        return self.count / span if span > 0 else float("inf")


class Receipts:
    """First arrival time of every token, read incrementally from both fakes' recorded calls."""

    def __init__(self, telegram: FakeTelegram, planfix: FakePlanfix) -> None:
        self._telegram = telegram
        self._planfix = planfix
        self._telegram_seen = 0
        self._planfix_seen = 0
        self.at: dict[tuple[int, int], float] = {}
        # Outbound calls that carried benchmark tokens, per run (how many messages/comments it took).
        self.calls_per_run: dict[tuple[str, int], int] = {}

    def poll(self) -> None:
        telegram_calls = self._telegram.calls
        for call in telegram_calls[self._telegram_seen :]:
            if call.method.lower() == "sendmessage" and call.error_code is None:
                self._note("telegram", str(call.params.get("text", "")), wall_time(call.at))
        self._telegram_seen = len(telegram_calls)
        planfix_calls = self._planfix.calls[self._planfix_seen :]
        for pcall in planfix_calls:
            body: Any = pcall.json
            if pcall.method == "POST" and isinstance(body, dict) and isinstance(body.get("description"), str):
                self._note("planfix", body["description"], wall_time(pcall.at))
        self._planfix_seen += len(planfix_calls)

    def _note(self, side: str, text: str, at: float) -> None:
        runs: set[int] = set()
        for match in TOKEN.finditer(text):
            key = (int(match[1]), int(match[2]))
            self.at.setdefault(key, at)
            runs.add(key[0])
        for run in runs:
            self.calls_per_run[(side, run)] = self.calls_per_run.get((side, run), 0) + 1

    def delivered(self, batch: Batch) -> int:
        return sum(1 for seq in range(batch.count) if (batch.run, seq) in self.at)

    def wait_for(self, batch: Batch, *, timeout_s: float, check: Callable[[], None] | None = None) -> bool:
        """Wait until every message of ``batch`` arrived; False on timeout."""
        deadline = time.monotonic() + timeout_s
        while True:
            self.poll()
            if self.delivered(batch) >= batch.count:
                return True
            if time.monotonic() > deadline:
                return False
            if check is not None:
                check()
            time.sleep(0.05)

    def last_arrival(self, batch: Batch) -> float:
        return max(
            (self.at[(batch.run, seq)] for seq in range(batch.count) if (batch.run, seq) in self.at),
            default=0.0,
        )

    def latencies_ms(self, batch: Batch, planfix: FakePlanfix | None = None) -> list[float]:
        """Arrival minus entry, for every delivered message (P->T entry: the webhook POST)."""
        sent = dict(batch.sent_at)
        if batch.comment_ids and planfix is not None:
            posted = {d.comment_id: d.sent_at for d in list(planfix.webhook_deliveries)}
            sent = {seq: posted[cid] for seq, cid in batch.comment_ids.items() if cid in posted}
        return [
            (self.at[(batch.run, seq)] - start) * 1000.0
            for seq, start in sent.items()
            if (batch.run, seq) in self.at
        ]


def paced(count: int, rate: float | None, action: Callable[[int], None]) -> tuple[float, float]:
    """Call ``action(i)`` for i in 0..count-1 at ``rate`` per second (None: as fast as possible)."""
    started = time.time()
    origin = time.perf_counter()
    for i in range(count):
        if rate is not None:
            delay = origin + i / rate - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
        action(i)
    return started, time.time()


def send_group_messages(
    telegram: FakeTelegram, chats: Sequence[int], count: int, *, rate: float | None
) -> Batch:
    """``count`` text messages round-robin over ``chats``, each timed as it enters the queue."""
    batch = Batch(run=new_run_id(), count=count)

    def one(seq: int) -> None:
        text = f"{token(batch.run, seq)} {FILLER}"
        batch.sent_at[seq] = time.time()
        telegram.add_group_message(chats[seq % len(chats)], text, chat_title="Bench group")

    batch.started, batch.finished_sending = paced(count, rate, one)
    return batch


def add_task_comments(planfix: FakePlanfix, tasks: Sequence[int], count: int, *, rate: float | None) -> Batch:
    """``count`` comments written "in the Planfix UI", round-robin over ``tasks``; each fires the scenario."""
    batch = Batch(run=new_run_id(), count=count)

    def one(seq: int) -> None:
        html = f"<p>{token(batch.run, seq)} the printer is fixed, <b>toner</b> replaced &amp; tested</p>"
        batch.sent_at[seq] = time.time()
        batch.comment_ids[seq] = planfix.add_employee_comment(tasks[seq % len(tasks)], html)

    batch.started, batch.finished_sending = paced(count, rate, one)
    return batch


@dataclass(frozen=True)
class GroupMessages:
    """Group→task traffic: text messages round-robin over ``chats``."""

    chats: Sequence[int]

    def send(self, telegram: FakeTelegram, planfix: FakePlanfix, count: int, *, rate: float | None) -> Batch:
        return send_group_messages(telegram, self.chats, count, rate=rate)


@dataclass(frozen=True)
class TaskComments:
    """Task→group traffic: comments "in the Planfix UI" round-robin over ``tasks``."""

    tasks: Sequence[int]

    def send(self, telegram: FakeTelegram, planfix: FakePlanfix, count: int, *, rate: float | None) -> Batch:
        return add_task_comments(planfix, self.tasks, count, rate=rate)


Traffic = GroupMessages | TaskComments


def both_ways(
    telegram: FakeTelegram,
    planfix: FakePlanfix,
    chats: Sequence[int],
    tasks: Sequence[int],
    count_each: int,
    rate_each: float,
) -> tuple[Batch, Batch]:
    """Messages into groups and comments into tasks at the same time, each at ``rate_each``."""
    result: dict[str, Batch] = {}
    inbound = threading.Thread(
        target=lambda: result.__setitem__(
            "in", send_group_messages(telegram, chats, count_each, rate=rate_each)
        )
    )
    inbound.start()
    result["out"] = add_task_comments(planfix, tasks, count_each, rate=rate_each)
    inbound.join()
    return result["in"], result["out"]
