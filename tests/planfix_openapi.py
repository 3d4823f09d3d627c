"""HTTP exchanges with Planfix, recorded raw and judged by ``openapi-core`` against the extract.

``RecordingTransport`` wraps the transport a client really sends over and keeps each request as
it left (method, URL with query, headers, body bytes) and each answer as it came (status,
headers, body). ``SpecCheck`` validates them against Planfix's OpenAPI document (the extract in
``sandbox/planfix_spec/``, which ``openapi-core`` also checks as a document when it loads it).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx
from openapi_core import OpenAPI
from openapi_core.datatypes import RequestParameters
from werkzeug.datastructures import Headers, ImmutableMultiDict

from bridge_lib.aiohttp_transport import Answer, Exchanging
from sandbox.planfix_spec import BASE_PATH, Operation, PlanfixSpec, load_spec


@dataclass(frozen=True)
class Exchange:
    method: str
    url: httpx.URL
    request_headers: httpx.Headers
    request_body: bytes
    status: int
    response_headers: httpx.Headers
    response_body: bytes

    @property
    def is_api_call(self) -> bool:
        return self.url.path.startswith(BASE_PATH + "/")


class RecordingTransport(httpx.AsyncBaseTransport):
    """Records every exchange through ``inner``; the answer is read whole (tests send small files)."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self._inner = inner
        self.exchanges: list[Exchange] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        body = await request.aread()
        response = await self._inner.handle_async_request(request)
        try:
            content = await response.aread()
        finally:
            await response.aclose()
        self.exchanges.append(
            Exchange(
                method=request.method,
                url=request.url,
                request_headers=request.headers,
                request_body=body,
                status=response.status_code,
                response_headers=response.headers,
                response_body=content,
            )
        )
        # The content is decoded already: the new answer must not claim an encoding.
        headers = [(k, v) for k, v in response.headers.multi_items() if k.lower() != "content-encoding"]
        return httpx.Response(
            response.status_code, headers=headers, content=content, extensions=response.extensions
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
        """The client's JSON calls, sent without httpx's objects (``AiohttpTransport.exchange``)."""
        assert isinstance(self._inner, Exchanging)
        answer = await self._inner.exchange(method, url, headers=headers, body=body, timeouts=timeouts)
        self.exchanges.append(
            Exchange(
                method=method,
                url=httpx.URL(url),
                request_headers=httpx.Headers(dict(headers)),
                request_body=body or b"",
                status=answer.status_code,
                response_headers=httpx.Headers(list(answer.headers.items())),
                response_body=answer.content,
            )
        )
        return answer

    async def aclose(self) -> None:
        await self._inner.aclose()


class _Request:
    """``openapi_core.protocols.Request`` for a recorded exchange, on the document's server."""

    def __init__(self, exchange: Exchange, host_url: str) -> None:
        self.host_url = host_url
        self.path = exchange.url.path
        self.method = exchange.method.lower()
        self.parameters = RequestParameters(
            query=ImmutableMultiDict(exchange.url.params.multi_items()),
            header=Headers(exchange.request_headers.multi_items()),
            cookie=ImmutableMultiDict(),
        )
        self.body = exchange.request_body or None
        self.content_type = exchange.request_headers.get("content-type", "").lower()


class _Response:
    """``openapi_core.protocols.Response`` for a recorded exchange."""

    def __init__(self, exchange: Exchange) -> None:
        self.status_code = exchange.status
        self.headers = Headers(exchange.response_headers.multi_items())
        self.content_type = exchange.response_headers.get("content-type", "").lower()
        self.data = exchange.response_body


class SpecCheck:
    def __init__(self, spec: PlanfixSpec) -> None:
        self.spec = spec
        # Loading validates the extract as an OpenAPI 3.0 document.
        self.app = OpenAPI.from_dict(spec.document)
        server = urlsplit(spec.document["servers"][0]["url"])
        self._host_url = f"{server.scheme}://{server.netloc}"

    def operation(self, exchange: Exchange) -> Operation | None:
        return self.spec.find(exchange.method, exchange.url.path)

    def request_errors(self, exchange: Exchange) -> list[str]:
        """What the document does not allow in the request, each error with its details."""
        try:
            self.app.validate_request(_Request(exchange, self._host_url))
        except Exception as error:  # openapi-core raises one of many types; all mean "invalid"
            return [_describe(error)]
        return []

    def response_errors(self, exchange: Exchange) -> list[str]:
        try:
            self.app.validate_response(_Request(exchange, self._host_url), _Response(exchange))
        except Exception as error:
            return [_describe(error)]
        return []


def _describe(error: BaseException) -> str:
    parts: list[str] = []
    seen: BaseException | None = error
    while seen is not None:
        parts.append(f"{type(seen).__name__}: {seen}")
        schema_errors: Any = getattr(seen, "schema_errors", None)
        parts.extend(f"  {schema_error.message}" for schema_error in schema_errors or ())
        seen = seen.__cause__ or seen.__context__
    return "\n".join(parts)


@functools.cache
def spec_check() -> SpecCheck:
    return SpecCheck(load_spec())
