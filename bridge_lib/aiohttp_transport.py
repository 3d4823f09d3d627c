"""An httpx transport that sends over aiohttp: httpx's API for the Planfix client, aiohttp's speed.

Why: httpx's own transport (httpcore, h11, anyio) costs several times the CPU of aiohttp for the
same small JSON request (figures: docs/benchmarks.md); aiohttp is already a dependency.

What the callers rely on is kept: the errors are httpx's, with the same meaning. In particular
``httpx.ConnectError`` / ``httpx.ConnectTimeout`` only when no connection was made, so nothing
was sent (the Planfix client repeats a creation only then); a connection that breaks or stalls
after that is a ``ReadError`` / ``ReadTimeout``. httpx's timeouts (connect, read, pool) are
applied by aiohttp. The body is handed over undecoded (aiohttp's decompression is off) and as a
stream, so httpx decodes it as usual and a streamed download never sits in memory whole.
Cookies and redirects stay httpx's business (aiohttp keeps no cookies and follows nothing).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import httpx

_CHUNK = 64 * 1024
# Framing headers aiohttp sets itself from the body it is given.
_FRAMING = frozenset({"transfer-encoding", "content-length"})


class AiohttpTransport(httpx.AsyncBaseTransport):
    def __init__(self, *, max_connections: int = 100) -> None:
        self._max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None

    def _session_now(self) -> aiohttp.ClientSession:
        # Made on first use: a session belongs to the running event loop.
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self._max_connections),
                cookie_jar=aiohttp.DummyCookieJar(),
                auto_decompress=False,
                skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding"),
            )
        return self._session

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        timeouts = request.extensions.get("timeout", {})
        headers = [
            (name.decode("latin-1"), value.decode("latin-1"))
            for name, value in request.headers.raw
            if name.decode("latin-1").lower() not in _FRAMING
        ]
        body = await request.aread()
        try:
            answer = await self._session_now().request(
                request.method,
                str(request.url),
                headers=headers,
                data=body or None,
                allow_redirects=False,
                timeout=aiohttp.ClientTimeout(
                    total=None,
                    connect=timeouts.get("pool"),
                    sock_connect=timeouts.get("connect"),
                    sock_read=timeouts.get("read"),
                ),
            )
        except aiohttp.ConnectionTimeoutError as error:
            raise httpx.ConnectTimeout(str(error) or "connect timed out", request=request) from error
        except aiohttp.ClientConnectorError as error:
            raise httpx.ConnectError(str(error), request=request) from error
        except TimeoutError as error:  # aiohttp.SocketTimeoutError included
            raise httpx.ReadTimeout(str(error) or "read timed out", request=request) from error
        except aiohttp.ClientError as error:
            raise httpx.ReadError(f"{type(error).__name__}: {error}", request=request) from error
        return httpx.Response(
            status_code=answer.status,
            headers=list(answer.raw_headers),
            stream=_AnswerStream(answer, request),
            extensions={"http_version": b"HTTP/1.1", "reason_phrase": (answer.reason or "").encode()},
        )

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


class _AnswerStream(httpx.AsyncByteStream):
    def __init__(self, answer: aiohttp.ClientResponse, request: httpx.Request) -> None:
        self._answer = answer
        self._request = request

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._answer.content.iter_chunked(_CHUNK):
                yield chunk
        except TimeoutError as error:  # aiohttp.SocketTimeoutError included
            raise httpx.ReadTimeout(str(error) or "read timed out", request=self._request) from error
        except aiohttp.ClientError as error:
            raise httpx.ReadError(f"{type(error).__name__}: {error}", request=self._request) from error

    async def aclose(self) -> None:
        self._answer.release()
