"""Under a burst of Planfix webhooks the answers come first: the fetcher waits for them.

Planfix holds its scenario queue while a request waits for our answer; fetching a stored
notice's comment can wait. The gateway's fetcher calls ``no_answer_pending`` before each fetch.
"""

from __future__ import annotations

import asyncio

from aiohttp import web

from bridge_lib.devstack import free_port
from bridge_lib.eventbus import EventPublisher, ensure_streams, make_broker
from services.planfix_gateway.webhook import WebhookReceiver
from tests.support import LoopThread

SECRET = "answers-first-secret"


def test_a_fetch_waits_while_a_webhook_request_waits_for_its_answer(loop: LoopThread, nats_url: str) -> None:
    async def scenario() -> tuple[bool, bool, bytes]:
        broker = make_broker(nats_url, name="answers-first")
        await broker.connect()
        await ensure_streams(broker)
        receiver = WebhookReceiver(
            secret=SECRET, max_body=4096, publisher=EventPublisher(broker), publish_timeout_s=4.0
        )
        runner = web.AppRunner(receiver.app())
        await runner.setup()
        port = free_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        try:
            idle_before = asyncio.create_task(receiver.no_answer_pending(max_wait_s=60))
            await idle_before
            # A request whose body is still on its way: its answer is pending.
            body = b'{"event": "comment.added", "task": "7301", "comment": "7301001"}'
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(
                f"POST /planfix/webhook/{SECRET} HTTP/1.1\r\nHost: gateway\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode()
                + body[:10]
            )
            await writer.drain()
            while not receiver.answers_pending:  # noqa: ASYNC110 (the receiver has no event for this)
                await asyncio.sleep(0.01)
            fetch_may_start = asyncio.create_task(receiver.no_answer_pending(max_wait_s=60))
            await asyncio.sleep(0.2)
            waited_for_the_answer = not fetch_may_start.done()

            writer.write(body[10:])
            await writer.drain()
            status_line = await reader.readline()
            await asyncio.wait_for(fetch_may_start, 30)
            writer.close()
            return idle_before.done(), waited_for_the_answer, status_line
        finally:
            await runner.cleanup()
            await broker.stop()

    idle_returned, waited, status_line = loop.run(scenario(), timeout_s=60)

    assert idle_returned, "with no request in flight a fetch goes ahead"
    assert waited, "a fetch waits while a request waits for its answer"
    assert b" 200 " in status_line
