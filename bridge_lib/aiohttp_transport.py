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

``exchange`` is the same request without httpx's objects, for a small JSON call answered whole:
building an ``httpx.Request`` (its URL parsed and merged with the base) and reading an
``httpx.Response`` cost more client CPU than aiohttp's whole exchange.
"""

from __future__ import annotations

import contextlib
import zlib
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import aiohttp
import httpx

_CHUNK = 64 * 1024
# Framing headers aiohttp sets itself from the body it is given.
_FRAMING = frozenset({"transfer-encoding", "content-length"})


@dataclass(frozen=True)
class Answer:
    """An HTTP answer read whole: what a JSON API call needs of it."""

    status_code: int
    # Case-insensitive, as HTTP header names are.
    headers: Mapping[str, str]
    content: bytes


@runtime_checkable
class Exchanging(Protocol):
    """A transport that also sends a request without httpx's objects (``AiohttpTransport.exchange``)."""

    async def exchange(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str],
        body: bytes | None,
        timeouts: Mapping[str, float | None],
    ) -> Answer: ...


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
        with _as_httpx_errors(request):
            answer = await self._session_now().request(
                request.method,
                str(request.url),
                headers=headers,
                data=body or None,
                allow_redirects=False,
                timeout=_aiohttp_timeout(timeouts),
            )
        return httpx.Response(
            status_code=answer.status,
            headers=list(answer.raw_headers),
            stream=_AnswerStream(answer, request),
            extensions={"http_version": b"HTTP/1.1", "reason_phrase": (answer.reason or "").encode()},
        )

    async def exchange(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str],
        body: bytes | None,
        timeouts: Mapping[str, float | None],
    ) -> Answer:
        """One request, its answer read whole; the same errors as ``handle_async_request``.
        ``timeouts``: httpx's (``connect``, ``read``, ``pool``)."""
        with _as_httpx_errors(None):
            async with self._session_now().request(
                method,
                url,
                headers=headers,
                data=body,
                allow_redirects=False,
                timeout=_aiohttp_timeout(timeouts),
            ) as answer:
                content = _decoded(await answer.read(), answer.headers.get("Content-Encoding", ""))
                return Answer(status_code=answer.status, headers=answer.headers, content=content)

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def _decoded(content: bytes, encoding: str) -> bytes:
    """The body without its gzip or deflate coding (what httpx asks for and undoes); another
    coding is left as it came."""
    encoding = encoding.strip().lower()
    try:
        if encoding in ("gzip", "x-gzip"):
            return zlib.decompress(content, 16 + zlib.MAX_WBITS)
        if encoding == "deflate":
            # Meant as zlib-wrapped; some servers send it raw.
            try:
                return zlib.decompress(content)
            except zlib.error:
                return zlib.decompress(content, -zlib.MAX_WBITS)
    except zlib.error as error:
        raise httpx.DecodingError(f"{encoding} body: {error}") from error
    return content


def _aiohttp_timeout(timeouts: Mapping[str, float | None]) -> aiohttp.ClientTimeout:
    return aiohttp.ClientTimeout(
        total=None,
        connect=timeouts.get("pool"),
        sock_connect=timeouts.get("connect"),
        sock_read=timeouts.get("read"),
    )


@contextlib.contextmanager
def _as_httpx_errors(request: httpx.Request | None) -> Iterator[None]:
    """aiohttp's failures as httpx's errors of the same meaning (a connect error: nothing sent)."""
    try:
        yield
    except aiohttp.ConnectionTimeoutError as error:
        raise httpx.ConnectTimeout(str(error) or "connect timed out", request=request) from error
    except aiohttp.ClientConnectorError as error:
        raise httpx.ConnectError(str(error), request=request) from error
    except TimeoutError as error:  # aiohttp.SocketTimeoutError included
        raise httpx.ReadTimeout(str(error) or "read timed out", request=request) from error
    except aiohttp.ClientError as error:
        raise httpx.ReadError(f"{type(error).__name__}: {error}", request=request) from error


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
