"""Start-up on a NATS cluster that is still forming: the services wait for JetStream.

A freshly started 3-node cluster answers JetStream requests with timeouts and 503s until it has
elected its meta leader. Services started at the same moment (a deploy's first start) wait that
out and become ready, without exiting; a cluster that never gets a quorum makes them give up
after ``NATS_STARTUP_TIMEOUT_S`` with one plain line saying why.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

import httpx
import nats.errors
import nats.js.errors
import pytest

from bridge_lib.eventbus import EventPublisher, ensure_streams, make_broker
from bridge_lib.jetstream_ready import is_transient
from contracts import subjects
from contracts.events import TelegramMessageEdited, TelegramUser, root_envelope
from devtools import devstack
from devtools.devstack import SERVICES
from sandbox.fake_planfix import FakePlanfix
from sandbox.fake_telegram import FakeTelegram
from tests.conftest import BOT_TOKEN
from tests.e2e_bridge import stack_env
from tests.support import LoopThread, ServiceProcess, eventually, read_stream_events, serving


@pytest.fixture
def own_telegram(loop: LoopThread) -> Iterator[FakeTelegram]:
    """A Bot API of this test's own: its gateway polls it without taking the session's updates."""
    with serving(loop, FakeTelegram(token=BOT_TOKEN)) as fake:
        yield fake


def bridge_env(nats_url: str, mongo_url: str, telegram: FakeTelegram, planfix: FakePlanfix) -> dict[str, str]:
    database = f"forming_{devstack.free_port()}"
    return {
        **stack_env(nats_url, mongo_url, database, telegram, planfix, webhook_port=devstack.free_port()),
        "NATS_STREAM_REPLICAS": "3",
        "LOG_LEVEL": "INFO",
        **{f"{name.upper()}_HEALTH_PORT": str(devstack.free_port()) for name in SERVICES},
    }


def ready(process: ServiceProcess) -> bool:
    assert process.alive(), f"{process.name} exited:\n{process.log_text()[-3000:]}"
    port = process.env[f"{process.name.upper()}_HEALTH_PORT"]
    try:
        return httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def test_four_services_started_with_a_fresh_cluster_all_become_ready(
    tmp_path: Path, mongo_url: str, own_telegram: FakeTelegram, fake_planfix: FakePlanfix
) -> None:
    cluster = devstack.start_nats_cluster(tmp_path / "nats", log_dir=tmp_path)
    env = bridge_env(cluster.url, mongo_url, own_telegram, fake_planfix)
    # At once, as a deploy's first start does: no waiting for the cluster, no streams made beforehand.
    processes = [ServiceProcess(name, env, tmp_path).start() for name in SERVICES]
    try:
        for process in processes:
            eventually(partial(ready, process), timeout_s=120, interval_s=0.5, what=f"{process.name} ready")
        for process in processes:
            assert "startup_failed" not in process.log_text()
            assert "Traceback" not in process.log_text()
    finally:
        for process in processes:
            process.stop()
        cluster.stop()


def test_a_cluster_without_quorum_makes_a_service_give_up_plainly_after_the_startup_timeout(
    tmp_path: Path, mongo_url: str, own_telegram: FakeTelegram, fake_planfix: FakePlanfix
) -> None:
    cluster = devstack.start_nats_cluster(tmp_path / "nats", log_dir=tmp_path)
    # One node of three can never elect a JetStream leader.
    cluster.stop_node(1, kill=True)
    cluster.stop_node(2, kill=True)
    env = {
        **bridge_env(cluster.nodes[0].extra["url"], mongo_url, own_telegram, fake_planfix),
        "NATS_STARTUP_TIMEOUT_S": "3",
    }
    binder = ServiceProcess("binder", env, tmp_path).start()
    try:
        eventually(lambda: not binder.alive(), timeout_s=60, interval_s=0.2, what="binder gave up")
        assert binder.process is not None
        assert binder.process.returncode == 1
        log = binder.log_text()
        assert "startup_failed" in log
        assert "JetStream did not accept stream" in log
        assert "NATS_STARTUP_TIMEOUT_S" in log
        assert "Traceback" not in log
    finally:
        binder.stop()
        cluster.stop()


@pytest.mark.parametrize(
    ("error", "transient"),
    [
        (nats.errors.TimeoutError(), True),
        (nats.errors.NoRespondersError(), True),
        (nats.js.errors.ServiceUnavailableError(code=503, err_code=10008), True),
        (nats.js.errors.ServiceUnavailableError(code=503, err_code=10023), True),
        (nats.js.errors.BadRequestError(code=400, err_code=10005, description="no suitable peers"), True),
        (nats.js.errors.APIError(code=503, description="JetStream system temporarily unavailable"), True),
        # Mistakes that waiting cannot fix fail at once.
        (nats.js.errors.ServerError(code=500, err_code=10074, description="replicas > 1 unsupported"), False),
        (nats.js.errors.BadRequestError(code=400, err_code=10058, description="name already in use"), False),
        (ValueError("bad config"), False),
    ],
)
def test_which_jetstream_answers_are_waited_out(error: Exception, transient: bool) -> None:
    assert is_transient(error) is transient


def test_an_event_published_while_no_stream_answers_is_stored_once_one_does(
    loop: LoopThread, tmp_path: Path
) -> None:
    # What a publisher sees while the node that led the stream is lost: nobody answers for it.
    server = devstack.start_nats(tmp_path / "nats")
    broker = make_broker(server.extra["url"], name="publish-before-stream")

    async def publish_then_create_the_streams() -> bool:
        await broker.connect()
        event = TelegramMessageEdited(
            **root_envelope("tg:edit:-5:1", caused_by="tg:update:1"),
            chat_id=-5,
            message_id=1,
            sender=TelegramUser(id=1, full_name="A"),
            text="waits for its stream",
            edited_at=datetime.now(UTC),
        )
        publishing = asyncio.create_task(
            EventPublisher(broker, give_up_after_s=30).publish(
                event, subject=subjects.telegram_message_edited(-5), msg_id="tg:edit:-5:1"
            )
        )
        await asyncio.sleep(1.0)  # several attempts find no stream
        assert not publishing.done()
        await ensure_streams(broker)
        return await publishing

    try:
        assert loop.run(publish_then_create_the_streams(), timeout_s=60) is True
        stored = loop.run(read_stream_events(server.extra["url"], "telegram.message.edited.>"))
        assert [event.text for _, event in stored if isinstance(event, TelegramMessageEdited)] == [
            "waits for its stream"
        ]
    finally:
        loop.run(broker.stop())
        server.stop()
