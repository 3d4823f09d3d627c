"""Test plumbing: an event loop in a background thread, service subprocesses, NATS helpers.

Tests are plain synchronous functions. Anything async (the fake HTTP servers, NATS clients)
runs on one background event loop (``LoopThread``) and is driven through ``loop.run(coro)``;
the services run as real subprocesses, as in production.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from concurrent.futures import Future
from itertools import count
from pathlib import Path
from typing import Any, Protocol, TypeVar

import msgspec
import nats
import pytest
from faststream.middlewares import AckPolicy
from faststream.nats.annotations import NatsMessage
from nats.aio.client import Client as NatsClient
from nats.js.api import DeliverPolicy

from bridge_lib.eventbus import Delivery, consume, durable_pull, ensure_streams, jstream, make_broker
from contracts import subjects
from contracts.bindings import Binding
from contracts.events import (
    AnyEvent,
    Envelope,
    PersonLinked,
    PersonLinkMethod,
    TaskBound,
    TelegramMessageReceived,
    TelegramUser,
    decode_event,
    utc_now,
)
from contracts.subjects import TELEGRAM_STREAM
from devtools import devstack

T = TypeVar("T")

# The default sender of FakeTelegram.add_group_message (the admin tests bind with), and the
# Planfix employee their profile names: linked, so the default bind policy lets them bind.
TEST_ADMIN_TELEGRAM_ID = 501
TEST_ADMIN_NAME = "Ivan Admin"


# How the binder announces a bind or unbind in the task (services/binder/task_notices.py).
BINDING_NOTICES = (
    "Bound to Telegram group «",
    "Unbound from Telegram group «",
    "Привязана к группе Telegram «",
    "Отвязана от группы Telegram «",
)


def relayed_comments(fake_planfix: Any, task_number: int) -> list[Any]:
    """The task's comments but the binder's bind/unbind notices: what people and the relay wrote."""
    return [
        comment
        for comment in fake_planfix.comments(task_number)
        if not str(comment.description).startswith(BINDING_NOTICES)
    ]


def wait_for_binding_notice(
    events: Callable[[str], list[Any]], fake_planfix: Any, task_number: int, *, timeout_s: float = 15.0
) -> None:
    """Wait until the binder's bind notice is in the task and the planfix gateway has fetched it
    (the relay then leaves it out): a test that makes Planfix fail next fails its own call."""
    notices = eventually(
        lambda: [
            c.id
            for c in fake_planfix.comments(task_number)
            if c not in relayed_comments(fake_planfix, task_number)
        ],
        timeout_s=timeout_s,
        what="binding notice in the task",
    )
    eventually(
        lambda: (
            {getattr(e, "comment_id", None) for e in events(f"planfix.comment.added.{task_number}")}
            >= set(notices)
        ),
        timeout_s=timeout_s,
        what="binding notice fetched by the gateway",
    )


def link_test_admin(fake_planfix: Any) -> str:
    """Seed a fake Planfix with the test admin as an employee whose profile carries their
    Telegram id ("authorize Telegram"); the id ("user:N"), the same on every call."""
    for person in fake_planfix.employees():
        if person.telegram_id == str(TEST_ADMIN_TELEGRAM_ID):
            return str(person.id)
    return str(fake_planfix.add_employee(TEST_ADMIN_NAME, telegram_id=TEST_ADMIN_TELEGRAM_ID))


_event_ids = count(1)


def named_cases(names: Sequence[str], table: Sequence[tuple[Any, ...]]) -> pytest.MarkDecorator:
    """``pytest.mark.parametrize`` over a table whose rows start with the case's name, its id."""
    return pytest.mark.parametrize(names, [row[1:] for row in table], ids=[row[0] for row in table])


def envelope(event_id: str | None = None) -> Envelope:
    """The envelope of an event a test builds: ``event_id``, else an id of its own; made now."""
    return {
        "event_id": event_id or f"e{next(_event_ids)}",
        "occurred_at": utc_now(),
        "correlation_id": "c",
        "causation_id": "x",
    }


# The admin who binds groups in the in-memory tests.
ANNA = TelegramUser(id=7, full_name="Anna")


