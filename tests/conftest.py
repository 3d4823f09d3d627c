"""Fixtures: real nats-server and nx-27017 on free loopback ports, the fakes, the services.

Session-scoped infrastructure keeps ``make test`` fast; tests stay independent by using their
own chat ids and task numbers (``unique_chat_id``), never by resetting shared state.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from bridge_lib import lean_imports

# The services' lighter imports, as each one's __main__ installs them: before anything below
# imports aiogram, httpx or structlog.
lean_imports.install()

# The services the tests start speak English unless a test says otherwise (users get Russian by
# default): they inherit this environment; the tests of Russian set BRIDGE_LANGUAGE=ru themselves.
os.environ.setdefault("BRIDGE_LANGUAGE", "en")

from devtools import devstack  # noqa: E402
from sandbox.fake_planfix import FakePlanfix  # noqa: E402
from sandbox.fake_telegram import FakeTelegram  # noqa: E402
from tests.support import LoopThread, link_test_admin, own_nats_server, serving  # noqa: E402

BOT_TOKEN = "123456:TEST-token-for-the-fake"
PLANFIX_TOKEN = "test-planfix-token"
WEBHOOK_SECRET = "s3cret-webhook-path-token"
# Telegram's per-group pace, shrunk from 20 a minute so tests need not wait: the session's fake
# Bot API enforces it, and the relays under test are set to keep it.
GROUP_PACE = (20, 4.0)


@pytest.fixture(scope="session")
def work_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("bridge")


@pytest.fixture(scope="session")
def loop() -> Iterator[LoopThread]:
    thread = LoopThread()
    yield thread
    thread.close()


@pytest.fixture(scope="session")
def nats_url(work_dir: Path) -> Iterator[str]:
    with own_nats_server(work_dir) as url:
        yield url


@pytest.fixture(scope="session")
def mongo_url(work_dir: Path) -> Iterator[str]:
    # MONGODB_URL set: run the store tests against that real MongoDB instead.
    external = os.environ.get("MONGODB_URL")
    if external:
        yield external
        return
    server = devstack.start_nx27017(work_dir / "mongo", log_file=work_dir / "nx-27017.out")
    with devstack.running(server):
        yield server.extra["url"]


@pytest.fixture(scope="session")
def fake_telegram(loop: LoopThread) -> Iterator[FakeTelegram]:
    with serving(loop, FakeTelegram(token=BOT_TOKEN, group_pace=GROUP_PACE)) as fake:
        yield fake


@pytest.fixture(scope="session")
def fake_planfix(loop: LoopThread) -> Iterator[FakePlanfix]:
    fake = FakePlanfix(token=PLANFIX_TOKEN)
    link_test_admin(fake)
    with serving(loop, fake):
        yield fake


@pytest.fixture
def planfix_down(fake_planfix: FakePlanfix) -> Iterator[None]:
    """The session's fake Planfix is unavailable during the test."""
    fake_planfix.set_unavailable(True)
    try:
        yield
    finally:
        fake_planfix.set_unavailable(False)


_ids = itertools.count(1)


@pytest.fixture
def unique_chat_id() -> int:
    """A supergroup-style chat id no other test uses."""
    return -1001000000000 - next(_ids) * 1000 - os.getpid() % 1000
