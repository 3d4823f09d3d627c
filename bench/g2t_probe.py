"""Group→task only, quickly: latency at a fixed offered load and CPU per message in a burst.

``python -m bench.g2t_probe`` starts the same stack as ``make bench`` (``BenchStack``: real
processes, pacing off), binds groups with ``/task``, warms up, then measures what item 2 and
the CPU rows of item 1 measure for the group→task direction only, in a minute or two instead
of ``make bench``'s ten. For a before/after comparison run it from both trees in one session
(wall latency depends on the machine's load; CPU per message hardly does). ``--profile N``
samples the relay and the gateway with py-spy for N seconds of the first offered load (as
``bench.profile`` does during a burst).
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.bindings import bind_by_command
from bench.capacity import burst
from bench.latency import offered
from bench.profile import Sampler
from bench.stack import BenchStack
from bench.traffic import GroupMessages, Receipts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.g2t_probe", description=__doc__.split("\n")[0])
    parser.add_argument("--groups", type=int, default=20)
    parser.add_argument("--rates", default="200,50", help="offered loads in messages/s, comma-separated")
    parser.add_argument("--seconds", type=float, default=30.0, help="how long each load is offered")
    parser.add_argument("--burst", type=int, default=2000, help="burst size for CPU per message")
    parser.add_argument(
        "--profile", type=int, default=0, help="seconds of py-spy on relay and gateway during the first load"
    )
    parser.add_argument("--keep", action="store_true", help="keep the work directory (service logs)")
    args = parser.parse_args(argv)
    work_dir = Path(tempfile.mkdtemp(prefix="bridge-g2t-"))
    stack = BenchStack(work_dir / "stack")
    figures: dict[str, Any] = {"work_dir": str(work_dir)}
    try:
        stack.start()  # inside: a service failing at start must not leave the others running
        receipts = Receipts(stack.telegram, stack.planfix)
        messages = GroupMessages([chat for chat, _ in bind_by_command(stack, args.groups)])
        time.sleep(1.0)
        burst(stack, receipts, messages, count=200, timeout_s=120)  # warm-up
        # What each process spends with nothing to do (polls, heartbeats): part of any figure
        # per message at a low rate.
        before = stack.usage()
        time.sleep(10.0)
        after = stack.usage()
        figures["idle_cpu_ms_per_s"] = {k: round((after[k].cpu_s - before[k].cpu_s) * 100, 2) for k in after}
        print(json.dumps({"idle_cpu_ms_per_s": figures["idle_cpu_ms_per_s"]}), flush=True)
        result = burst(stack, receipts, messages, count=args.burst, timeout_s=300)
        figures["burst"] = {
            "messages": result.delivered,
            "comments": receipts.calls_per_run.get(("planfix", result.batch.run), 0),
            "store_ops_per_message": {k: round(v, 2) for k, v in result.store_ops_per_message.items()},
            "msg_per_s": round(result.msg_per_s, 1),
            "cpu_ms_per_message": {k: round(v, 3) for k, v in result.cpu_ms_per_message.items()},
        }
        print(json.dumps(figures["burst"]), flush=True)
        for index, rate in enumerate(float(r) for r in args.rates.split(",") if r.strip()):
            samplers = [
                Sampler(stack.services[label].pid, label, stack.work_dir, duration_s=args.profile)
                for label in ("relay", "telegram_gateway")
                if args.profile and index == 0
            ]
            before = stack.usage()
            batch, dist, drained = offered(
                stack, receipts, messages, rate=rate, seconds=args.seconds, drain_timeout_s=120
            )
            after = stack.usage()
            cpu = {k: round((after[k].cpu_s - before[k].cpu_s) * 1000 / batch.count, 3) for k in after}
            figures[f"latency_{rate:g}"] = {
                **{k: round(v, 2) for k, v in dist.items()},
                "offered": round(batch.offered_rate, 1),
                "comments": receipts.calls_per_run.get(("planfix", batch.run), 0),
                "drained": drained,
                "cpu_ms_per_message": cpu,
            }
            print(json.dumps({f"latency_{rate:g}": figures[f"latency_{rate:g}"]}), flush=True)
            for profile in (sampler.result() for sampler in samplers):
                figures[f"profile {profile.label}"] = {
                    "samples": profile.samples,
                    "error": profile.error,
                    "packages %": [(n, round(v, 1)) for n, v in profile.top_packages(12)],
                    "under own %": [(n, round(v, 1)) for n, v in profile.top_under_own(20)],
                }
    finally:
        stack.stop()
        if not args.keep:
            shutil.rmtree(work_dir, ignore_errors=True)
    print(json.dumps(figures, indent=1, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
