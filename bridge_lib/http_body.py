"""Reading a webhook's body without trusting its sender: bounded in size and in time."""

from __future__ import annotations

import asyncio

from aiohttp import web


async def read_bounded(request: web.Request, *, max_bytes: int, timeout_s: float) -> bytes | None:
    """The body, or None when it is over ``max_bytes`` (read no further than one byte past it);
    ``TimeoutError`` when it does not arrive within ``timeout_s``."""
    if request.content_length is not None and request.content_length > max_bytes:
        return None
    body = bytearray()
    async with asyncio.timeout(timeout_s):
        while chunk := await request.content.read(max_bytes + 1 - len(body)):
            body += chunk
            if len(body) > max_bytes:
                return None
    return bytes(body)
