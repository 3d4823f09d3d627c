"""``python -m bench``: every benchmark in one run, one table, ``bench/results/latest.json``.

python -m bench                 # make bench: all figures (under 10 minutes on 2 cores)
python -m bench --mode soak     # make soak: the 10-minute memory soak at 50 msg/s
python -m bench --mode quick    # a few messages per phase (the smoke test)
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

from bench.bindings import bind_by_command, link_people_by_events
from bench.capacity import burst, report_capacity
from bench.ceiling import measure_ceiling
from bench.config import MODES, BenchConfig
from bench.latency import offered, report_latency
from bench.memory import report_rss, settled_rss, soak
from bench.pacing import run_pacing
from bench.profile import Sampler, report_profiles
from bench.report import Results, markdown_table, table
from bench.scale import run_scale
from bench.stack import REPO_ROOT, BenchStack
from bench.startup import run_startup
from bench.traffic import GroupMessages, Receipts, TaskComments
from bench.webhook import run_webhook
from tests.support import LoopThread

RESULTS_DIR = REPO_ROOT / "bench" / "results"
PROFILED = ("relay", "telegram_gateway")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument("--mode", choices=sorted(MODES), default="full")
    parser.add_argument(
        "--output", type=Path, help="where to write the JSON (default bench/results/<mode>.json)"
    )
    parser.add_argument("--soak-seconds", type=float, help="override the soak's length")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs, data) afterwards")
    parser.add_argument("--markdown", type=Path, help="only print the table of this results JSON as Markdown")
    args = parser.parse_args(argv)
    if args.markdown:
        print(markdown_table(json.loads(args.markdown.read_text())))
        return 0
    config = MODES[args.mode]
    if args.soak_seconds is not None:
        config = BenchConfig(**{**config.__dict__, "soak_s": args.soak_seconds})
    output = args.output or RESULTS_DIR / ("latest.json" if config.name == "full" else f"{config.name}.json")
    work_dir = Path(tempfile.mkdtemp(prefix="bridge-bench-"))
    results = Results(mode=config.name, previous=Results.details_in(output))
    print(f"bench ({config.name}): work directory {work_dir}", flush=True)
    failed = False
    try:
        run_all(config, results, work_dir)
    except Exception as error:  # the figures so far are still worth writing
        failed = True
        results.notes.append(f"run stopped early: {type(error).__name__}: {error} (logs in {work_dir})")
        print(f"bench: stopped early: {error!r}; logs in {work_dir}", file=sys.stderr)
    results.write(output)
    print(table(results))
    print(f"figures written to {output}")
    if not (args.keep or failed):
        shutil.rmtree(work_dir, ignore_errors=True)
    return 1 if failed else 0


def run_all(config: BenchConfig, results: Results, work_dir: Path) -> None:
    phase = Phases(config, results)
    if config.pacing_only:
        with phase("pacing"):
            run_pacing(results, config, work_dir, time_left_s=config.budget_s)
        return
    if config.startup:
        with phase("start-up"):
            loop = LoopThread()
            try:
                run_startup(results, work_dir, loop)
            finally:
                loop.close()
    stack = BenchStack(work_dir / "stack")
    with phase("stack start"):
        stack.start()
    results.notes.extend(stack.pacing_warnings)
    try:
        run_on_stack(config, results, stack, phase)
    finally:
        stack.stop()
    if not config.soak_only:
        with phase("pacing"):
            time_left_s = config.budget_s - (time.time() - results.started_at)
            run_pacing(results, config, work_dir, time_left_s=time_left_s)


def run_on_stack(config: BenchConfig, results: Results, stack: BenchStack, phase: Phases) -> None:
    receipts = Receipts(stack.telegram, stack.planfix)
    with phase("bind groups"):
        pairs = bind_by_command(stack, config.groups)
        chats, tasks = [chat for chat, _ in pairs], [task for _, task in pairs]
        time.sleep(1.0)
    report_rss(results, "idle", settled_rss(stack), baseline=f"{config.groups} groups bound, no traffic")
    if config.soak_only:
        run_soak(config, results, stack, receipts, chats, tasks, phase)
        return
    with phase("warm-up"):
        burst(stack, receipts, GroupMessages(chats), count=config.warmup_messages, timeout_s=120)
        burst(stack, receipts, TaskComments(tasks), count=config.warmup_messages, timeout_s=120)
    with phase("ceiling"):
        ceiling = measure_ceiling(stack.work_dir, config.ceiling_messages)
    with phase("capacity"):
        inbound = burst(stack, receipts, GroupMessages(chats), count=config.capacity_messages, timeout_s=300)
        outbound = burst(stack, receipts, TaskComments(tasks), count=config.capacity_messages, timeout_s=300)
        wider = [task for _, task in bind_by_command(stack, config.outbound_groups - config.groups)]
        time.sleep(1.0)
        widely = burst(
            stack, receipts, TaskComments(tasks + wider), count=config.capacity_messages, timeout_s=300
        )
        report_capacity(results, ceiling, inbound, outbound, widely, config.outbound_groups)
    messages = inbound.batch.count + outbound.batch.count + 2 * config.warmup_messages
    if config.profile:
        with phase("profile"):
            samplers = [
                Sampler(stack.services[label].pid, label, stack.work_dir, duration_s=config.profile_s)
                for label in PROFILED
            ]
            time.sleep(0.3)
            burst(stack, receipts, GroupMessages(chats), count=config.profile_messages, timeout_s=300)
            report_profiles(results, [sampler.result() for sampler in samplers], config.profile_messages)
            messages += config.profile_messages
    for direction, traffic in (("group→task", GroupMessages(chats)), ("task→group", TaskComments(tasks))):
        with phase(f"latency {direction}"):
            batch, dist, drained = offered(
                stack,
                receipts,
                traffic,
                rate=config.latency_rate,
                seconds=config.latency_s,
                drain_timeout_s=config.drain_timeout_s,
            )
            report_latency(results, direction, batch, dist, drained)
            messages += batch.count
    report_rss(results, "after messages", settled_rss(stack), baseline=f"after {messages:,} messages")
    with phase("webhook"):
        run_webhook(stack, results, concurrent=config.webhook_concurrent, rounds=config.webhook_rounds)
    with phase("scale"):
        run_scale(stack, receipts, config, results, other_groups=config.groups)
    with phase("people"):
        # Issue 19: memory with the largest scale's groups bound and as many people known.
        people = max(config.scale_groups)
        link_people_by_events(stack, people)
        report_rss(
            results,
            f"with {people:,} groups bound and {people:,} people known",
            settled_rss(stack),
            baseline="after the scale runs",
        )
    run_soak(config, results, stack, receipts, chats, tasks, phase)


def run_soak(
    config: BenchConfig,
    results: Results,
    stack: BenchStack,
    receipts: Receipts,
    chats: list[int],
    tasks: list[int],
    phase: Phases,
) -> None:
    with phase("soak"):
        soak(stack, receipts, results, config, chats=chats, tasks=tasks)


class Phases:
    """Times each phase and says on the terminal what is running (a full run takes minutes)."""

    def __init__(self, config: BenchConfig, results: Results) -> None:
        self._results = results
        self._name = ""
        self._started = 0.0

    def __call__(self, name: str) -> Phases:
        self._name = name
        return self

    def __enter__(self) -> None:
        self._started = time.monotonic()
        print(f"bench: {self._name} ...", flush=True)

    def __exit__(self, *exc: object) -> None:
        seconds = time.monotonic() - self._started
        self._results.details.setdefault("phase_seconds", {})[self._name] = round(seconds, 1)
        print(f"bench: {self._name} done in {seconds:.1f}s", flush=True)


if __name__ == "__main__":
    raise SystemExit(main())
