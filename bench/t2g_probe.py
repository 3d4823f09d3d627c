"""Task→group probe: one stack, a burst of comments, CPU per message per process, optional py-spy.

``python -m bench.t2g_probe [--messages 1000] [--profile]``: what ``make bench`` item 1 measures
for task→group, alone and quickly, for working on that path (before/after in one sitting).
"""

from __future__ import annotations

import argparse
import re
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import httpx

from bench.bindings import bind_by_command
from bench.capacity import burst, cpu_per_message
from bench.latency import offered
from bench.profile import Sampler
from bench.stack import STORE_OPERATIONS_METRIC, BenchStack
from bench.traffic import Receipts, TaskComments
from sandbox.fake_planfix import RecordedCall

PROFILED = ("relay", "planfix_gateway")
COMMENT_PATH = re.compile(r"/comment/\d+$")


def comment_reads(calls: Sequence[RecordedCall]) -> int:
    """The gateway's requests for comments (task lists, single comments) among ``calls``."""
    return sum(1 for call in calls if call.path.endswith("/comments/list") or COMMENT_PATH.search(call.path))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--groups", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--profiled", default=",".join(PROFILED), help="services py-spy samples")
    parser.add_argument("--rate", type=float, default=0.0, help="then this offered load (msg/s) ...")
    parser.add_argument("--seconds", type=float, default=20.0, help="... for this long")
    args = parser.parse_args()
    work_dir = Path(tempfile.mkdtemp(prefix="bridge-t2g-"))
    stack = BenchStack(work_dir / "stack")
    stack.start()
    try:
        receipts = Receipts(stack.telegram, stack.planfix)
        pairs = bind_by_command(stack, args.groups)
        comments = TaskComments([task for _, task in pairs])
        time.sleep(1.0)
        burst(stack, receipts, comments, count=200, timeout_s=120)
        for round_ in range(args.rounds):
            samplers = []
            if args.profile and round_ == args.rounds - 1:
                samplers = [
                    Sampler(stack.services[label].pid, label, work_dir, duration_s=8)
                    for label in args.profiled.split(",")
                ]
                time.sleep(0.3)
            calls_before = len(stack.planfix.calls)
            result = burst(stack, receipts, comments, count=args.messages, timeout_s=300)
            reads = comment_reads(stack.planfix.calls[calls_before:])
            cpu = ", ".join(f"{k} {v:.2f}" for k, v in sorted(result.cpu_ms_per_message.items()))
            ops = ", ".join(f"{k} {v:.2f}" for k, v in sorted(result.store_ops_per_message.items()))
            print(
                f"round {round_}: {result.delivered}/{args.messages} in {result.seconds:.2f} s "
                f"= {result.msg_per_s:.0f} msg/s; CPU ms/msg: {cpu}; store ops/msg: {ops}; "
                f"Planfix comment reads/msg: {reads / max(result.delivered, 1):.3f}",
                flush=True,
            )
            for sampler in samplers:
                profile = sampler.result()
                print(f"--- {profile.label}: {profile.samples} samples")
                for name, share in profile.top_packages(10):
                    print(f"  pkg {share:5.1f}% {name}")
                for name, share in profile.top_under_own(15):
                    print(f"  own {share:5.1f}% {name}")
                print(f"  raw: {sampler.output}")
        if args.rate:
            before = stack.usage()
            batch, dist, drained = offered(
                stack, receipts, comments, rate=args.rate, seconds=args.seconds, drain_timeout_s=120
            )
            offered_cpu = cpu_per_message(before, stack.usage(), batch.count)
            print(
                f"offered {args.rate:g} msg/s for {args.seconds:g} s: "
                f"carried {dist['carried_msg_per_s']:.0f} msg/s, p50 {dist['p50']:.1f} "
                f"p95 {dist['p95']:.1f} p99 {dist['p99']:.1f} ms, drained {drained}; CPU ms/msg: "
                + ", ".join(f"{k} {v:.2f}" for k, v in sorted(offered_cpu.items())),
                flush=True,
            )
        for label, process in stack.services.items():
            lines = [
                line
                for line in httpx.get(process.metrics_url, timeout=5).text.splitlines()
                if line.startswith(STORE_OPERATIONS_METRIC)
            ]
            if lines:
                print(
                    f"{label} store commands since start:", "; ".join(line.split("{", 1)[1] for line in lines)
                )
    finally:
        stack.stop()
    print(f"work dir {work_dir}")


if __name__ == "__main__":
    main()
