"""A small client for the Planfix REST API v2 over one ``httpx.AsyncClient``.

Facts it relies on (``docs`` of the Planfix REST API; see the project's reference notes):
``Authorization: Bearer <token>``; success bodies carry ``"result": "success"``; errors carry
``{"result": ..., "code": <int>, "error": <text>}`` with codes such as 1 (bad token), 1000 (task
does not exist) and 5000 (comment does not exist). The HTTP status that goes with each code is
not documented, so the *code* decides, whatever the status.

Assumptions, stated where the docs are silent: ``GET /comment/{id}`` wraps the comment in a
``"comment"`` key (we also accept an unwrapped body); ``sourceObjectId`` is scoped by the
``sourceId`` passed as a query parameter.

Failures become typed errors: ``PlanfixUnavailable`` (transport, 5xx, throttling: try later)
and ``PlanfixRejected`` with subclasses for what callers act on (``TaskNotFound``,
``CommentNotFound``, ``FileNotFound``, ``PlanfixAuthError``).

Files: ``GET /file/{id}?fields=id,name,size`` (assumed wrapped in ``"file"``, like a task in
``"task"``) and ``GET /file/{id}/download`` (the bytes; an error comes back as the usual JSON).
"""

from __future__ import annotations

from pathlib import Path
from types import TracebackType
from typing import Any, Self

import anyio
import httpx
import msgspec

# Planfix error codes the bridge acts on.
CODE_BAD_TOKEN = 1
CODE_TOKEN_INACTIVE = 2
CODE_ACCESS_DENIED = 6
CODE_DAILY_LIMIT = 22
CODE_TASK_NOT_FOUND = 1000
CODE_COMMENT_NOT_FOUND = 5000
CODE_FILE_NOT_FOUND = 7000

COMMENT_FIELDS = "id,dateTime,description,owner,task,sourceObjectId,isDeleted,files"
FILE_FIELDS = "id,name,size"
_DOWNLOAD_CHUNK = 256 * 1024


class PlanfixError(Exception):
    pass


class PlanfixUnavailable(PlanfixError):
    """Planfix could not be reached or asked us to slow down; the call may succeed later."""


