"""How big each benchmark is, per mode: ``full`` (make bench), ``quick`` (the smoke test), ``soak``."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class BenchConfig:
    name: str
    # Groups bound with /task, over which capacity, latency and soak messages are spread.
    groups: int = 20
    # Issue 19: task→group is also measured into this many groups (the first ``groups`` among them).
    outbound_groups: int = 100
    ceiling_messages: int = 20_000
    # Messages each way before anything is measured (and through a newly started relay).
    warmup_messages: int = 200
    capacity_messages: int = 2_000
    profile_messages: int = 1_500
    profile_s: int = 10
    latency_rate: float = 200.0
    latency_s: float = 60.0
    # After the offered load stops, how long a backlog may take to drain before giving up.
    drain_timeout_s: float = 120.0
    scale_groups: tuple[int, ...] = (1, 100, 10_000)
    scale_replica_groups: tuple[int, ...] = (100, 10_000)
    scale_messages: int = 1_200
    # The burst goes to this many of the bound groups (evenly spread), whatever their number:
    # 100 and 10,000 bound groups then see the same traffic and differ only in their bindings.
    scale_active_groups: int = 100
    scale_latency_rate: float = 50.0
    scale_latency_s: float = 5.0
    webhook_concurrent: int = 100
    webhook_rounds: int = 3
    soak_rate: float = 50.0
    soak_s: float = 120.0
    soak_sample_s: float = 5.0
    pacing_planfix_messages: int = 300
    pacing_planfix_tasks: int = 10
    pacing_telegram_comments: int = 200
    pacing_timeout_s: float = 240.0
    startup: bool = True
    profile: bool = True
    # soak mode: only start the stack, take the idle figure, and soak.
    soak_only: bool = False
    # pacing mode: only item 4 (it can take minutes once the fakes enforce the limits).
    pacing_only: bool = False
    # make bench must finish within 10 minutes: the last phase (pacing) gets what is left of this.
    budget_s: float = 570.0


FULL = BenchConfig(name="full")
QUICK = BenchConfig(
    name="quick",
    groups=3,
    outbound_groups=5,
    ceiling_messages=300,
    warmup_messages=5,
    capacity_messages=30,
    profile=False,
    latency_rate=20.0,
    latency_s=1.0,
    drain_timeout_s=30.0,
    scale_groups=(1, 5, 10),
    # The second relay and the start-up measurement cost seconds each; the smoke test skips them.
    scale_replica_groups=(),
    scale_messages=20,
    scale_active_groups=5,
    scale_latency_rate=20.0,
    scale_latency_s=0.5,
    webhook_concurrent=10,
    webhook_rounds=1,
    soak_rate=20.0,
    soak_s=1.5,
    soak_sample_s=0.5,
    pacing_planfix_messages=6,
    pacing_planfix_tasks=2,
    pacing_telegram_comments=4,
    pacing_timeout_s=30.0,
    startup=False,
)
SOAK = BenchConfig(name="soak", soak_only=True, soak_s=600.0, startup=False, profile=False, budget_s=900.0)
PACING = BenchConfig(name="pacing", pacing_only=True, startup=False, budget_s=900.0)
MODES = {config.name: config for config in (FULL, QUICK, SOAK, PACING)}
