"""The relay's memory at scale, quickly: issue 19's figure (RSS with 10,000 groups bound and
10,000 people known, target ≤ 100 MB) without ``make bench``'s other phases.

``python -m bench.relay_memory_probe`` starts the bench stack (``BenchStack``: real processes),
binds a few groups with ``/task`` and carries some messages both ways (so the relay has loaded
and built what its message paths need, as in the full run), then binds ``--groups`` groups by
``TaskBound`` events (waiting for the relay's binding notices, as ``bench.scale`` does) and links
``--people`` people by ``PersonLinked`` events. It prints the relay's RSS (and its anonymous
part, what the process itself allocated) after each step; ``--restart`` adds a relay started at
that scale (both folds replayed from their streams). ``--folds`` adds what the two folds
alone take for the same events, built in this process and measured with tracemalloc.
For a before/after comparison run it from both trees in one sitting.
"""

from __future__ import annotations

import argparse
import gc
import json
import tempfile
import time
import tracemalloc
from pathlib import Path

from bench.bindings import (
    BENCH_USER,
    FIRST_BENCH_PERSON,
    bind_by_command,
    bind_by_events,
    link_people_by_events,
    wait_for_notices,
)
from bench.capacity import burst
from bench.memory import HEAP_TRIM_S
from bench.scale import FIRST_SCALE_TASK
from bench.stack import BenchStack
from bench.traffic import GroupMessages, Receipts, TaskComments
from contracts import bindings, people
from contracts.events import PersonLinked, PersonLinkMethod, TaskBound, root_envelope

MB = 2**20


def relay_memory(stack: BenchStack) -> dict[str, float]:
    """The relay's RSS and the anonymous part of it (heap, not mapped files), in MB."""
    status = Path(f"/proc/{stack.services['relay'].pid}/status").read_text()
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    kb = {name: int(fields[name].split()[0]) for name in ("VmRSS", "RssAnon", "RssFile")}
    return {"rss_mb": round(kb["VmRSS"] / 1024, 1), "anon_mb": round(kb["RssAnon"] / 1024, 1)}


def fold_sizes(groups: int, people_count: int) -> dict[str, float]:
    """MB the bindings and the people folds hold for ``groups`` and ``people_count`` events
    like the probe's (decoded events are let go as the relay does)."""
    gc.collect()
    tracemalloc.start()
    bound = bindings.Bindings()
    for i in range(groups):
        key = f"bench:bound:{i}"
        bound = bindings.evolve(
            bound,
            TaskBound(
                **root_envelope(key, caused_by=key),
                chat_id=-1002000000000 - i,
                task_number=FIRST_SCALE_TASK + i,
                task_title=f"Bench scale task {FIRST_SCALE_TASK + i}",
                created_task=False,
                requested_by=BENCH_USER,
            ),
        )
    gc.collect()
    bindings_mb = tracemalloc.get_traced_memory()[0] / MB
    known = people.People()
    for user_id in range(FIRST_BENCH_PERSON, FIRST_BENCH_PERSON + people_count):
        key = f"bench:linked:{user_id}"
        known = people.evolve(
            known,
            PersonLinked(
                **root_envelope(key, caused_by=key),
                telegram_user_id=user_id,
                planfix_person_id=f"user:{user_id}",
                name=f"Bench Person {user_id}",
                how=PersonLinkMethod.PLANFIX_PROFILE,
                telegram_username=f"bench_person_{user_id}",
            ),
        )
    gc.collect()
    total_mb = tracemalloc.get_traced_memory()[0] / MB
    tracemalloc.stop()
    return {"bindings_mb": round(bindings_mb, 2), "people_mb": round(total_mb - bindings_mb, 2)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.relay_memory_probe", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--groups", type=int, default=10_000)
    parser.add_argument("--people", type=int, default=10_000)
    parser.add_argument("--warmup", type=int, default=300, help="messages each way before the idle figure")
    parser.add_argument("--folds", action="store_true", help="also the folds' own size, in this process")
    parser.add_argument("--restart", action="store_true", help="then restart the relay (the folds replayed)")
    parser.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="for the services (e.g. MALLOC_ARENA_MAX=2)",
    )
    args = parser.parse_args(argv)
    work_dir = Path(tempfile.mkdtemp(prefix="bridge-mem-"))
    stack = BenchStack(work_dir / "stack", extra_env=dict(item.split("=", 1) for item in args.env))
    figures: dict[str, object] = {"work_dir": str(work_dir)}

    def note(when: str) -> None:
        stack.settle("relay")
        time.sleep(HEAP_TRIM_S + 1.0)  # the relay trims its heap meanwhile
        figures[when] = relay_memory(stack)
        print(json.dumps({when: figures[when]}), flush=True)

    try:
        stack.start()
        note("started")
        if args.warmup:
            receipts = Receipts(stack.telegram, stack.planfix)
            pairs = bind_by_command(stack, 20)
            burst(
                stack, receipts, GroupMessages([chat for chat, _ in pairs]), count=args.warmup, timeout_s=300
            )
            burst(
                stack, receipts, TaskComments([task for _, task in pairs]), count=args.warmup, timeout_s=300
            )
            note(f"idle after {args.warmup} messages each way")
        started = time.monotonic()
        bound = bind_by_events(stack, args.groups, first_task=FIRST_SCALE_TASK)
        wait_for_notices(stack, {chat for chat, _ in bound}, timeout_s=900)
        figures["binding_s"] = round(time.monotonic() - started, 1)
        note(f"with {args.groups:,} groups")
        link_people_by_events(stack, args.people)
        time.sleep(2.0)  # the relay's fold follows the stream on its own
        note(f"with {args.groups:,} groups and {args.people:,} people")
        if args.restart:
            # What a relay started at this scale holds: both folds replayed from their streams.
            stack.stop_service("relay")
            stack.wait_ready([stack.start_service("relay")], timeout_s=300)
            note("restarted")
        stack.check_alive()
    finally:
        stack.stop()
    if args.folds:
        figures["folds"] = fold_sizes(args.groups, args.people)
        print(json.dumps({"folds": figures["folds"]}), flush=True)
    print(json.dumps(figures, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
