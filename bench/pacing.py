"""Item 4, pacing efficiency against the outside world's limits.

Planfix: the fake enforces 1 request/s; 300 messages across 10 bound groups (10 tasks) at
once → time to drain, requests/s achieved ÷ allowed, limit violations (requests the fake
refused for the rate), comments posted. Telegram: the fake enforces ~20 messages a minute per
group; 200 comments into one bound task → messages sent into its group, 429s, time to drain.
Each runs on a stack of its own whose services keep their default pacing (only the other
side's pacing is switched off, so one limit is measured at a time).

The limits in the fakes and the pacing in the services are being built by other work. Until
the fakes have the options named below, these figures are skipped with a line in the table
that names what is missing; adapting the names here is all it takes to enable them.
"""

from __future__ import annotations

import contextlib
import tempfile
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

from bench.bindings import bind_by_command
from bench.config import BenchConfig
from bench.report import Figure, Results
from bench.settings_probe import PACING_OFF, declared_variables
from bench.stack import BenchStack
from bench.traffic import Receipts, add_task_comments, send_group_messages, wall_time
from sandbox.fake_planfix import FakePlanfix
from sandbox.fake_telegram import FakeTelegram

# FakePlanfix attribute: requests per second it accepts (None: no limit); over it, it refuses.
PLANFIX_LIMIT_OPTION = "rate_per_s"
PLANFIX_ALLOWED_PER_S = 1.0
# FakeTelegram attribute: (messages, window seconds) it accepts into one group; over it, 429.
TELEGRAM_LIMIT_OPTION = "group_pace"
TELEGRAM_ALLOWED_PER_MIN = 20
# Status of a request a fake refused for the rate (Telegram's 429; assumed the same for Planfix).
REFUSED_STATUS = 429
PLANFIX_PACING_VARIABLES = {
    "PLANFIX_RATE_PER_S",
    "PLANFIX_BURST",
    "PLANFIX_RATE_BURST",
    "PLANFIX_PACING_ENABLED",
}
TELEGRAM_PACING_VARIABLES = {"RELAY_GROUP_PACE_MESSAGES", "RELAY_GROUP_PACE_WINDOW_S", "RELAY_BOT_PACE_PER_S"}


# Starting a stack, binding groups, stopping it: what one side costs besides its drain.
_SIDE_OVERHEAD_S = 20.0


def run_pacing(results: Results, config: BenchConfig, work_dir: Path, *, time_left_s: float) -> None:
    """Both sides, each draining for at most its share of ``time_left_s`` (make bench's budget)."""
    declared = declared_variables()
    deadline = time.monotonic() + time_left_s
    for side in (_planfix_side, _telegram_side):
        sides_left = 2 if side is _planfix_side else 1
        share = (deadline - time.monotonic()) / sides_left - _SIDE_OVERHEAD_S
        timeout_s = min(config.pacing_timeout_s, share)
        side(results, replace(config, pacing_timeout_s=timeout_s), work_dir, declared)


def _missing(option: str, probe: object, variables: set[str], declared: set[str]) -> str | None:
    """Why this side cannot be measured yet, or None. ``probe``: a fake, built but not started."""
    if not hasattr(probe, option):
        return f"{type(probe).__name__}.{option} (the fake's limit) does not exist yet"
    if not variables & declared:
        return f"no pacing setting ({', '.join(sorted(variables))}) in the services yet"
    return None


def _no_time(config: BenchConfig) -> str | None:
    if config.pacing_timeout_s >= 30.0:
        return None
    return "make bench's 10 minutes are used up; run python -m bench --mode pacing"


@contextlib.contextmanager
def _paced_stack(work_dir: Path, prefix: str, *, other_side: set[str]) -> Iterator[BenchStack]:
    """A started stack that paces as configured, but for ``other_side``'s pacing variables (off:
    only the side measured waits), stopped on the way out."""
    stack = BenchStack(Path(tempfile.mkdtemp(prefix=prefix, dir=work_dir)), pacing_off=False)
    stack.extra_env = {k: v for k, v in PACING_OFF.items() if k in other_side}
    try:
        stack.start()
        yield stack
    finally:
        stack.stop()


