"""Item 2, added latency at a fixed offered load, each direction on its own.

Group→task: from the update entering the fake Telegram's queue to the fake Planfix receiving
the comment. Task→group: from the fake Planfix starting the scenario's webhook POST to the fake
Telegram receiving the sendMessage. Messages are offered at a fixed rate (an open loop: the
next one does not wait for the previous one), so if the bridge cannot keep up, the queue and
the latencies grow, and the table says so.
"""

from __future__ import annotations

import math
from typing import Any

from bench.report import Figure, Results
from bench.stack import BenchStack
from bench.stats import distribution
from bench.traffic import Batch, Receipts, Traffic

P50_TARGET_MS = 5.0
P99_TARGET_MS = 25.0


def offered(
    stack: BenchStack,
    receipts: Receipts,
    traffic: Traffic,
    *,
    rate: float,
    seconds: float,
    drain_timeout_s: float,
) -> tuple[Batch, dict[str, float], bool]:
    """``traffic`` at ``rate`` messages a second for ``seconds``; its latencies once drained."""
    count = max(1, int(rate * seconds))
    batch = traffic.send(stack.telegram, stack.planfix, count, rate=rate)
    drained = receipts.wait_for(batch, timeout_s=drain_timeout_s, check=stack.check_alive)
    dist = distribution(receipts.latencies_ms(batch, stack.planfix))
    # What the bridge carried while the load lasted, and after: below the offered rate = a queue.
    span = receipts.last_arrival(batch) - batch.started
    dist["carried_msg_per_s"] = receipts.delivered(batch) / span if span > 0 else 0.0
    return batch, dist, drained


def report_latency(
    results: Results, direction: str, batch: Batch, dist: dict[str, float], drained: bool
) -> None:
    item = "2 latency"
    note = "" if drained else f"only {int(dist['n'])} of {batch.count} delivered before the drain timeout"
    results.add(
        _against_target(
            item,
            direction,
            dist,
            "p50",
            P50_TARGET_MS,
            drained,
            baseline=f"{batch.offered_rate:.0f} msg/s offered × {batch.count:,}",
            note=note,
        )
    )
    results.add(Figure(item, f"{direction} p95", dist["p95"], "ms"))
    results.add(
        Figure(
            item,
            f"{direction} carried",
            dist["carried_msg_per_s"],
            "msg/s",
            baseline=f"offered {batch.offered_rate:.0f} msg/s",
            note=""
            if dist["carried_msg_per_s"] >= 0.97 * batch.offered_rate
            else "saturated: a queue built up",
        )
    )
    results.add(
        _against_target(
            item, direction, dist, "p99", P99_TARGET_MS, drained, baseline=f"max {dist['max']:.0f} ms"
        )
    )
    latency: dict[str, Any] = results.details.setdefault("latency", {})
    latency[direction] = {
        "offered_msg_per_s": batch.offered_rate,
        "messages": batch.count,
        "drained": drained,
        **dist,
    }


def _against_target(
    item: str,
    direction: str,
    dist: dict[str, float],
    percentile: str,
    target_ms: float,
    drained: bool,
    *,
    baseline: str,
    note: str = "",
) -> Figure:
    """A latency percentile, met when within ``target_ms`` and every message arrived."""
    return Figure(
        item,
        f"{direction} {percentile}",
        dist[percentile],
        "ms",
        baseline=baseline,
        target=f"≤ {target_ms:g} ms",
        met=_within(dist[percentile], target_ms) and drained,
        note=note,
    )


def _within(value: float, limit: float) -> bool:
    return not math.isnan(value) and value <= limit
