"""The HTTP side: Planfix's scenario POSTs ids here; we store them as an event and answer fast.

Planfix sends an account's scenario requests one at a time and stalls them for 3 minutes after a
failure, so nothing slow happens here: check the secret (and ``PLANFIX_WEBHOOK_HEADER_NAME``),
read two ids, publish one event, answer. ``fetcher`` fetches the comment later. The body is a
JSON object ``{"task": <id>, "comment": <id>[, "event": "comment.added"]}``, or the same as a
form; JSON broken by a pasted text is still read when the ids are unambiguous (formats:
docs/architecture.md). Anything else is a 400.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.parser
import email.policy
import hmac
import re
import time
import urllib.parse
from collections.abc import Callable
from typing import Any, NamedTuple

import msgspec
import structlog
from aiohttp import hdrs, web

from bridge_lib.eventbus import EventPublisher
from bridge_lib.http_body import read_bounded
from contracts import subjects
from contracts.events import (
    PlanfixCommentAction,
    PlanfixCommentWebhookReceived,
    PlanfixTaskWebhookReceived,
    planfix_change_webhook_key,
    planfix_task_webhook_key,
    planfix_webhook_key,
    root_envelope,
)

log = structlog.get_logger("planfix_gateway.webhook")

# "task.changed": the task-changed scenario's notice, the task's number only (issue 18).
TASK_CHANGED = "task.changed"
WEBHOOK_EVENTS = (*(action.value for action in PlanfixCommentAction), TASK_CHANGED)
# Ids must fit the int64 the events are encoded with.
MAX_ID = 2**63 - 1
_DIGITS = re.compile(r"\d{1,19}")
# A client that takes longer than this to send a small body is not Planfix.
BODY_READ_TIMEOUT_S = 10.0
# The fetcher waits for pending answers at most this long: a steady stream of notices must not
# starve it (its ack_wait is 60 s).
MAX_FETCH_DEFERRAL_S = 1.0
# Planfix sends an account's scenario requests one at a time: this many answers pending at once
# is a burst (several accounts, or retries after an outage), when answering comes first.
BURST_ANSWERS = 2


class WebhookIds(NamedTuple):
    task_number: int
    comment_id: int
    action: PlanfixCommentAction = PlanfixCommentAction.ADDED


class TaskChangeNotice(NamedTuple):
    task_number: int


class BadWebhook(ValueError):
    """The body is not a comment notice we understand; the text says why (sent back to the caller)."""


FORM_URLENCODED = "application/x-www-form-urlencoded"
MULTIPART_FORM = "multipart/form-data"
# Our fields and their aliases; a form with many more fields is not our scenario's.
_FORM_FIELDS = ("event", "task", "taskNumber", "comment", "commentId")
_MAX_FORM_FIELDS = 50


def parse_webhook(raw: bytes, content_type: str = "") -> WebhookIds:
    """A comment notice's ids (a task notice is refused: ``parse_notice`` reads both)."""
    notice = parse_notice(raw, content_type)
    if isinstance(notice, TaskChangeNotice):
        raise BadWebhook("a task notice, not a comment's")
    return notice


def parse_notice(raw: bytes, content_type: str = "") -> WebhookIds | TaskChangeNotice:
    """The ids of a notice, from a JSON or form body; ``content_type`` is the request's
    ``Content-Type`` header (with its parameters: a multipart body needs its boundary)."""
    data = _fields(raw, content_type)
    if not isinstance(data, dict):
        raise BadWebhook("body must be a JSON object")
    event = data.get("event", PlanfixCommentAction.ADDED.value)
    if event not in WEBHOOK_EVENTS:
        raise BadWebhook(f"'event' must be one of {', '.join(WEBHOOK_EVENTS)}")
    if event == TASK_CHANGED:
        return TaskChangeNotice(task_number=_id(data, "task", "taskNumber"))
    return WebhookIds(
        task_number=_id(data, "task", "taskNumber"),
        comment_id=_id(data, "comment", "commentId"),
        action=PlanfixCommentAction(event),
    )


