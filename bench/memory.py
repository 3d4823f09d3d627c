"""Item 6, memory: resident set size of each service idle, after the message phases, and over a soak.

The soak offers messages both ways at a fixed rate (half into groups, half as task comments)
and samples every service's RSS every few seconds. A straight line is fitted through each
service's samples: its slope (MB per minute) and R² say whether memory keeps growing. "No
growth trend" means the fitted growth over ten minutes stays under 5 MB, or the points do not
follow a line (R² < 0.5).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from typing import Any

from bench.config import BenchConfig
from bench.report import Figure, Results
from bench.stack import BenchStack
from bench.stats import distribution, trend
from bench.traffic import Receipts, both_ways
from bridge_lib.settings import BridgeSettings
from devtools.devstack import SERVICES

RSS_TARGET_MB = 100.0
GROWTH_LIMIT_MB_PER_10_MIN = 5.0


# A service hands its freed heap back every HEAP_TRIM_INTERVAL_S: RSS is read once it had the chance.
HEAP_TRIM_S = float(BridgeSettings.model_fields["heap_trim_interval_s"].default)


def service_rss(stack: BenchStack) -> dict[str, float]:
    return {label: usage.rss_mb for label, usage in stack.usage().items() if label.split("#")[0] in SERVICES}


def settled_rss(stack: BenchStack) -> dict[str, float]:
    """Every service's RSS once they are idle and have trimmed their heaps (what they hold, not
    the peak of the phase before)."""
    stack.settle()
    time.sleep(HEAP_TRIM_S + 1.0)
    return service_rss(stack)


def report_rss(results: Results, when: str, rss: dict[str, float], *, baseline: str = "") -> None:
    for label in sorted(rss):
        results.add(
            Figure(
                "6 memory",
                f"RSS {when}: {label}",
                rss[label],
                "MB",
                baseline=baseline,
                target=f"≤ {RSS_TARGET_MB:g} MB",
                met=rss[label] <= RSS_TARGET_MB,
            )
        )
    results.details.setdefault("rss_mb", {})[when] = rss


def soak(
    stack: BenchStack,
    receipts: Receipts,
    results: Results,
    config: BenchConfig,
    *,
    chats: Sequence[int],
    tasks: Sequence[int],
) -> None:
    """``config.soak_rate`` messages a second, half each way, for ``config.soak_s``; RSS sampled."""
    rate, seconds, drain_timeout_s = config.soak_rate, config.soak_s, config.drain_timeout_s
    samples: list[tuple[float, dict[str, float]]] = []
    stop = threading.Event()
    started = time.monotonic()

    def sample() -> None:
        while not stop.is_set():
            samples.append((time.monotonic() - started, service_rss(stack)))
            stop.wait(config.soak_sample_s)

    sampler = threading.Thread(target=sample, name="rss-sampler", daemon=True)
    sampler.start()
    count_each = max(1, int(rate / 2 * seconds))
    inbound, outbound = both_ways(stack.telegram, stack.planfix, chats, tasks, count_each, rate / 2)
    stop.set()
    sampler.join()
    drained_in = receipts.wait_for(inbound, timeout_s=drain_timeout_s, check=stack.check_alive)
    drained_out = receipts.wait_for(outbound, timeout_s=drain_timeout_s, check=stack.check_alive)
    per_service: dict[str, Any] = {}
    for label in samples[-1][1]:
        points = [(at / 60.0, rss[label]) for at, rss in samples if label in rss]
        slope, r2 = trend([p[0] for p in points], [p[1] for p in points])
        peak = max(p[1] for p in points)
        growth_10 = slope * 10.0
        flat = growth_10 < GROWTH_LIMIT_MB_PER_10_MIN or r2 < 0.5
        per_service[label] = {"slope_mb_per_min": slope, "r2": r2, "peak_mb": peak, "points": points}
        results.add(
            Figure(
                "6 memory",
                f"soak: {label} RSS trend",
                slope,
                "MB/min",
                baseline=f"peak {peak:.0f} MB, R² {r2:.2f}, {len(points)} samples",
                target=f"< {GROWTH_LIMIT_MB_PER_10_MIN / 10:g} MB/min or R² < 0.5",
                met=flat,
            )
        )
    delivered = receipts.delivered(inbound) + receipts.delivered(outbound)
    results.add(
        Figure(
            "6 memory",
            "soak: messages delivered",
            float(delivered),
            "",
            baseline=f"{rate:g} msg/s for {_duration(seconds)}, both ways",
            target=f"= {inbound.count + outbound.count:,}",
            met=drained_in and drained_out,
        )
    )
    latencies = {
        "group→task": distribution(receipts.latencies_ms(inbound)),
        "task→group": distribution(receipts.latencies_ms(outbound, stack.planfix)),
    }
    for direction, dist in latencies.items():
        results.add(
            Figure(
                "6 memory",
                f"soak latency {direction} p50 / p99",
                dist["p50"],
                "ms",
                baseline=f"p99 {dist['p99']:.1f} ms at {rate / 2:g} msg/s",
            )
        )
    results.details["soak"] = {
        "seconds": seconds,
        "rate": rate,
        "services": per_service,
        "latency_ms": latencies,
        "delivered": delivered,
    }


def _duration(seconds: float) -> str:
    return f"{seconds / 60:g} min" if seconds >= 60 else f"{seconds:g} s"