def _planfix_side(results: Results, config: BenchConfig, work_dir: Path, declared: set[str]) -> None:
    item = "4 pacing Planfix"
    why = _missing(PLANFIX_LIMIT_OPTION, FakePlanfix(token="probe"), PLANFIX_PACING_VARIABLES, declared)
    why = why or _no_time(config)
    if why:
        name = (
            f"{config.pacing_planfix_messages} messages over {config.pacing_planfix_tasks} tasks at 1 req/s"
        )
        results.skipped(item, name, why)
        return
    with _paced_stack(work_dir, "planfix-pacing-", other_side=TELEGRAM_PACING_VARIABLES & declared) as stack:
        setattr(stack.planfix, PLANFIX_LIMIT_OPTION, PLANFIX_ALLOWED_PER_S)
        pairs = bind_by_command(stack, config.pacing_planfix_tasks, timeout_s=config.pacing_timeout_s)
        time.sleep(2.0)  # the binder's calls leave the budget
        receipts = Receipts(stack.telegram, stack.planfix)
        first_call = len(stack.planfix.calls)
        batch = send_group_messages(
            stack.telegram, [chat for chat, _ in pairs], config.pacing_planfix_messages, rate=None
        )
        drained = receipts.wait_for(batch, timeout_s=config.pacing_timeout_s, check=stack.check_alive)
        end = receipts.last_arrival(batch) if drained else time.time()
        seconds = end - batch.started
        calls = [c for c in stack.planfix.calls[first_call:] if wall_time(c.at) <= end + 0.001]
        refused = sum(1 for c in calls if c.status == REFUSED_STATUS)
        comments = sum(
            1
            for c in calls
            if c.method == "POST" and c.path.rstrip("/").endswith("/comments") and c.status in (200, 201)
        )
        # The rate between the first and the last request: N requests at 1/s span N-1 seconds.
        span = wall_time(calls[-1].at) - wall_time(calls[0].at) if len(calls) > 1 else 0.0
        achieved = (len(calls) - 1) / span if span > 0 else 0.0
        efficiency = achieved / PLANFIX_ALLOWED_PER_S
        note = "" if drained else f"{receipts.delivered(batch)} of {batch.count} in before the timeout"
        results.add(
            Figure(
                item,
                "time to drain",
                seconds,
                "s",
                baseline=f"{batch.count} messages, {len(pairs)} tasks",
                note=note,
            )
        )
        results.add(
            Figure(
                item,
                "requests/s achieved ÷ allowed",
                efficiency,
                "",
                baseline=f"{len(calls)} requests in {seconds:.1f} s",
                target="≥ 0.95 (and ≤ 1)",
                met=0.95 <= efficiency <= 1.02,
            )
        )
        results.add(Figure(item, "limit violations", float(refused), "", target="0", met=refused == 0))
        results.add(
            Figure(item, "comments posted", float(comments), "", baseline=f"for {batch.count} messages")
        )
        results.details["pacing_planfix"] = {
            "seconds": seconds,
            "requests": len(calls),
            "refused": refused,
            "comments": comments,
            "drained": drained,
        }


def _telegram_side(results: Results, config: BenchConfig, work_dir: Path, declared: set[str]) -> None:
    item = "4 pacing Telegram"
    why = _missing(TELEGRAM_LIMIT_OPTION, FakeTelegram(token="1:probe"), TELEGRAM_PACING_VARIABLES, declared)
    why = why or _no_time(config)
    if why:
        results.skipped(item, f"{config.pacing_telegram_comments} comments into one group at ~20/min", why)
        return
    with _paced_stack(work_dir, "telegram-pacing-", other_side=PLANFIX_PACING_VARIABLES & declared) as stack:
        stack.telegram.set_group_pace((TELEGRAM_ALLOWED_PER_MIN, 60.0))
        [(chat, task)] = bind_by_command(stack, 1, timeout_s=config.pacing_timeout_s)
        time.sleep(3.0)  # the binding notice is out of the way
        receipts = Receipts(stack.telegram, stack.planfix)
        first_call = len(stack.telegram.calls)
        batch = add_task_comments(stack.planfix, [task], config.pacing_telegram_comments, rate=None)
        drained = receipts.wait_for(batch, timeout_s=config.pacing_timeout_s, check=stack.check_alive)
        end = receipts.last_arrival(batch) if drained else time.time()
        calls = [
            c
            for c in stack.telegram.calls[first_call:]
            if c.method.lower().startswith("send") and c.params.get("chat_id") == chat
        ]
        sent = sum(1 for c in calls if c.error_code is None)
        refused = sum(1 for c in calls if c.error_code == REFUSED_STATUS)
        seconds = end - batch.started
        note = "" if drained else f"{receipts.delivered(batch)} of {batch.count} in before the timeout"
        results.add(
            Figure(
                item, "time to drain", seconds, "s", baseline=f"{batch.count} comments, one group", note=note
            )
        )
        results.add(Figure(item, "messages sent", float(sent), "", baseline=f"for {batch.count} comments"))
        results.add(Figure(item, "429s received", float(refused), "", target="0", met=refused == 0))
        results.details["pacing_telegram"] = {
            "seconds": seconds,
            "sent": sent,
            "refused": refused,
            "drained": drained,
        }