def _fields(raw: bytes, content_type: str) -> Any:
    """The body's top-level fields: as its declared type says, unless it plainly is JSON (a
    scenario set up with the wrong type), else JSON, salvaged JSON, or a form."""
    media_type = content_type.split(";", 1)[0].strip().lower()
    looks_like_json = raw.lstrip().startswith((b"{", b"["))
    if media_type == MULTIPART_FORM and not looks_like_json:
        return multipart_fields(raw, content_type)
    if media_type == FORM_URLENCODED and not looks_like_json:
        return form_fields(raw)
    try:
        return msgspec.json.decode(raw)
    except ValueError as error:  # msgspec.DecodeError, or UnicodeDecodeError inside a string
        salvaged = salvage_ids(raw)
        if salvaged is not None:
            return salvaged
        # A form sent as text/plain or even as JSON: refusing it would stall Planfix for nothing.
        if not looks_like_json and b"=" in raw:
            return form_fields(raw)
        raise BadWebhook("body is neither JSON nor a form") from error


def form_fields(raw: bytes) -> dict[str, str]:
    """``task=4821&comment=90017`` as a dict; a field given twice is ambiguous and refused."""
    try:
        text = raw.decode("utf-8")
        pairs = urllib.parse.parse_qsl(
            text, keep_blank_values=True, max_num_fields=_MAX_FORM_FIELDS, errors="strict"
        )
    except ValueError as error:  # UnicodeDecodeError, or more fields than allowed
        raise BadWebhook("form body is not readable") from error
    return _one_value_each(pairs)


def multipart_fields(raw: bytes, content_type: str) -> dict[str, str]:
    """The text fields of a ``multipart/form-data`` body (file parts are ignored)."""
    # The stdlib's MIME parser reads multipart once it is given the header with the boundary.
    header = f"Content-Type: {content_type}\r\n\r\n".encode("utf-8", errors="replace")
    pairs: list[tuple[str, str]] = []
    try:
        message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(header + raw)
        parts = list(message.iter_parts()) if message.is_multipart() else []
        for part in parts[: _MAX_FORM_FIELDS + 1]:
            name = part.get_param("name", header="content-disposition")
            if not isinstance(name, str) or part.get_filename() is not None:
                continue
            payload = part.get_payload(decode=True)
            if isinstance(payload, bytes):
                pairs.append((name, payload.decode("utf-8", errors="replace")))
    except Exception as error:  # the parser is lenient, but not documented never to raise
        raise BadWebhook("multipart body is not readable") from error
    if not parts:
        raise BadWebhook("multipart body has no parts (is the boundary right?)")
    if len(parts) > _MAX_FORM_FIELDS:
        raise BadWebhook("multipart body has too many fields")
    return _one_value_each(pairs)


def _one_value_each(pairs: list[tuple[str, str]]) -> dict[str, str]:
    fields: dict[str, str] = {}
    for name, value in pairs:
        if name in fields and name in _FORM_FIELDS:
            raise BadWebhook(f"'{name}' is given more than once")
        fields.setdefault(name, value)
    return fields


_SALVAGE_FIELDS = _FORM_FIELDS
# Whitespace our template could plausibly have around a value. Every repetition below is bounded
# and no two of them can take the same characters, so one match attempt costs a constant number
# of steps and a scan of the body is linear in its length (a hostile 64 KB body of spaces and
# quotes after '"task":' took ~35 s with the unbounded pattern).
_SPACE = r"[ \t\r\n]{0,16}"
_SALVAGE_VALUE = {
    "event": r'"([A-Za-z0-9._-]{1,40})"',
    **{name: rf'(?:"{_SPACE})?(\d{{1,19}})(?:{_SPACE}")?' for name in _SALVAGE_FIELDS if name != "event"},
}
SALVAGE_PATTERNS = {
    name: re.compile(rf'"{name}"{_SPACE}:{_SPACE}{value}(?=[ \t\r\n,}}])')
    for name, value in _SALVAGE_VALUE.items()
}


