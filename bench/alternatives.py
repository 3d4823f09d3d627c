"""``python -m bench.alternatives``: before/after figures for what the profile found dominant.

The fixes lie in code other work owns (``services/``, ``bridge_lib/``), so they are not made
here; each is measured instead as the same operation done the current way and the proposed
way, in one process, CPU time per operation:

* gateway: aiogram runs every synchronous filter (``F...`` magic filters, plain functions)
  through ``asyncio.to_thread``; the same router with the filters wrapped as ``async def`` runs
  them inline.
* relay and fetcher: one Planfix REST call through ``PlanfixClient`` against the same
  call through aiohttp, both to the fake Planfix.
* relay and binder: a store round trip through motor (a thread-pool hop per operation)
  against PyMongo's native asyncio client, both to nx-27017.

Process CPU time per operation, after a warm-up; the fake Planfix runs in this process too, so
its share is in both Planfix figures alike and the difference is the client's.
"""

from __future__ import annotations

import asyncio
import importlib
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, cast

import aiohttp
from aiogram import Bot, Dispatcher, Router
from aiogram.dispatcher.event.handler import FilterObject
from aiogram.types import Update, User
from motor.motor_asyncio import AsyncIOMotorClient
from pymongo import AsyncMongoClient

from bench.stack import BOT_TOKEN, PLANFIX_TOKEN
from bridge_lib.eventbus import EventPublisher
from bridge_lib.logging import configure_logging
from bridge_lib.planfix import PlanfixClient
from contracts.events import planfix_source_object_id
from devtools import devstack
from sandbox.fake_planfix import FakePlanfix
from sandbox.fake_telegram import FakeTelegram
from services.telegram_gateway.app import build_dispatcher
from tests.support import LoopThread

# Planfix takes only a UUID as a sourceId.
SOURCE_ID = "6f1d3c1e-8b1a-4c55-9d0e-3b7f2a9c4e10"


async def cpu_ms_per_call(calls: int, call: Callable[[int], Awaitable[Any]]) -> float:
    """Process CPU time (all threads) per call, after a warm-up."""
    for i in range(20):
        await call(-i - 1)
    started = time.process_time()
    for i in range(calls):
        await call(i)
    return (time.process_time() - started) * 1000.0 / calls


# --- gateway: synchronous filters ------------------------------------------------------------


class _StubPublisher:
    async def publish(self, event: object, *, subject: str, msg_id: str) -> bool:
        return True


def _with_inline_filters(router: Router) -> Router:
    """The same router with every synchronous filter wrapped in ``async def`` (awaited inline)."""
    for observer in router.observers.values():
        for handler in observer.handlers:
            handler.filters = [_inline(each) for each in handler.filters or []]
    for child in router.sub_routers:
        _with_inline_filters(child)
    return router


def _inline(filter_object: FilterObject) -> FilterObject:
    if filter_object.awaitable:
        return filter_object

    async def check(*args: Any, **kwargs: Any) -> Any:
        return filter_object.callback(*args, **filter_object._prepare_kwargs(kwargs))

    return FilterObject(callback=check)


def _update(i: int) -> Update:
    fake = FakeTelegram(token=BOT_TOKEN)
    raw = fake.add_group_message(-1004000000000, f"message {i} {'x' * 80}")
    return Update.model_validate(raw)


async def gateway_dispatch(calls: int) -> dict[str, float]:
    bot = Bot(token=BOT_TOKEN)
    updates = [_update(i) for i in range(64)]
    out = {}
    for name, inline in (("current (sync filters → to_thread)", False), ("async filters", True)):
        # The gateway's own dispatcher; its router's filters made inline for the second variant.
        me = User(
            id=7000001,
            is_bot=True,
            first_name="Bridge",
            username="planfix_bridge_bot",
            can_read_all_group_messages=True,
        )
        dispatcher = build_dispatcher(cast(EventPublisher, _StubPublisher()), me)
        if inline:
            for router in dispatcher.sub_routers:
                _with_inline_filters(router)
        out[name] = await cpu_ms_per_call(calls, _feeder(dispatcher, bot, updates))
    await bot.session.close()
    return out


def _feeder(dispatcher: Dispatcher, bot: Bot, updates: list[Update]) -> Callable[[int], Awaitable[Any]]:
    def feed(i: int) -> Awaitable[Any]:
        return dispatcher.feed_update(bot, updates[i % len(updates)])

    return feed


