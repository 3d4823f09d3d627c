"""Item 1, pipeline capacity: a burst through the whole bridge, against the broker's ceiling.

The fake Telegram holds the whole burst from the start (updates served as fast as the gateway
asks), the fake Planfix answers at once, pacing is off (``settings_probe``). Throughput is the
burst size over the time from the first update becoming available to the last comment
reaching the fake Planfix. The same run notes how much CPU each process spent per message,
which says where the bridge's cost lies on a machine where every process shares two cores.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from bench.report import Figure, Results
from bench.stack import BenchStack, Usage
from bench.traffic import Batch, Receipts, Traffic


@dataclass
class BurstResult:
    batch: Batch
    delivered: int
    seconds: float
    cpu_ms_per_message: dict[str, float]
    # MongoDB commands per message, by service (what sends none is left out).
    store_ops_per_message: dict[str, float] = field(default_factory=dict)

    @property
    def msg_per_s(self) -> float:
        return self.delivered / self.seconds if self.seconds > 0 else 0.0


def cpu_per_message(before: dict[str, Usage], after: dict[str, Usage], messages: int) -> dict[str, float]:
    return {
        label: (after[label].cpu_s - before[label].cpu_s) * 1000.0 / max(messages, 1)
        for label in after
        if label in before
    }


def burst(
    stack: BenchStack, receipts: Receipts, traffic: Traffic, *, count: int, timeout_s: float
) -> BurstResult:
    """``count`` messages of ``traffic`` at once; wait until all are out."""
    before, ops_before = stack.usage(), stack.store_operations()
    batch = traffic.send(stack.telegram, stack.planfix, count, rate=None)
    receipts.wait_for(batch, timeout_s=timeout_s, check=stack.check_alive)
    after, ops_after = stack.usage(), stack.store_operations()
    delivered = receipts.delivered(batch)
    seconds = receipts.last_arrival(batch) - batch.started
    ops = {
        label: (ops_after[label] - count_before) / max(delivered, 1)
        for label, count_before in ops_before.items()
        if ops_after.get(label, 0.0) > count_before
    }
    return BurstResult(batch, delivered, seconds, cpu_per_message(before, after, delivered), ops)


# Issue 19: comments carried into 100 groups with Telegram's pacing off.
WIDE_OUTBOUND_TARGET = 200.0


def report_capacity(
    results: Results,
    ceiling: dict[str, float],
    inbound: BurstResult,
    outbound: BurstResult,
    widely: BurstResult | None = None,
    wide_groups: int = 0,
) -> None:
    ceiling_rate = ceiling["msg_per_s"]
    ratio = inbound.msg_per_s / ceiling_rate
    results.add(
        Figure(
            "1 capacity",
            "ceiling: raw JetStream publish→pull→ack",
            ceiling_rate,
            "msg/s",
            baseline=f"{int(ceiling['messages']):,} msgs of {ceiling['payload_bytes']:.0f} B",
        )
    )
    results.add(
        Figure(
            "1 capacity",
            "bridge group→task (update → Planfix comment)",
            inbound.msg_per_s,
            "msg/s",
            baseline=f"burst of {inbound.batch.count:,}",
            note=_lost(inbound),
        )
    )
    results.add(
        Figure(
            "1 capacity",
            "bridge / ceiling",
            ratio,
            "",
            baseline=f"{inbound.msg_per_s:.0f} / {ceiling_rate:,.0f} msg/s",
            target="≥ 0.5",
            met=ratio >= 0.5 and inbound.delivered == inbound.batch.count,
        )
    )
    results.add(
        Figure(
            "1 capacity",
            "bridge task→group (webhook → sendMessage)",
            outbound.msg_per_s,
            "msg/s",
            baseline=f"burst of {outbound.batch.count:,}; ratio {outbound.msg_per_s / ceiling_rate:.3f}",
            note=_lost(outbound),
        )
    )
    if widely is not None:
        results.add(
            Figure(
                "1 capacity",
                f"bridge task→group into {wide_groups} groups",
                widely.msg_per_s,
                "msg/s",
                baseline=f"burst of {widely.batch.count:,}, Telegram's pacing off",
                target=f"≥ {WIDE_OUTBOUND_TARGET:.0f} msg/s",
                met=widely.msg_per_s >= WIDE_OUTBOUND_TARGET and widely.delivered == widely.batch.count,
                note=_lost(widely),
            )
        )
    cpu_in, cpu_out = inbound.cpu_ms_per_message, outbound.cpu_ms_per_message
    for label in sorted(cpu_in, key=lambda name: -(cpu_in[name] + cpu_out.get(name, 0.0))):
        if max(cpu_in[label], cpu_out.get(label, 0.0)) >= 0.05:
            results.add(
                Figure(
                    "1 capacity",
                    f"CPU per message group→task: {label}",
                    cpu_in[label],
                    "ms",
                    baseline=f"task→group: {cpu_out.get(label, 0.0):.2f} ms",
                )
            )
    results.details["capacity"] = {
        "ceiling": ceiling,
        "group_to_task": _detail(inbound),
        "task_to_group": _detail(outbound),
        **({"task_to_group_wide": _detail(widely)} if widely is not None else {}),
    }
    report_cost_per_message(results, inbound, outbound)


# The store's process apart: nx-27017 here, much slower than a production MongoDB.
STORE = "mongo"
FAKES = "fakes (bench process)"
COST_TARGETS = {"group_to_task": 0.5, "task_to_group": 2.0}
STORE_OPS_TARGET = 3.0


def report_cost_per_message(results: Results, inbound: BurstResult, outbound: BurstResult) -> None:
    """Issue 19: the bridge's CPU per message over all its processes (the fakes apart), with
    and without the store, and store commands per message; beside the previous run's."""
    before = results.previous.get("capacity", {})
    for direction, result in (("group_to_task", inbound), ("task_to_group", outbound)):
        shown = direction.replace("_to_", "→")
        cpu = {k: v for k, v in result.cpu_ms_per_message.items() if k != FAKES}
        cpu_before = {
            k: v for k, v in before.get(direction, {}).get("cpu_ms_per_message", {}).items() if k != FAKES
        }
        total, total_before = sum(cpu.values()), sum(cpu_before.values())
        target = COST_TARGETS[direction]
        results.add(
            Figure(
                "19 cost",
                f"CPU per message {shown}, all processes",
                total,
                "ms",
                baseline=f"previous run: {total_before:.2f} ms" if cpu_before else "",
                target=f"≤ {target:g} ms",
                met=total <= target,
            )
        )
        without = total - cpu.get(STORE, 0.0)
        without_before = total_before - cpu_before.get(STORE, 0.0)
        results.add(
            Figure(
                "19 cost",
                f"CPU per message {shown}, without the store's process",
                without,
                "ms",
                baseline=f"previous run: {without_before:.2f} ms" if cpu_before else "",
            )
        )
        ops = sum(result.store_ops_per_message.values())
        ops_before = before.get(direction, {}).get("store_ops_per_message")
        results.add(
            Figure(
                "19 cost",
                f"store commands per message {shown}",
                ops,
                "",
                baseline=f"previous run: {sum(ops_before.values()):.2f}"
                if ops_before
                else "not counted before",
                target=f"≤ {STORE_OPS_TARGET:g}" if direction == "task_to_group" else "",
                met=ops <= STORE_OPS_TARGET if direction == "task_to_group" else None,
            )
        )


def _lost(result: BurstResult) -> str:
    missing = result.batch.count - result.delivered
    return f"{missing} not delivered in time" if missing else ""


def _detail(result: BurstResult) -> dict[str, object]:
    return {
        "messages": result.batch.count,
        "delivered": result.delivered,
        "seconds": result.seconds,
        "msg_per_s": result.msg_per_s,
        "cpu_ms_per_message": result.cpu_ms_per_message,
        "store_ops_per_message": result.store_ops_per_message,
    }