def salvage_ids(raw: bytes) -> dict[str, str] | None:
    """The top-level fields of our template read from a body that is not valid JSON (a pasted
    text broke it), or None when they cannot be read unambiguously."""
    text = raw.decode("utf-8", errors="replace")
    found: dict[str, str] = {}
    for name, pattern in SALVAGE_PATTERNS.items():
        matches = pattern.findall(text)
        if len(matches) > 1:
            return None  # the field appears twice: no guessing which one is ours
        if matches:
            found[name] = matches[0]
    has_task = "task" in found or "taskNumber" in found
    has_comment = "comment" in found or "commentId" in found
    return found if has_task and (has_comment or found.get("event") == TASK_CHANGED) else None


def _id(data: dict[str, Any], name: str, alias: str) -> int:
    key = name if name in data else alias
    if key not in data:
        raise BadWebhook(f"'{name}' is missing")
    value = data[key]
    if isinstance(value, str) and _DIGITS.fullmatch(value.strip()):
        value = int(value.strip())
    # bool is an int subclass: true must not become task 1.
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= MAX_ID:
        raise BadWebhook(f"'{key}' must be a positive integer or a string of digits")
    return value


def notice_key(ids: WebhookIds, received_at_ms: int) -> str:
    """A comment is added once, so its notice key is the comment; edits and deletes carry time."""
    if ids.action is PlanfixCommentAction.ADDED:
        return planfix_webhook_key(ids.comment_id)
    return planfix_change_webhook_key(ids.comment_id, ids.action.value, received_at_ms)


def build_event(ids: WebhookIds, key: str) -> PlanfixCommentWebhookReceived:
    return PlanfixCommentWebhookReceived(
        **root_envelope(key, caused_by=key),
        task_number=ids.task_number,
        comment_id=ids.comment_id,
        action=ids.action,
    )