def task_bound(chat_id: int, task_number: int, header: Envelope | None = None, **more: Any) -> TaskBound:
    """Anna bound group ``chat_id`` to task ``task_number``, titled "T<number>", which she named
    (``more``: the topic's ``thread_id``, the ``previous_task_number``...)."""
    return TaskBound(
        **(header or envelope()),
        chat_id=chat_id,
        task_number=task_number,
        task_title=f"T{task_number}",
        created_task=False,
        requested_by=ANNA,
        **more,
    )


def person_linked(
    user: TelegramUser,
    planfix_id: str,
    header: Envelope | None = None,
    how: PersonLinkMethod = PersonLinkMethod.PLANFIX_PROFILE,
) -> PersonLinked:
    """``user`` linked to the Planfix person ``planfix_id``, under their Telegram name and username."""
    return PersonLinked(
        **(header or envelope()),
        telegram_user_id=user.id,
        planfix_person_id=planfix_id,
        name=user.full_name,
        how=how,
        telegram_username=user.username,
    )


def binding(
    chat_id: int,
    task_number: int,
    *,
    thread_id: int | None = None,
    bound_by_user_id: int = 1,
    suspended: bool = False,
) -> Binding:
    """A group (or forum topic) bound to task ``task_number``, titled "T<number>", just now."""
    return Binding(
        chat_id=chat_id,
        thread_id=thread_id,
        task_number=task_number,
        task_title=f"T{task_number}",
        bound_at=utc_now(),
        bound_by_user_id=bound_by_user_id,
        bound_event_id=f"b{task_number}",
        suspended=suspended,
    )


REPO_ROOT = Path(__file__).resolve().parent.parent


def run_module(
    module: str,
    *args: str,
    env: dict[str, str] | None = None,
    without: tuple[str, ...] = (),
    cwd: Path = REPO_ROOT,
    timeout_s: float = 60,
    check: bool = False,
) -> subprocess.CompletedProcess[str]:
    """``python -m MODULE ARGS`` of this checkout as a separate process, run to its end: in this
    process's environment but the settings named with ``without`` prefixes, and ``env`` over it
    (where ``cwd`` is outside the repository, no .env file fills what that leaves out)."""
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=cwd,
        env={**environ_without(*without), **(env or {}), "PYTHONPATH": str(REPO_ROOT)},
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=check,
    )


def environ_without(*prefixes: str) -> dict[str, str]:
    """This process's environment but the settings named with ``prefixes``: what a service run
    by a test must do without."""
    return {name: value for name, value in os.environ.items() if not name.startswith(prefixes)}


class LoopThread:
    """An asyncio loop running in a daemon thread; ``run`` executes a coroutine on it."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="test-loop", daemon=True)
        self._thread.start()

    def run(self, awaitable: Awaitable[T], timeout_s: float = 30.0) -> T:
        """Run a coroutine (or any awaitable, such as a motor future) on the loop; return its result."""

        async def wrapper() -> T:
            return await awaitable

        future: Future[T] = asyncio.run_coroutine_threadsafe(wrapper(), self.loop)
        return future.result(timeout_s)

    @contextlib.contextmanager
    def entered(self, manager: contextlib.AbstractAsyncContextManager[T]) -> Iterator[T]:
        """An async context manager entered and left on the loop, around a synchronous block."""
        value = self.run(manager.__aenter__())
        try:
            yield value
        except BaseException as error:
            if not self.run(manager.__aexit__(type(error), error, error.__traceback__)):
                raise
        else:
            self.run(manager.__aexit__(None, None, None))

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)


def eventually(
    check: Callable[[], T], *, timeout_s: float = 15.0, interval_s: float = 0.05, what: str = "condition"
) -> T:
    """Poll ``check`` until it returns something truthy (and return it), or fail with its last error."""
    deadline = time.monotonic() + timeout_s
    last_error: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            result = check()
            if result:
                return result
        except AssertionError as error:
            last_error = error
        time.sleep(interval_s)
    if last_error:
        raise AssertionError(f"{what} not met within {timeout_s}s: {last_error}") from last_error
    raise AssertionError(f"{what} not met within {timeout_s}s")


def stays(check: Callable[[], bool], *, for_s: float = 1.5, interval_s: float = 0.05, what: str = "") -> None:
    """Assert ``check`` holds for the whole period (for 'nothing more happens')."""
    deadline = time.monotonic() + for_s
    while time.monotonic() < deadline:
        assert check(), f"stopped holding: {what}"
        time.sleep(interval_s)


class ServiceProcess:
    """One service (``python -m services.<name>``) as a subprocess, with its output in a log file."""

    def __init__(self, name: str, env: dict[str, str], log_dir: Path) -> None:
        self.name = name
        self.env = env
        self.log_path = log_dir / f"{name}.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> ServiceProcess:
        env = {**os.environ, **self.env, "PYTHONUNBUFFERED": "1"}
        with open(self.log_path, "ab") as log:  # the child keeps its own copy of the descriptor
            self.process = subprocess.Popen(
                [sys.executable, "-m", f"services.{self.name}"],
                cwd=REPO_ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        return self

    def stop(self, timeout_s: float = 10.0) -> int | None:
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else None
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


async def connect_nats(url: str) -> NatsClient:
    return await nats.connect(url, connect_timeout=5, max_reconnect_attempts=5)


@contextlib.asynccontextmanager
async def jetstream(url: str) -> AsyncIterator[Any]:
    """JetStream on a NATS connection of the block's own, closed when it ends."""
    nc = await connect_nats(url)
    try:
        yield nc.jetstream()
    finally:
        await nc.close()


