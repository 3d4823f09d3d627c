"""The Planfix client over ``bridge_lib.aiohttp_transport``: httpx's errors keep their meaning.

A bare TCP server stands in for Planfix where the fake cannot misbehave the way a network does:
it takes the request and then drops the connection, or never answers, or answers gzip-encoded.
A creation whose request reached the server must not be repeated by the client (it may exist).
"""

from __future__ import annotations

import asyncio
import gzip
import json
import zlib
from collections.abc import Awaitable, Callable, Iterator

import pytest
import stamina

from bridge_lib.planfix import PlanfixClient, PlanfixUnavailable
from contracts.events import planfix_source_object_id
from tests.support import LoopThread

Behaviour = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


class BareServer:
    def __init__(self, loop: LoopThread, behaviour: Behaviour) -> None:
        self.requests: list[bytes] = []
        self._loop = loop

        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self.requests.append(await reader.readuntil(b"\r\n\r\n"))
            await behaviour(reader, writer)

        self._server = loop.run(asyncio.start_server(serve, "127.0.0.1", 0))
        self.base_url = f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}/rest/"

    def close(self) -> None:
        self._server.close()


@pytest.fixture
def no_retry_waits() -> Iterator[None]:
    stamina.set_testing(True, attempts=100, cap=True)  # the client's own 3 tries, no waits
    try:
        yield
    finally:
        stamina.set_testing(False)


def add_comment(loop: LoopThread, base_url: str) -> int:
    async def go() -> int:
        async with PlanfixClient(base_url=base_url, token="t", timeout_s=0.5, retry_attempts=3) as client:
            return await client.add_comment(
                task_number=1,
                description_html="<p>x</p>",
                source_id="0c6b7f0e-2d7a-4f0e-9a56-6a3f1c9b8e11",
                source_object_id=planfix_source_object_id("tg:-1:1"),
            )

    return loop.run(go())


async def drop_the_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.close()


async def never_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await asyncio.sleep(5)
    writer.close()


@pytest.mark.parametrize("behaviour", [drop_the_connection, never_answer], ids=["dropped", "hung"])
def test_a_creation_that_reached_planfix_and_got_no_answer_is_not_repeated(
    loop: LoopThread, behaviour: Behaviour, no_retry_waits: None
) -> None:
    server = BareServer(loop, behaviour)
    try:
        with pytest.raises(PlanfixUnavailable):
            add_comment(loop, server.base_url)
        assert len(server.requests) == 1
    finally:
        server.close()


ANSWER = json.dumps({"result": "success", "id": 4242}).encode()


def _raw_deflate(data: bytes) -> bytes:
    packer = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    return packer.compress(data) + packer.flush()


@pytest.mark.parametrize(
    ("encoding", "body"),
    [
        ("gzip", gzip.compress(ANSWER)),
        ("deflate", zlib.compress(ANSWER)),
        ("deflate", _raw_deflate(ANSWER)),  # some servers send deflate without zlib's wrapper
        ("identity", ANSWER),
    ],
    ids=["gzip", "deflate", "raw deflate", "identity"],
)
def test_an_encoded_answer_is_read(encoding: str, body: bytes, loop: LoopThread) -> None:
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readexactly(int(_header(server.requests[-1], b"content-length")))
        head = (
            f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Encoding: {encoding}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        )
        writer.write(head.encode() + body)
        await writer.drain()
        writer.close()

    server = BareServer(loop, answer)
    try:
        assert add_comment(loop, server.base_url) == 4242
        sent = server.requests[0].lower()
        assert b"accept-encoding: gzip, deflate" in sent
        assert b"authorization: bearer t" in sent
    finally:
        server.close()


def _header(request: bytes, name: bytes) -> bytes:
    for line in request.split(b"\r\n")[1:]:
        key, _, value = line.partition(b":")
        if key.strip().lower() == name:
            return value.strip()
    raise KeyError(name)
