"""Item 3, cost as the work grows: 1, 100 and 10,000 bound groups; 1 and 2 relay replicas.

Groups are bound by ``TaskBound`` events (``bindings.bind_by_events``), each to its own task,
and the relay announces every binding in its group as it would in production; the benchmark
waits for those notices (and for the relay to go quiet) before measuring. For each
configuration: a burst over at most ``scale_active_groups`` of the bound groups, evenly spread
(throughput), then a fixed light load over the same groups (latency).

The figure with a target compares 10,000 bound groups with 100 under the *same* traffic (1,200
messages over 100 groups): if a binding lookup cost a store round trip, or grew with the
number of bindings, the relay's CPU per message would grow between the two. One bound group
is shown too, but it is not the same traffic: its whole burst is one task's backlog, which the
relay posts as a few combined comments, so it costs far less per message.
"""

from __future__ import annotations

import time
from typing import Any

from bench.bindings import bind_by_events, sends_to, wait_for_notices
from bench.capacity import burst
from bench.config import BenchConfig
from bench.latency import offered
from bench.report import Figure, Results
from bench.stack import BenchStack
from bench.traffic import GroupMessages, Receipts

FIRST_SCALE_TASK = 7_000_000
SECOND_RELAY = "relay#2"


def run_scale(
    stack: BenchStack, receipts: Receipts, config: BenchConfig, results: Results, other_groups: int
) -> None:
    bound: list[tuple[int, int]] = []
    rows: list[dict[str, Any]] = []
    throughput: dict[tuple[int, int], float] = {}
    relay_cpu_ms: dict[tuple[int, int], float] = {}
    for groups in sorted(set(config.scale_groups) | set(config.scale_replica_groups)):
        if groups > len(bound):
            started = time.monotonic()
            pairs = bind_by_events(stack, groups - len(bound), first_task=FIRST_SCALE_TASK + len(bound))
            try:
                notices_s: float | None = wait_for_notices(
                    stack, {chat for chat, _ in pairs}, timeout_s=notices_timeout_s(len(pairs))
                )
            except TimeoutError:
                # A loaded machine: the groups are bound (the relay folded them long before its
                # notices are out); measure anyway, and say the rest were still going out.
                notices_s = None
                sent = len(sends_to(stack, {chat for chat, _ in pairs}))
                results.notes.append(
                    f"scale: {sent} of {len(pairs)} binding notices sent when {groups} groups were measured"
                )
            stack.settle("relay")
            bound += pairs
            results.details.setdefault("scale_binding", []).append(
                {
                    "groups_added": len(pairs),
                    "seconds": time.monotonic() - started,
                    "notices_seconds": notices_s,
                }
            )
        active = _spread([chat for chat, _ in bound[:groups]], config.scale_active_groups)
        chats = _spread(active, config.scale_messages)
        replica_counts = [1] if groups in config.scale_groups else []
        replica_counts += [2] if groups in config.scale_replica_groups else []
        for replicas in replica_counts:
            ready_s = _set_relays(stack, replicas)
            if ready_s is not None:
                # A process's first messages cost several times the later ones (lazy imports,
                # first connections): keep the new relay's out of the figures.
                burst(stack, receipts, GroupMessages(chats), count=config.warmup_messages, timeout_s=120)
            stack.settle("relay")
            result = burst(stack, receipts, GroupMessages(chats), count=config.scale_messages, timeout_s=300)
            _, dist, drained = offered(
                stack,
                receipts,
                GroupMessages(chats),
                rate=config.scale_latency_rate,
                seconds=config.scale_latency_s,
                drain_timeout_s=config.drain_timeout_s,
            )
            throughput[(groups, replicas)] = result.msg_per_s
            # CPU per message hardly moves with the machine's load, unlike throughput.
            relay_cpu = sum(
                ms for label, ms in result.cpu_ms_per_message.items() if label.startswith("relay")
            )
            relay_cpu_ms[(groups, replicas)] = relay_cpu
            rows.append(
                {
                    "groups": groups,
                    "relays": replicas,
                    "msg_per_s": result.msg_per_s,
                    "delivered": result.delivered,
                    "messages": config.scale_messages,
                    "latency_ms": dist,
                    "latency_drained": drained,
                    "second_relay_ready_s": ready_s,
                    "relay_cpu_ms_per_message": relay_cpu,
                    "cpu_ms_per_message": result.cpu_ms_per_message,
                }
            )
            results.add(
                Figure(
                    "3 scale",
                    f"{_plural(groups, 'group')}, {_plural(replicas, 'relay')}",
                    result.msg_per_s,
                    "msg/s",
                    baseline=(
                        f"relay CPU {relay_cpu:.2f} ms/msg; p50 {dist['p50']:.1f} / p99 {dist['p99']:.1f} ms "
                        f"at {config.scale_latency_rate:g} msg/s"
                    ),
                    note="" if result.delivered == config.scale_messages and drained else "not all delivered",
                )
            )
    _set_relays(stack, 1)
    largest = max(config.scale_groups)
    # The baseline: the most bound groups that still get the same traffic as ``largest``.
    same_traffic = [g for g in config.scale_groups if g >= config.scale_active_groups and g < largest]
    if same_traffic and (largest, 1) in relay_cpu_ms and relay_cpu_ms[(same_traffic[0], 1)] > 0:
        base = same_traffic[0]
        cpu_ratio = relay_cpu_ms[(largest, 1)] / relay_cpu_ms[(base, 1)]
        throughput_ratio = throughput[(largest, 1)] / max(throughput[(base, 1)], 1e-9)
        results.add(
            Figure(
                "3 scale",
                f"relay CPU per message, {largest:,} ÷ {base:,} bound groups",
                cpu_ratio,
                "",
                baseline=(
                    f"same traffic: {config.scale_messages} messages over {config.scale_active_groups} "
                    f"groups; throughput ratio {throughput_ratio:.2f}; "
                    "a store round trip per lookup would show here"
                ),
                target="≤ 1.2",
                met=cpu_ratio <= 1.2,
            )
        )
    smallest = min(config.scale_groups)
    if (smallest, 1) in relay_cpu_ms and (largest, 1) in relay_cpu_ms and relay_cpu_ms[(smallest, 1)] > 0:
        results.add(
            Figure(
                "3 scale",
                f"relay CPU per message, {largest:,} groups ÷ {smallest} group",
                relay_cpu_ms[(largest, 1)] / relay_cpu_ms[(smallest, 1)],
                "",
                baseline="not the same traffic: one group's burst is one backlog, posted as a few comments",
            )
        )
    for entry in results.details.get("scale_binding", []):
        if entry["groups_added"] >= 1000 and entry["notices_seconds"] is not None:
            results.add(
                Figure(
                    "3 scale",
                    f"binding {entry['groups_added']:,} groups: all notices sent",
                    entry["notices_seconds"],
                    "s",
                    baseline=f"{entry['groups_added'] / max(entry['notices_seconds'], 1e-9):.0f} notices/s",
                )
            )
    results.details["scale"] = {"rows": rows, "other_bound_groups": other_groups}


def notices_timeout_s(groups: int) -> float:
    """How long the binding notices of ``groups`` new groups may take: each also posts its comment
    in the task, ~40 a second on a quiet machine."""
    return max(600.0, groups * 0.1)


def _spread(chats: list[int], messages: int) -> list[int]:
    """At most ``messages`` groups, evenly spaced over all of them (each then gets one message)."""
    if len(chats) <= messages:
        return chats
    step = len(chats) / messages
    return [chats[int(i * step)] for i in range(messages)]


def _set_relays(stack: BenchStack, replicas: int) -> float | None:
    """Start or stop the second relay; seconds the new one took to be ready, if one started."""
    if replicas == 2 and SECOND_RELAY not in stack.services:
        started = time.monotonic()
        process = stack.start_service("relay", SECOND_RELAY)
        stack.wait_ready([process], timeout_s=120)
        return time.monotonic() - started
    if replicas == 1 and SECOND_RELAY in stack.services:
        stack.stop_service(SECOND_RELAY)
    return None


def _plural(count: int, noun: str) -> str:
    return f"{count:,} {noun}" + ("s" if count != 1 else "")
