"""Under a burst of Planfix webhooks the answers come first: the fetcher waits for them.

Planfix holds its scenario queue while a request waits for our answer; fetching a stored
notice's comment can wait. The gateway's fetcher calls ``no_burst_pending`` before each fetch.
One request at a time, as Planfix sends them, never holds the fetcher back.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from aiohttp import web

from bridge_lib.eventbus import EventPublisher, ensure_streams, make_broker
from devtools.devstack import free_port
from services.planfix_gateway.webhook import WebhookReceiver
from tests.support import LoopThread

SECRET = "answers-first-secret"


@contextlib.asynccontextmanager
async def listening_receiver(
    nats_url: str, secret: str, *, name: str
) -> AsyncIterator[tuple[WebhookReceiver, int]]:
    """The gateway's webhook receiver storing into NATS, listening on a port of its own (given
    with it) until the block ends."""
    broker = make_broker(nats_url, name=name)
    await broker.connect()
    await ensure_streams(broker)
    receiver = WebhookReceiver(
        secret=secret, max_body=4096, publisher=EventPublisher(broker), publish_timeout_s=4.0
    )
    runner = web.AppRunner(receiver.app())
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield receiver, port
    finally:
        await runner.cleanup()
        await broker.stop()


class HeldRequest:
    """A webhook POST whose body is still on its way: its answer is pending until ``finish``."""

    def __init__(self, port: int, comment_id: int) -> None:
        self._port = port
        self._body = f'{{"event": "comment.added", "task": "7301", "comment": "{comment_id}"}}'.encode()

    async def start(self) -> None:
        self._reader, self._writer = await asyncio.open_connection("127.0.0.1", self._port)
        self._writer.write(
            f"POST /planfix/webhook/{SECRET} HTTP/1.1\r\nHost: gateway\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(self._body)}\r\n\r\n".encode()
            + self._body[:10]
        )
        await self._writer.drain()

    async def finish(self) -> bytes:
        self._writer.write(self._body[10:])
        await self._writer.drain()
        status_line = await self._reader.readline()
        self._writer.close()
        return status_line


async def _pending(receiver: WebhookReceiver, count: int) -> None:
    while receiver.answers_pending < count:  # noqa: ASYNC110 (the receiver has no event for this)
        await asyncio.sleep(0.01)


def test_a_fetch_waits_while_several_webhook_requests_wait_for_their_answers(
    loop: LoopThread, nats_url: str
) -> None:
    async def scenario() -> tuple[bool, bool, list[bytes]]:
        async with listening_receiver(nats_url, SECRET, name="answers-first") as (receiver, port):
            first, second = HeldRequest(port, 7301001), HeldRequest(port, 7301002)
            await first.start()
            await _pending(receiver, 1)
            # One request at a time is how Planfix sends: the fetch goes ahead.
            await asyncio.wait_for(receiver.no_burst_pending(max_wait_s=60), 30)
            one_at_a_time_went_ahead = True

            await second.start()
            await _pending(receiver, 2)
            fetch_may_start = asyncio.create_task(receiver.no_burst_pending(max_wait_s=60))
            await asyncio.sleep(0.2)
            burst_held_it = not fetch_may_start.done()

            statuses = [await first.finish(), await second.finish()]
            await asyncio.wait_for(fetch_may_start, 30)
            return one_at_a_time_went_ahead, burst_held_it, statuses

    went_ahead, held, statuses = loop.run(scenario(), timeout_s=60)

    assert went_ahead, "with one request in flight a fetch goes ahead"
    assert held, "a fetch waits while two requests wait for their answers"
    assert all(b" 200 " in status for status in statuses)