# --- Planfix REST call: httpx against aiohttp -------------------------------------------------


async def planfix_call(base_url: str, task: int, calls: int) -> dict[str, float]:
    body = {"description": "<p>comment</p>", "sourceId": SOURCE_ID}
    out = {}
    async with PlanfixClient(base_url=base_url, token=PLANFIX_TOKEN) as client:
        out["PlanfixClient.add_comment (AiohttpTransport.exchange)"] = await cpu_ms_per_call(
            calls, _commenter(client, task)
        )
    transport = _aiohttp_transport_for_httpx()
    if transport is not None:
        async with PlanfixClient(base_url=base_url, token=PLANFIX_TOKEN, transport=transport) as client:
            out[
                "httpx over httpx-aiohttp's AiohttpTransport (PlanfixClient(transport=...))"
            ] = await cpu_ms_per_call(calls, _commenter(client, task))
    headers = {"Authorization": f"Bearer {PLANFIX_TOKEN}", "Accept": "application/json"}
    async with aiohttp.ClientSession(base_url=base_url, headers=headers) as session:

        async def post(i: int) -> Any:
            async with session.post(
                f"task/{task}/comments/",
                json={**body, "sourceObjectId": planfix_source_object_id(f"bench:{i}")},
            ) as answer:
                return await answer.json()

        out["aiohttp (same request)"] = await cpu_ms_per_call(calls, post)
    return out


def _commenter(client: PlanfixClient, task: int) -> Callable[[int], Awaitable[int]]:
    """The i-th call: the same comment, with its own source object id (as the relay adds them)."""

    def add(i: int) -> Awaitable[int]:
        return client.add_comment(
            task_number=task,
            description_html="<p>comment</p>",
            source_id=SOURCE_ID,
            source_object_id=planfix_source_object_id(f"bench:{i}"),
        )

    return add


def _aiohttp_transport_for_httpx() -> Any:
    """httpx-aiohttp's transport when that package is installed (it is not a dependency)."""
    try:
        module = importlib.import_module("httpx_aiohttp")
    except ImportError:
        return None
    return module.AiohttpTransport()


# --- store round trip: motor against PyMongo async --------------------------------------------


async def store_round_trip(url: str, calls: int) -> dict[str, float]:
    out = {}
    motor: AsyncIOMotorClient[dict[str, Any]] = AsyncIOMotorClient(url)
    effects = motor["alternatives"]["motor_effects"]
    out["motor find_one + insert_one"] = await cpu_ms_per_call(
        calls, lambda i: _find_then_insert(effects, f"motor:{i}")
    )
    motor.close()
    native: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(url)
    native_effects = native["alternatives"]["native_effects"]
    out["PyMongo async find_one + insert_one"] = await cpu_ms_per_call(
        calls, lambda i: _find_then_insert(native_effects, f"native:{i}")
    )
    await native.close()
    return out


async def _find_then_insert(collection: Any, key: str) -> None:
    if await collection.find_one({"_id": key}) is None:
        await collection.insert_one({"_id": key, "comment_id": 1})


def main() -> None:
    # The handlers' log lines cost the same in both variants; keep them out of the figures.
    configure_logging("alternatives", "WARNING")
    work_dir = Path(tempfile.mkdtemp(prefix="bench-alternatives-"))
    mongo = devstack.start_nx27017(work_dir / "mongo")
    loop = LoopThread()  # the fake Planfix runs on its own thread: its CPU is not the client's
    planfix = FakePlanfix(token=PLANFIX_TOKEN)
    loop.run(planfix.start())
    task = planfix.add_task("alternatives")
    try:
        figures = {
            "gateway: CPU per update through the dispatcher": asyncio.run(gateway_dispatch(2000)),
            "Planfix add_comment: client CPU per call (fake server in this process)": asyncio.run(
                planfix_call(planfix.base_url, task, 1000)
            ),
            "effect record: CPU per find+insert": asyncio.run(store_round_trip(mongo.extra["url"], 1000)),
        }
    finally:
        loop.run(planfix.stop())
        loop.close()
        mongo.stop()
    for title, values in figures.items():
        print(title)
        for name, ms in values.items():
            print(f"    {ms:7.3f} ms  {name}")


if __name__ == "__main__":
    main()
