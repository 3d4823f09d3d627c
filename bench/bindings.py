"""Bound groups for the benchmarks: through ``/task`` as people do it, or many at once as events.

A handful of groups are bound the way people bind them (``/task <title>`` in the group: the
binder creates the task in the fake Planfix). Thousands are bound by publishing the binder's
``TaskBound`` events onto the BINDING stream, as the binder would: the relay learns bindings
from that stream only, so this is the same thing for it, minus the binder's time per task.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Sequence

import nats

from bench.stack import BenchStack, task_number_in
from bridge_lib.eventbus import CORRELATION_HEADER, EVENT_TYPE_HEADER, MSG_ID_HEADER
from contracts import subjects
from contracts.events import (
    PersonLinked,
    PersonLinkMethod,
    TaskBound,
    TelegramUser,
    encode_event,
    root_envelope,
)

_chat_ids = itertools.count(1)
BENCH_USER = TelegramUser(id=501, full_name="Bench Admin", username="bench_admin")


def new_chat_ids(count: int) -> list[int]:
    """Supergroup-style ids no other group of this run uses."""
    return [-1002000000000 - next(_chat_ids) for _ in range(count)]


def sends_to(stack: BenchStack, chats: set[int]) -> dict[int, list[str]]:
    texts: dict[int, list[str]] = {}
    for call in stack.telegram.calls:
        if call.method.lower() == "sendmessage" and call.error_code is None:
            chat = call.params.get("chat_id")
            if chat in chats:
                texts.setdefault(chat, []).append(str(call.params.get("text", "")))
    return texts


def bind_by_command(stack: BenchStack, count: int, *, timeout_s: float = 120.0) -> list[tuple[int, int]]:
    """``count`` new groups, each bound with ``/task <title>``; (chat id, task number) pairs."""
    chats = new_chat_ids(count)
    for i, chat in enumerate(chats):
        stack.telegram.set_member_status(chat, 501, "administrator")  # only admins bind
        stack.telegram.add_group_message(chat, f"/task Bench task {i}", chat_title=f"Bench group {i}")
    deadline = time.monotonic() + timeout_s
    while True:
        confirmed = {
            chat: number
            for chat, texts in sends_to(stack, set(chats)).items()
            if (number := task_number_in(texts[0])) is not None
        }
        if len(confirmed) == count:
            return [(chat, confirmed[chat]) for chat in chats]
        if time.monotonic() > deadline:
            raise TimeoutError(f"only {len(confirmed)} of {count} groups bound within {timeout_s}s")
        stack.check_alive()
        time.sleep(0.1)


def bind_by_events(stack: BenchStack, count: int, *, first_task: int) -> list[tuple[int, int]]:
    """``count`` groups, each with its own new task, bound by ``TaskBound`` events on the stream."""
    chats = new_chat_ids(count)
    pairs = [(chat, first_task + i) for i, chat in enumerate(chats)]
    for _, number in pairs:
        stack.planfix.add_task(f"Bench scale task {number}", number=number)
    stack.loop.run(_publish_bindings(stack.env["NATS_URL"], pairs), timeout_s=300)
    return pairs


async def _publish_bindings(nats_url: str, pairs: Sequence[tuple[int, int]]) -> None:
    client = await nats.connect(nats_url)
    try:
        js = client.jetstream()
        for start in range(0, len(pairs), 256):
            await asyncio.gather(*(_publish_one(js, chat, task) for chat, task in pairs[start : start + 256]))
    finally:
        await client.close()


async def _publish_one(js: nats.js.JetStreamContext, chat: int, task: int) -> None:
    key = f"bench:bound:{chat}:{task}"
    event = TaskBound(
        **root_envelope(key, caused_by=key),
        chat_id=chat,
        task_number=task,
        task_title=f"Bench scale task {task}",
        created_task=False,
        requested_by=BENCH_USER,
    )
    headers = {MSG_ID_HEADER: key, EVENT_TYPE_HEADER: event.tag, CORRELATION_HEADER: event.correlation_id}
    await js.publish(subjects.binding_bound(chat), encode_event(event), headers=headers, timeout=30)


def wait_for_notices(stack: BenchStack, chats: set[int], *, timeout_s: float) -> float:
    """Wait until the relay announced the binding in every one of ``chats``; seconds it took."""
    started = time.monotonic()
    deadline = started + timeout_s
    while len(sends_to(stack, chats)) < len(chats):
        if time.monotonic() > deadline:
            raise TimeoutError(f"binding notices not all sent within {timeout_s}s")
        stack.check_alive()
        time.sleep(0.2)
    return time.monotonic() - started


# Telegram user ids of the people ``link_people_by_events`` makes (clear of the traffic's users).
FIRST_BENCH_PERSON = 900_000_000


def link_people_by_events(stack: BenchStack, count: int) -> None:
    """``count`` Telegram people linked to Planfix employees by ``PersonLinked`` events: what the
    relay and the binder then keep in their people folds."""
    stack.loop.run(_publish_people(stack.env["NATS_URL"], count), timeout_s=300)


async def _publish_people(nats_url: str, count: int) -> None:
    client = await nats.connect(nats_url)
    try:
        js = client.jetstream()
        ids = range(FIRST_BENCH_PERSON, FIRST_BENCH_PERSON + count)
        for start in range(0, count, 256):
            await asyncio.gather(*(_link_one(js, user_id) for user_id in ids[start : start + 256]))
    finally:
        await client.close()


async def _link_one(js: nats.js.JetStreamContext, user_id: int) -> None:
    key = f"bench:linked:{user_id}"
    event = PersonLinked(
        **root_envelope(key, caused_by=key),
        telegram_user_id=user_id,
        planfix_person_id=f"user:{user_id}",
        name=f"Bench Person {user_id}",
        how=PersonLinkMethod.PLANFIX_PROFILE,
        telegram_username=f"bench_person_{user_id}",
    )
    headers = {MSG_ID_HEADER: key, EVENT_TYPE_HEADER: event.tag, CORRELATION_HEADER: event.correlation_id}
    await js.publish(
        subjects.PERSON_LINKED.subject(user_id), encode_event(event), headers=headers, timeout=30
    )