class RequestBudget:
    """A token bucket: ``rate_per_s`` requests a second on average, ``burst`` at once. In this
    process only: each gateway replica keeps its own (Planfix sends one request at a time, so a
    legitimate scenario never comes near it)."""

    def __init__(self, rate_per_s: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        self._rate = rate_per_s
        self._burst = float(burst)
        self._tokens = float(burst)
        self._clock = clock
        self._last = clock()

    def take(self) -> bool:
        now = self._clock()
        self._tokens = min(self._burst, self._tokens + (now - self._last) * self._rate)
        self._last = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False


class WebhookReceiver:
    def __init__(
        self,
        *,
        secret: str,
        max_body: int,
        publisher: EventPublisher,
        publish_timeout_s: float,
        header: tuple[str, str] | None = None,
        budget: RequestBudget | None = None,
    ) -> None:
        self._secret = secret.encode()
        # (name, value) of the header every request must carry too: a second factor beside the
        # path, for a secret URL that leaked (a screenshot of the scenario, a proxy's log).
        self._header = (header[0], header[1].encode()) if header else None
        self._max_body = max_body
        # Requests with the right secret: each one costs a Planfix request (the fetch).
        self._budget = budget
        self._publisher = publisher
        self._publish_timeout_s = publish_timeout_s
        self._answers_pending = 0
        self._no_burst = asyncio.Event()
        self._no_burst.set()

    @property
    def answers_pending(self) -> int:
        return self._answers_pending

    async def no_burst_pending(self, max_wait_s: float = MAX_FETCH_DEFERRAL_S) -> None:
        """Return once fewer than ``BURST_ANSWERS`` requests wait for their answer (or after
        ``max_wait_s``); the fetcher calls it before each fetch.

        Planfix holds its scenario queue while we answer, so under a burst the answers go first and
        the fetches a moment later; requests one at a time, as Planfix sends them, never wait.
        """
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(max_wait_s):
                await self._no_burst.wait()

    def app(self) -> web.Application:
        app = web.Application(client_max_size=self._max_body)
        app.router.add_post("/planfix/webhook/{secret}", self.handle)
        app.router.add_get("/healthz", healthz)
        return app

    async def handle(self, request: web.Request) -> web.Response:
        self._answers_pending += 1
        if self._answers_pending >= BURST_ANSWERS:
            self._no_burst.clear()
        try:
            return await self._answer(request)
        finally:
            self._answers_pending -= 1
            if self._answers_pending < BURST_ANSWERS:
                self._no_burst.set()

    async def _answer(self, request: web.Request) -> web.Response:
        # Constant-time, and before the body is read: a stranger costs us nothing.
        if not hmac.compare_digest(request.match_info["secret"].encode(), self._secret):
            log.warning("webhook_bad_secret", remote=request.remote)
            return _error(401, "unauthorized")
        if self._header is not None and not self._header_matches(request, *self._header):
            # The same answer as a wrong secret: a caller learns nothing about which one failed.
            log.warning("webhook_bad_header", remote=request.remote, header=self._header[0])
            return _error(401, "unauthorized")
        if self._budget is not None and not self._budget.take():
            # Before the body is read: a flood with a leaked secret costs us (and Planfix) nothing.
            log.warning("webhook_rate_limited", remote=request.remote)
            return web.json_response(
                {"error": "too many requests, retry later"}, status=429, headers={hdrs.RETRY_AFTER: "1"}
            )
        try:
            raw = await self._read_body(request)
        except TimeoutError:
            log.warning("webhook_body_too_slow", remote=request.remote)
            return _error(408, "body not received in time")
        if raw is None:
            log.warning(
                "webhook_body_too_large", remote=request.remote, content_length=request.content_length
            )
            return _error(413, f"body larger than {self._max_body} bytes")
        try:
            ids = parse_notice(raw, request.headers.get(hdrs.CONTENT_TYPE, ""))
        except BadWebhook as error:
            log.warning(
                "webhook_rejected",
                reason=str(error),
                remote=request.remote,
                body=raw[:200].decode(errors="replace"),
            )
            return _error(400, str(error))
        return await self._store(ids)

    @staticmethod
    def _header_matches(request: web.Request, name: str, expected: bytes) -> bool:
        # Constant-time; a header sent twice (a proxy added one) is refused, not guessed at.
        values = request.headers.getall(name, [])
        given = values[0].encode("utf-8", errors="replace") if len(values) == 1 else b""
        return hmac.compare_digest(given, expected) and len(values) == 1

    async def _read_body(self, request: web.Request) -> bytes | None:
        return await read_bounded(request, max_bytes=self._max_body, timeout_s=BODY_READ_TIMEOUT_S)

    async def _store(self, ids: WebhookIds | TaskChangeNotice) -> web.Response:
        if isinstance(ids, TaskChangeNotice):
            return await self._store_task_notice(ids)
        key = notice_key(ids, time.time_ns() // 1_000_000)
        event = build_event(ids, key)
        with structlog.contextvars.bound_contextvars(
            task_number=ids.task_number, comment_id=ids.comment_id, event_id=event.event_id, action=ids.action
        ):
            try:
                async with asyncio.timeout(self._publish_timeout_s):
                    stored = await self._publisher.publish(
                        event, subject=subjects.planfix_comment_webhook(ids.task_number), msg_id=key
                    )
            except Exception as error:  # NATS down or slow: Planfix retries later, nothing is lost
                log.warning("webhook_not_stored", error=f"{type(error).__name__}: {error}")
                return _error(503, "cannot store the notice now, retry later")
            log.info("webhook_accepted", duplicate=not stored)
        return web.json_response({"ok": True})

    async def _store_task_notice(self, notice: TaskChangeNotice) -> web.Response:
        key = planfix_task_webhook_key(notice.task_number, time.time_ns() // 1_000_000)
        event = PlanfixTaskWebhookReceived(
            **root_envelope(key, caused_by=key), task_number=notice.task_number
        )
        with structlog.contextvars.bound_contextvars(task_number=notice.task_number, event_id=event.event_id):
            try:
                async with asyncio.timeout(self._publish_timeout_s):
                    stored = await self._publisher.publish(
                        event, subject=subjects.planfix_task_webhook(notice.task_number), msg_id=key
                    )
            except Exception as error:  # as for a comment: Planfix retries later
                log.warning("webhook_not_stored", error=f"{type(error).__name__}: {error}")
                return _error(503, "cannot store the notice now, retry later")
            log.info("task_webhook_accepted", duplicate=not stored)
        return web.json_response({"ok": True})


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"ok": True})


def _error(status: int, reason: str) -> web.Response:
    return web.json_response({"error": reason}, status=status)
