"""Item 5, webhook answer time: 100 Planfix scenario requests at once, each timed to its answer.

Each request is a real scenario body (ids only, pasted as text) for a comment that exists in
the fake Planfix, on a task no group is bound to: the gateway stores the notice and answers,
the fetcher fetches the comment, the relay finds no group and stops there. Each request opens
its own connection, as a scenario's HTTP request does; the time runs from opening it to the
end of the answer.
"""

from __future__ import annotations

import asyncio
import time

import aiohttp

from bench.report import Figure, Results
from bench.stack import BenchStack
from bench.stats import distribution

P99_TARGET_MS = 50.0


def run_webhook(stack: BenchStack, results: Results, *, concurrent: int, rounds: int) -> None:
    task = stack.planfix.add_task("Bench webhook task (no group)")
    times: list[float] = []
    statuses: dict[int, int] = {}
    for _ in range(rounds):
        # Each round on a quiet stack: the fetching of the round before (or the drain of the
        # phase before) would otherwise share the two cores with these answers.
        stack.settle()
        comments = [
            stack.planfix.add_employee_comment(task, f"<p>webhook bench {i}</p>", fire_webhook=False)
            for i in range(concurrent)
        ]
        for status, ms in stack.loop.run(_post_all(stack.webhook_url, task, comments), timeout_s=120):
            statuses[status] = statuses.get(status, 0) + 1
            times.append(ms)
    dist = distribution(times)
    ok = statuses.get(200, 0) == len(times)
    note = "" if ok else f"answers by status: {statuses}"
    baseline = f"{concurrent} at once × {rounds} rounds"
    results.add(Figure("5 webhook", "answer time p50", dist["p50"], "ms", baseline=baseline, note=note))
    results.add(
        Figure(
            "5 webhook",
            "answer time p99",
            dist["p99"],
            "ms",
            baseline=f"max {dist['max']:.0f} ms",
            target=f"≤ {P99_TARGET_MS:g} ms",
            met=dist["p99"] <= P99_TARGET_MS and ok,
        )
    )
    stack.settle()
    comments = [
        stack.planfix.add_employee_comment(task, f"<p>webhook bench one by one {i}</p>", fire_webhook=False)
        for i in range(concurrent)
    ]
    one_by_one = distribution(stack.loop.run(_post_in_turn(stack.webhook_url, task, comments), timeout_s=120))
    results.add(
        Figure(
            "5 webhook",
            "answer time p99, one at a time (as Planfix sends)",
            one_by_one["p99"],
            "ms",
            baseline=f"p50 {one_by_one['p50']:.1f} ms, {concurrent} in turn",
        )
    )
    results.details["webhook"] = {
        "concurrent": concurrent,
        "rounds": rounds,
        "statuses": statuses,
        **dist,
        "one_at_a_time": one_by_one,
    }


async def _post_all(url: str, task: int, comments: list[int]) -> list[tuple[int, float]]:
    connector = aiohttp.TCPConnector(limit=0, force_close=True)
    async with aiohttp.ClientSession(connector=connector) as session:
        start = asyncio.Event()
        jobs = [asyncio.create_task(_post_one(session, url, task, comment, start)) for comment in comments]
        await asyncio.sleep(0.05)  # every request waits at the line; then all go at once
        start.set()
        return await asyncio.gather(*jobs)


async def _post_in_turn(url: str, task: int, comments: list[int]) -> list[float]:
    connector = aiohttp.TCPConnector(force_close=True)
    async with aiohttp.ClientSession(connector=connector) as session:
        go = asyncio.Event()
        go.set()
        return [(await _post_one(session, url, task, comment, go))[1] for comment in comments]


async def _post_one(
    session: aiohttp.ClientSession, url: str, task: int, comment: int, start: asyncio.Event
) -> tuple[int, float]:
    body = f'{{"event":"comment.added","task":"{task}","comment":"{comment}"}}'.encode()
    await start.wait()
    began = time.perf_counter()
    async with session.post(url, data=body, headers={"Content-Type": "application/json"}) as response:
        await response.read()
        return response.status, (time.perf_counter() - began) * 1000.0