async def read_stream_events(url: str, subject_filter: str) -> list[tuple[str, AnyEvent]]:
    """Every event stored so far under ``subject_filter`` (within one stream), in stream order."""
    nc = await connect_nats(url)
    events: list[tuple[str, AnyEvent]] = []
    try:
        js = nc.jetstream()
        sub = await js.subscribe(subject_filter, ordered_consumer=True, deliver_policy=DeliverPolicy.ALL)
        try:
            while True:
                try:
                    msg = await sub.next_msg(timeout=0.3)
                except nats.errors.TimeoutError:
                    break
                try:
                    events.append((msg.subject, decode_event(msg.data)))
                except (msgspec.DecodeError, msgspec.ValidationError):
                    continue
        finally:
            await sub.unsubscribe()
    finally:
        await nc.close()
    return events


@contextlib.contextmanager
def consuming_group_messages(
    loop: LoopThread,
    nats_url: str,
    chat_id: int,
    handler: Callable[[TelegramMessageReceived, Delivery], Awaitable[None]],
    *,
    name: str,
    max_deliver: int = -1,
) -> Iterator[str]:
    """``handler`` takes a group's messages as a service's durable consumer does (through
    ``consume``) until the block ends; yields the consumer's name."""
    durable = f"{name}-{uuid.uuid4().hex[:8]}"
    broker = make_broker(nats_url, name=name)

    @broker.subscriber(
        subjects.telegram_message_received(chat_id),
        stream=jstream(TELEGRAM_STREAM),
        ack_policy=AckPolicy.MANUAL,
        **durable_pull(durable, max_deliver=max_deliver),
    )
    async def on_message(msg: NatsMessage) -> None:
        await consume(msg, TelegramMessageReceived, handler)

    async def start() -> None:
        await broker.connect()
        await ensure_streams(broker)
        await broker.start()

    loop.run(start())
    try:
        yield durable
    finally:
        loop.run(broker.stop())


@contextlib.contextmanager
def own_nats_server(directory: Path) -> Iterator[str]:
    """A nats-server keeping its data and its log in ``directory``, until the block ends: its URL."""
    server = devstack.start_nats(directory / "nats", log_file=directory / "nats-server.log")
    with devstack.running(server):
        yield server.extra["url"]


class Server(Protocol):
    async def start(self) -> None: ...
    async def stop(self) -> None: ...


S = TypeVar("S", bound=Server)


@contextlib.contextmanager
def serving(loop: LoopThread, server: S) -> Iterator[S]:
    """``server`` (a fake Telegram, Planfix...) listening on ``loop`` until the block ends."""
    loop.run(server.start())
    try:
        yield server
    finally:
        loop.run(server.stop())