class PlanfixRejected(PlanfixError):
    """Planfix answered with an error that retrying will not fix."""

    def __init__(self, message: str, *, code: int | None = None, status: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.status = status


class PlanfixAuthError(PlanfixRejected):
    pass


class TaskNotFound(PlanfixRejected):
    pass


class CommentNotFound(PlanfixRejected):
    pass


class FileNotFound(PlanfixRejected):
    pass


class FileTooLarge(PlanfixError):
    """A download went past the size the caller can use; nothing was kept."""

    def __init__(self, message: str, *, limit: int) -> None:
        super().__init__(message)
        self.limit = limit


class PlanfixTask(msgspec.Struct, frozen=True, kw_only=True):
    number: int
    name: str


class PlanfixFileInfo(msgspec.Struct, frozen=True, kw_only=True):
    id: int
    name: str = ""
    size: int | None = None


class PlanfixComment(msgspec.Struct, frozen=True, kw_only=True):
    id: int
    task_number: int | None
    description: str
    owner_id: str | None
    owner_name: str
    written_at: str | None = None
    source_object_id: str | None = None
    is_deleted: bool = False
    files: tuple[PlanfixFileInfo, ...] = ()


class PlanfixClient:
    def __init__(
        self,
        *,
        base_url: str,
        token: str,
        timeout_s: float = 15.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._http = httpx.AsyncClient(
            base_url=base_url,
            headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
            timeout=httpx.Timeout(timeout_s, connect=5.0),
            transport=transport,
        )

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    # --- tasks ------------------------------------------------------------------------------

    async def create_task(self, *, name: str, description: str = "") -> int:
        body = await self._call("POST", "task/", json={"name": name, "description": description})
        return int(body["id"])

    async def get_task(self, number: int) -> PlanfixTask:
        body = await self._call("GET", f"task/{number}", params={"fields": "id,name"}, not_found=TaskNotFound)
        task = body.get("task") or {}
        return PlanfixTask(number=int(task.get("id", number)), name=str(task.get("name", "")))

    # --- comments ---------------------------------------------------------------------------

    async def add_comment(
        self, *, task_number: int, description_html: str, source_id: str, source_object_id: str
    ) -> int:
        payload = {"description": description_html, "sourceId": source_id, "sourceObjectId": source_object_id}
        body = await self._call("POST", f"task/{task_number}/comments/", json=payload, not_found=TaskNotFound)
        return int(body["id"])

    async def get_comment(self, comment_id: int, *, source_id: str | None = None) -> PlanfixComment:
        params = {"fields": COMMENT_FIELDS}
        if source_id:
            params["sourceId"] = source_id
        body = await self._call("GET", f"comment/{comment_id}", params=params, not_found=CommentNotFound)
        raw = body.get("comment", body)
        return _comment_from_json(raw)

    async def list_comments(
        self, task_number: int, *, source_id: str | None = None, offset: int = 0, page_size: int = 100
    ) -> list[PlanfixComment]:
        payload: dict[str, Any] = {
            "offset": offset,
            "pageSize": page_size,
            "typeList": "Comments",
            "fields": COMMENT_FIELDS,
        }
        if source_id:
            payload["sourceId"] = source_id
        body = await self._call(
            "POST", f"task/{task_number}/comments/list", json=payload, not_found=TaskNotFound
        )
        return [_comment_from_json(raw) for raw in body.get("comments", [])]

    # --- files ------------------------------------------------------------------------------

    async def get_file(self, file_id: int) -> PlanfixFileInfo:
        body = await self._call(
            "GET", f"file/{file_id}", params={"fields": FILE_FIELDS}, not_found=FileNotFound
        )
        raw = body.get("file", body)
        info = _file_from_json(raw if isinstance(raw, dict) else {})
        return info or PlanfixFileInfo(id=file_id)

    async def download_file(self, file_id: int, destination: Path, *, max_bytes: int) -> int:
        """Write the file's bytes to ``destination``; the number of bytes written.

        Streams to disk, so a large file never sits in memory; past ``max_bytes`` it stops,
        deletes what it wrote and raises ``FileTooLarge``.
        """
        path = f"file/{file_id}/download"
        try:
            async with self._http.stream("GET", path) as response:
                if response.status_code >= 400 or "json" in response.headers.get("content-type", ""):
                    # An error answer, or a JSON file: only an error body carries a failure code.
                    content = await response.aread()
                    _raise_for(response, _json_or_empty(response), "GET", path, FileNotFound)
                    written = len(content)
                    if written <= max_bytes:
                        await anyio.Path(destination).write_bytes(content)
                else:
                    written = await _stream_to(response, destination, max_bytes)
        except httpx.TransportError as error:
            await anyio.Path(destination).unlink(missing_ok=True)
            raise PlanfixUnavailable(f"GET {path}: {type(error).__name__}") from error
        if written > max_bytes:
            await anyio.Path(destination).unlink(missing_ok=True)
            raise FileTooLarge(f"file {file_id} is larger than {max_bytes} bytes", limit=max_bytes)
        return written

    # --- plumbing ---------------------------------------------------------------------------

    async def _call(
        self,
        method: str,
        path: str,
        *,
        json: dict[str, Any] | None = None,
        params: dict[str, str] | None = None,
        not_found: type[PlanfixRejected] = PlanfixRejected,
    ) -> dict[str, Any]:
        try:
            response = await self._http.request(method, path, json=json, params=params)
        except httpx.TransportError as error:
            raise PlanfixUnavailable(f"{method} {path}: {type(error).__name__}") from error
        body = _json_or_empty(response)
        _raise_for(response, body, method, path, not_found)
        return body


async def _stream_to(response: httpx.Response, destination: Path, max_bytes: int) -> int:
    """Bytes written; stops once past ``max_bytes`` (the caller then discards the file)."""
    written = 0
    async with await anyio.open_file(destination, "wb") as out:
        async for chunk in response.aiter_bytes(_DOWNLOAD_CHUNK):
            written += len(chunk)
            if written > max_bytes:
                break
            await out.write(chunk)
    return written


def _raise_for(
    response: httpx.Response, body: dict[str, Any], method: str, path: str, not_found: type[PlanfixRejected]
) -> None:
    """Raise the typed error an answer stands for; return when it is a success."""
    code = body.get("code") if isinstance(body.get("code"), int) else None
    if response.status_code >= 500 or response.status_code == 429 or code == CODE_DAILY_LIMIT:
        raise PlanfixUnavailable(
            f"{method} {path}: HTTP {response.status_code} {body.get('error', '')}".strip()
        )
    failed = response.status_code >= 400 or (body.get("result") not in (None, "success") and code is not None)
    if not failed:
        return
    message = f"{method} {path}: HTTP {response.status_code}, code {code}: {body.get('error', '')}"
    if code in (CODE_BAD_TOKEN, CODE_TOKEN_INACTIVE) or response.status_code == 401:
        raise PlanfixAuthError(message, code=code, status=response.status_code)
    if (
        code in (CODE_TASK_NOT_FOUND, CODE_COMMENT_NOT_FOUND, CODE_FILE_NOT_FOUND)
        or response.status_code == 404
    ):
        raise not_found(message, code=code, status=response.status_code)
    raise PlanfixRejected(message, code=code, status=response.status_code)


def _json_or_empty(response: httpx.Response) -> dict[str, Any]:
    if not response.content:
        return {}
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _comment_from_json(raw: dict[str, Any]) -> PlanfixComment:
    owner = raw.get("owner") or {}
    task = raw.get("task") or {}
    written = raw.get("dateTime")
    return PlanfixComment(
        id=int(raw["id"]),
        task_number=int(task["id"]) if task.get("id") is not None else None,
        description=str(raw.get("description") or ""),
        owner_id=str(owner["id"]) if owner.get("id") is not None else None,
        owner_name=str(owner.get("name") or ""),
        written_at=str(written.get("datetime")) if isinstance(written, dict) else None,
        source_object_id=raw.get("sourceObjectId") or None,
        is_deleted=bool(raw.get("isDeleted", False)),
        files=tuple(info for item in raw.get("files") or () if (info := _file_from_json(item))),
    )


def _file_from_json(raw: Any) -> PlanfixFileInfo | None:
    """``{"id": 9911, "name": "scan.pdf", "size": 48213}``; None without a usable id."""
    if not isinstance(raw, dict):
        return None
    try:
        file_id = int(raw["id"])
    except (KeyError, TypeError, ValueError):
        return None
    size = raw.get("size")
    return PlanfixFileInfo(
        id=file_id,
        name=str(raw.get("name") or ""),
        size=int(size) if isinstance(size, int | float) and not isinstance(size, bool) else None,
    )
