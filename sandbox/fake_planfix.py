"""A fake Planfix REST API v2 (and its "comment added" scenario) for tests and the sandbox.

It follows Planfix's published OpenAPI document (swagger 1.3.4, the extract in
``sandbox/planfix_spec/``), not the bridge: the client is tested against it, so the fake must
not bend to the client.

* ``Authorization: Bearer <token>`` (or ``?access_token=`` on GET); else HTTP 401, code 1.
* errors are ``{"result": "fail", "code": N, "error": text}`` with the HTTP status the
  document lists for the operation: 400 for most (comment add and update, files, tasks), 500
  for the list calls (``POST /task/{id}/comments/list``: code 1000 for an unknown task).
  Codes: 30 bad JSON, 40 missing parameter, 41 bad value, 1000 unknown task, 5000 unknown
  comment, 7000 unknown file, 7002 file over the plan's limit.
* strict mode (``strict=True``, the default): every request is checked against the document
  (``sandbox.planfix_spec.checker``): a value it does not allow (a ``sourceId`` or
  ``sourceObjectId`` that is not a UUID, a wrong type, a value outside an enum, ``pageSize``
  over 100) is refused with code 30, a required parameter left out with code 40. Fields the
  document does not name are not errors (it does not forbid them).
* successes answer the document's statuses: 201 for a created task or comment, 200 otherwise.
* ``GET /file/{id}/download`` answers **302** with ``Location`` pointing at a fresh,
  unguessable address under ``/storage/`` on the same server, which serves the bytes without
  any token; each storage request is recorded with the Authorization header it carried
  (``storage_calls``, ``storage_requests_with_authorization()``). ``GET /file/{id}`` answers
  ``{"file": {...}}``; a comment lists its files as ``[{"id", "name", "size"}]``.
* ``POST /task/{n}/comments/list`` honours ``resultOrder`` (``[{"field"|"filed": "id"|
  "dateTime", "direction": "Asc"|"Desc"}]``, the document spells the key both ways).
* ``recipients`` of a comment (roles as an array or as one string: the document shows both)
  and its ``owner`` are kept on the comment (``FakeComment.recipients``, ``owner_id``).

Assumptions where the document is silent:

* a list without ``resultOrder`` is oldest first;
* ``sourceObjectId`` of a comment is shown only to a reader passing the same ``sourceId`` the
  comment was created with (on the list call, in the body, which the document does not name);
* comments written through the API belong to the token's employee (the robot);
* ``GET /comment/{id}`` for an unknown comment answers 400, code 5000 (the document lists no
  error answer there; the extract's patch "unlisted-error-answers");
* a path that differs from the document's by a trailing slash is the same call;
* the daily cap answers **HTTP 403, code 22**, as public code sees it from real Planfix, with
  ``timeToReset`` in the body: the seconds to the next midnight UTC (the name and the clock
  are ours; the fake's day never actually ends). The per-second overrun answers HTTP 429,
  code 0, ``Retry-After: 1``. Every answer carries ``X-RateLimit-Remaining``.
* ``fail_next(status=500, code=N)`` answers Planfix's error body with that code;
  ``fail_next(status=...)`` without a code, and ``set_unavailable``, a proxy's HTML page.

People (issue 15): employees and contacts the tests seed (``add_employee``, ``add_contact``)
carry ``telegramId`` and ``telegram`` and are found through ``POST /user/list`` and ``POST
/contact/list`` with the document's complex filters: 9126 (employee telegramId), 4234 (contact
telegramId), 4226 (contact telegramUsername), operators ``equal``/``notequal``; any other filter
type or operator is refused (code 41, "not simulated") rather than ignored, so a client never
takes an unfiltered list for a match. ``onlyActive`` leaves fired employees out; answers carry
integer ids (``prefixedId`` is not honoured: the document types ``UserResponse.id`` as an
integer). ``POST /contact/`` creates a contact (201, its number). A task's ``assigner``,
``assignees``, ``participants`` and ``auditors`` are set by ``set_task_people`` (or by the
creating request) and read with ``GET /task/{id}?fields=...`` as the document's
``PersonResponse``/``PeopleResponse``. A comment written with ``owner`` keeps it and reads back
with the owner's name; ``refuse_owner()`` makes the token unable to write as anyone else
(HTTP 400, code 6, naming the owner), as a token without that right would.

Assumptions on people where the document is silent: a Telegram id filter matches the stored
``telegramId`` text against the value sent as a number or a string; a username filter ignores
case, a leading "@" and a ``https://t.me/`` prefix on either side (the document writes
``telegram`` as a t.me address in one example and filters by the bare name in another); lists
are by number, oldest first; an employee or contact without a Telegram field answers "" for it.

Files: ``POST /file/`` takes multipart field ``file`` and answers its id; a file over
``max_file_size`` is code 7002. Comments carry ``files`` ``[{"id": N}]`` and can be updated with
``POST /task/{n}/comments/{id}`` (a ``files`` array replaces the set; left out, kept).

The scenario side behaves like an automatic scenario's "HTTP request" action: one request at
a time per account (a single worker drains a queue), ids pasted into a hand-written JSON
template as text, ``"event"`` naming what happened (``comment.added``, ``comment.updated``,
``comment.deleted``: one scenario per event, as the README tells operators to set up). By
default it fires for every new comment, including the bridge's own (the worst case for echo
loops, since Planfix may do so: reference §5.10). Not simulated: retries after a failed
scenario request (tests re-fire with ``post_webhook``), the 3-minute stall after a failure.

Tests drive it from their own thread while the server runs on another thread's loop: state
sits behind a ``threading.Lock``, webhook sends are handed to the server's loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import secrets
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import aiohttp
from aiohttp import web

from bridge_lib.cancel import cancelled
from sandbox.fake_planfix_tasks import (
    DEFAULT_PROCESS_ID,
    STATUS_NEW,
    TASK_CHANGED_EVENT,
    TaskLife,
    task_life_json,
)
from sandbox.planfix_spec import Operation, load_spec

if TYPE_CHECKING:
    from sandbox.planfix_spec.checker import RequestChecker

FIRST_TASK_NUMBER = 4800
FIRST_COMMENT_ID = 90001
FIRST_FILE_ID = 70001
MAX_PAGE_SIZE = 100
ROBOT_ID = "user:1"
FIRST_EMPLOYEE_NUMBER = 101
FIRST_CONTACT_NUMBER = 501

# The document's complex filter types the fake simulates (ComplexUserFilter/ComplexContactFilter).
FILTER_USER_TELEGRAM_ID = 9126
FILTER_CONTACT_TELEGRAM_USERNAME = 4226
FILTER_CONTACT_TELEGRAM_ID = 4234

CODE_UNKNOWN = 0
CODE_BAD_TOKEN = 1
CODE_BAD_JSON = 30
CODE_MISSING_PARAMETER = 40
CODE_BAD_PARAMETER = 41
CODE_ACCESS_DENIED = 6
CODE_TASK_NOT_FOUND = 1000
CODE_COMMENT_NOT_FOUND = 5000
# "Employee errors" are 4000-4006; the fake says 4000 for an unknown employee (assumed, as the client).
CODE_EMPLOYEE_NOT_FOUND = 4000
CODE_DAILY_LIMIT = 22
CODE_FILE_NOT_FOUND = 7000
CODE_FILE_TOO_LARGE = 7002

# What a comment read returns when the caller names no fields (the real default is undocumented).
DEFAULT_COMMENT_FIELDS = ("id", "dateTime", "description", "owner", "task")
# Where the download redirect sends clients: the file storage, outside the API (no token).
STORAGE_PATH = "/storage/"


@dataclass(frozen=True)
class FakeComment:
    id: int
    task_number: int
    description: str
    owner_id: str
    owner_name: str
    source_id: str | None
    source_object_id: str | None
    created_at: datetime
    files: tuple[int, ...] = ()
    is_hidden: bool = False
    # How often the comment was rewritten through the API.
    updates: int = 0
    is_deleted: bool = False
    # Who the comment notifies, as the request's "recipients" said it ({"users": [...],
    # "groups": [...], "roles": [...] or "..."}); None when it named nobody.
    recipients: dict[str, Any] | None = field(default=None, hash=False)


@dataclass(frozen=True)
class FakePerson:
    """An employee ("user:N") or a contact ("contact:N") as the fake keeps it."""

    id: str
    name: str
    lastname: str = ""
    # As Planfix keeps them: text (a number for telegramId; a name or a t.me address).
    telegram_id: str | None = None
    telegram: str | None = None
    # Employees: "Active" or fired ("Inactive"); contacts are always active.
    active: bool = True
    group_id: int | None = None
    template_id: int | None = None

    @property
    def number(self) -> int:
        return int(self.id.split(":", 1)[1])


@dataclass(frozen=True)
class FakeFile:
    id: int
    name: str
    data: bytes
    # What Planfix reports as the size; tests set it above the data's length to stand for a
    # file too large to send without holding megabytes in memory.
    size: int = -1
    content_type: str = "application/octet-stream"


@dataclass
class FakeTask:
    number: int
    name: str
    description: str = ""
    comments: list[FakeComment] = field(default_factory=list)
    # template / project / assignees as the creating request sent them.
    extra: dict[str, Any] = field(default_factory=dict)
    # The task's people: "user:N"/"contact:N", and "group:N" for an employee group.
    assigner: str | None = None
    assignees: tuple[str, ...] = ()
    participants: tuple[str, ...] = ()
    auditors: tuple[str, ...] = ()
    # The task's life (``fake_planfix_tasks``): process, status, deadline ("dd-MM-yyyy[ HH:MM]").
    process_id: int = DEFAULT_PROCESS_ID
    status_id: int = STATUS_NEW
    deadline: str | None = None
    # Files of the task itself (not of a comment): ``add_task_file``.
    files: tuple[int, ...] = ()


@dataclass(frozen=True)
class WebhookDelivery:
    task_number: int
    comment_id: int
    # HTTP status of the answer; 0 when no answer came (refused, timed out).
    status: int
    body: str
    error: str | None = None
    # time.time() when the POST was started: benchmarks measure the bridge's latency from here.
    sent_at: float = 0.0


@dataclass(frozen=True)
class RecordedCall:
    method: str
    path: str
    query: dict[str, str]
    # The parsed JSON body, or None (no body, or not JSON).
    json: Any
    status: int = 0
    at: float = 0.0  # time.monotonic() when the request arrived
    # The operation of Planfix's OpenAPI document the request was for, when it was one.
    operation_id: str | None = None


@dataclass(frozen=True)
class StorageCall:
    """A request to the file storage the download redirect points at."""

    path: str
    # The Authorization header it carried, if any: the bearer token must never travel there.
    authorization: str | None
    status: int
    at: float = 0.0


class _Fail(Exception):
    """A Planfix error answer, ``{"result": "fail", "code": ..., "error": ...}``.

    ``status`` None: the status the request's operation lists for its errors (400 for most,
    500 for the list calls).
    """

    def __init__(
        self,
        code: int,
        message: str,
        *,
        status: int | None = None,
        body: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.body = body or {}
        self.headers = headers or {}


_NO_BODY = object()
_BAD_JSON = object()
# The parsed request body (or one of the two markers above), read once by the middleware.
_BODY = web.RequestKey("planfix_body", object)
_OPERATION = web.RequestKey("planfix_operation", object)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class FakePlanfix(TaskLife):
    def __init__(
        self,
        *,
        token: str,
        robot_name: str = "Bridge Robot",
        rate_per_s: float | None = None,
        rate_tolerance_s: float = 0.2,
        daily_cap: int = 100_000,
        max_file_size: int = 10 * 1024 * 1024,
        strict: bool = True,
    ) -> None:
        self._token = token
        # Strict: every request is checked against Planfix's OpenAPI document (code 30 if not).
        self._checker = _request_checker() if strict else None
        self.rate_per_s = rate_per_s
        self.rate_tolerance_s = rate_tolerance_s
        self.daily_cap = daily_cap
        self.max_file_size = max_file_size
        self._used_today = 0
        # Set by ``use_up_daily_cap``: when (monotonic) the day "ends" and the count starts over.
        self._day_ends_at: float | None = None
        self._refused_daily = 0
        self._last_accepted_at: float | None = None
        self._files: dict[int, FakeFile] = {}
        self._next_file = FIRST_FILE_ID
        # Planned answers for the next requests: an HTTP status (500...) with a Planfix error
        # code or None (a proxy's HTML page), or a delay in seconds.
        self._planned_failures: list[tuple[int, int | None]] = []
        self._planned_delays: list[float] = []
        self._held = 0  # requests being held by delay_next right now
        self._lock = threading.Lock()
        self._tasks: dict[int, FakeTask] = {}
        self._comments: dict[int, FakeComment] = {}
        self._people: dict[str, str] = {ROBOT_ID: robot_name}
        # The token's employee is the robot; employees and contacts by id ("user:N", "contact:N").
        self._employees: dict[str, FakePerson] = {ROBOT_ID: FakePerson(id=ROBOT_ID, name=robot_name)}
        self._contacts: dict[str, FakePerson] = {}
        self._next_employee = FIRST_EMPLOYEE_NUMBER
        self._next_contact = FIRST_CONTACT_NUMBER
        # The token may not write comments as another person (code 6 for any "owner").
        self._refuse_owner = False
        self._next_task = FIRST_TASK_NUMBER
        self._next_comment = FIRST_COMMENT_ID
        self._unavailable = False
        # Tasks the token's employee may not see (Planfix answers error code 6, access denied).
        self._denied_tasks: set[int] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self._queue: asyncio.Queue[tuple[str, str, int, int]] | None = None
        self._worker: asyncio.Task[None] | None = None
        self._webhook_in_flight = False
        self.base_url = ""
        self.storage_url = ""
        self.webhook_url: str | None = None
        self.fire_webhooks_for_api_comments = True
        self.fire_webhooks_for_api_task_changes = True
        self.webhook_deliveries: list[WebhookDelivery] = []
        self.calls: list[RecordedCall] = []
        self.storage_calls: list[StorageCall] = []
        # Comments deleted by a client (DELETE /comment/{id}), in order.
        self.deleted_through_api: list[int] = []
        # Download addresses handed out: token -> file id.
        self._storage_tokens: dict[str, int] = {}

    # --- lifecycle ------------------------------------------------------------------------

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._loop = asyncio.get_running_loop()
        # Uploads up to the plan's limit and a little over it (to answer 7002, not a bare 413).
        app = web.Application(middlewares=[self._middleware], client_max_size=self.max_file_size + 2**20)
        app.router.add_get("/rest/ping", self._ping)
        for suffix in ("", "/"):
            app.router.add_post("/rest/task" + suffix, self._create_task)
            app.router.add_post(r"/rest/task/{number:\d+}/comments" + suffix, self._add_comment)
        app.router.add_get(r"/rest/task/{number:\d+}", self._get_task)
        app.router.add_post(r"/rest/task/{number:\d+}", self._update_task)
        app.router.add_get(r"/rest/process/task/{id:\d+}/statuses", self._task_statuses)
        app.router.add_post("/rest/user/list", self._list_users)
        app.router.add_get(r"/rest/user/{id:(user:)?\d+}", self._get_user)
        app.router.add_post("/rest/contact/list", self._list_contacts)
        for suffix in ("", "/"):
            app.router.add_post("/rest/contact" + suffix, self._create_contact)
        app.router.add_post(r"/rest/task/{number:\d+}/comments/list", self._list_comments)
        app.router.add_get(r"/rest/comment/{id:\d+}", self._get_comment)
        app.router.add_delete(r"/rest/comment/{id:\d+}", self._delete_comment)
        app.router.add_post(r"/rest/task/{number:\d+}/comments/{id:\d+}", self._update_comment)
        for suffix in ("", "/"):
            app.router.add_post("/rest/file" + suffix, self._upload_file)
        app.router.add_get(r"/rest/file/{id:\d+}", self._get_file)
        app.router.add_get(r"/rest/file/{id:\d+}/download", self._download_file)
        app.router.add_get(STORAGE_PATH + "{token}/{name:.+}", self._storage)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        bound_port = self._runner.addresses[0][1]
        self.base_url = f"http://{host}:{bound_port}/rest/"
        self.storage_url = f"http://{host}:{bound_port}{STORAGE_PATH}"
        # Planfix may wait a while for an answer; 30 s keeps a hung receiver from blocking tests forever.
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
        self._queue = asyncio.Queue()
        self._worker = asyncio.create_task(self._webhook_worker())

    async def stop(self) -> None:
        await cancelled(self._worker)
        if self._session is not None:
            await self._session.close()
        if self._runner is not None:
            await self._runner.cleanup()

    # --- driving and observing (any thread) --------------------------------------------------

    def add_task(self, name: str, *, number: int | None = None) -> int:
        with self._lock:
            return self._add_task_locked(name, "", number)

    def task(self, number: int) -> FakeTask | None:
        with self._lock:
            task = self._tasks.get(number)
            return replace(task, comments=list(task.comments)) if task else None

    def comments(self, task_number: int) -> list[FakeComment]:
        with self._lock:
            task = self._tasks.get(task_number)
            return list(task.comments) if task else []

    def add_employee_comment(
        self,
        task_number: int,
        text_html: str,
        *,
        author_id: str = "user:7",
        author_name: str = "Olga Smirnova",
        fire_webhook: bool = True,
        hidden: bool = False,
        files: tuple[int, ...] = (),
    ) -> int:
        """A comment as if written in the Planfix UI; fires the scenario request in the background."""
        with self._lock:
            if task_number not in self._tasks:
                raise KeyError(f"no task {task_number} in the fake")
            unknown = [file_id for file_id in files if file_id not in self._files]
            if unknown:
                raise KeyError(f"no files {unknown} in the fake")
            self._people[author_id] = author_name
            comment = self._add_comment_locked(task_number, text_html, author_id, None, None, files)
            if hidden:
                comment = replace(comment, is_hidden=True)
                self._replace_comment_locked(comment)
        if fire_webhook:
            self._schedule_webhook(task_number, comment.id)
        return comment.id

    def edit_comment(
        self,
        comment_id: int,
        text_html: str,
        *,
        fire_webhook: bool = True,
        files: tuple[int, ...] | None = None,
    ) -> None:
        """Change a comment's text (and, given ``files``, its files) as if in the UI; fires the
        "comment.updated" scenario."""
        with self._lock:
            comment = replace(self._comments[comment_id], description=text_html)
            if files is not None:
                comment = replace(comment, files=files)
            self._replace_comment_locked(comment)
        if fire_webhook:
            self._schedule_webhook(comment.task_number, comment_id, "comment.updated")

    def delete_comment(self, comment_id: int, *, fire_webhook: bool = True) -> None:
        """Delete a comment as if in the UI; fires the "comment.deleted" scenario."""
        with self._lock:
            comment = replace(self._comments[comment_id], is_deleted=True)
            self._replace_comment_locked(comment)
        if fire_webhook:
            self._schedule_webhook(comment.task_number, comment_id, "comment.deleted")

    def add_file(self, name: str, data: bytes, *, size: int | None = None) -> int:
        """A file in the account's storage (as if uploaded in the UI), to attach to comments."""
        with self._lock:
            file = FakeFile(
                id=self._next_file, name=name, data=data, size=len(data) if size is None else size
            )
            self._next_file += 1
            self._files[file.id] = file
            return file.id

    def delete_file(self, file_id: int) -> None:
        """Remove a file from the account's storage, as if deleted in the UI: the comments that
        list it keep its id, and reading or downloading it answers "file not found"."""
        with self._lock:
            self._files.pop(file_id, None)

    # --- people -----------------------------------------------------------------------------

    def add_employee(
        self,
        name: str,
        *,
        telegram_id: int | str | None = None,
        telegram: str | None = None,
        active: bool = True,
        lastname: str = "",
    ) -> str:
        """An employee of the account (as if "authorize Telegram" filled their profile); "user:N"."""
        with self._lock:
            while f"user:{self._next_employee}" in self._employees:
                self._next_employee += 1
            person = FakePerson(
                id=f"user:{self._next_employee}",
                name=name,
                lastname=lastname,
                telegram_id=None if telegram_id is None else str(telegram_id),
                telegram=telegram,
                active=active,
            )
            self._employees[person.id] = person
            self._people[person.id] = _full_name(person)
            return person.id

    def set_employee_active(self, person_id: str, active: bool) -> None:
        """Fire (``active=False``) or take back an employee."""
        with self._lock:
            self._employees[person_id] = replace(self._employees[person_id], active=active)

    def set_telegram(self, person_id: str, *, telegram_id: int | str | None, telegram: str | None) -> None:
        """Change an employee's or contact's Telegram fields (as if edited in the UI)."""
        with self._lock:
            people = self._employees if person_id.startswith("user:") else self._contacts
            people[person_id] = replace(
                people[person_id],
                telegram_id=None if telegram_id is None else str(telegram_id),
                telegram=telegram,
            )

    def add_contact(
        self,
        name: str,
        *,
        telegram_id: int | str | None = None,
        telegram: str | None = None,
        lastname: str = "",
        group_id: int | None = None,
    ) -> str:
        """A contact of the account; "contact:N"."""
        with self._lock:
            return self._add_contact_locked(
                FakePerson(
                    id="",
                    name=name,
                    lastname=lastname,
                    telegram_id=None if telegram_id is None else str(telegram_id),
                    telegram=telegram,
                    group_id=group_id,
                )
            ).id

    def employee(self, person_id: str) -> FakePerson | None:
        with self._lock:
            return self._employees.get(person_id)

    def contact(self, person_id: str) -> FakePerson | None:
        with self._lock:
            return self._contacts.get(person_id)

    def contacts(self) -> list[FakePerson]:
        with self._lock:
            return sorted(self._contacts.values(), key=lambda person: person.number)

    def employees(self) -> list[FakePerson]:
        with self._lock:
            return sorted(self._employees.values(), key=lambda person: person.number)

    def set_task_people(
        self,
        number: int,
        *,
        assigner: str | None = None,
        assignees: tuple[str, ...] | list[str] = (),
        participants: tuple[str, ...] | list[str] = (),
        auditors: tuple[str, ...] | list[str] = (),
    ) -> None:
        """Name a task's people: "user:N", "contact:N", or "group:N" for an employee group."""
        with self._lock:
            task = self._tasks[number]
            task.assigner = assigner
            task.assignees = tuple(assignees)
            task.participants = tuple(participants)
            task.auditors = tuple(auditors)

    def refuse_owner(self, refuse: bool = True) -> None:
        """The token may (not) write comments as another person: with ``refuse``, a comment
        sent with an ``owner`` is answered HTTP 400, code 6, naming the owner."""
        with self._lock:
            self._refuse_owner = refuse

    def post_webhook(self, task_number: int, comment_id: int, event: str = "comment.added") -> None:
        """Fire (again) the scenario request for a comment, e.g. to test a duplicate."""
        self._schedule_webhook(task_number, comment_id, event)

    def deny_access(self, task_number: int) -> None:
        """The token's employee loses access to the task: reading it answers code 6."""
        with self._lock:
            self._denied_tasks.add(task_number)

    @contextlib.contextmanager
    def webhooks_to(self, url: str | None) -> Iterator[None]:
        """The comment scenario sends its requests to ``url`` (None: sends none) until the block
        ends, then again where it sent them before."""
        previous = self.webhook_url
        self.webhook_url = url
        try:
            yield
        finally:
            self.webhook_url = previous

    def set_unavailable(self, unavailable: bool) -> None:
        with self._lock:
            self._unavailable = unavailable

    def fail_next(self, times: int = 1, *, status: int = 500, code: int | None = None) -> None:
        """Answer the next ``times`` requests with HTTP ``status``: with ``code``, Planfix's own
        error body (``{"result": "fail", "code": code, ...}``); without, a proxy's HTML page."""
        with self._lock:
            self._planned_failures.extend([(status, code)] * times)

    def use_up_daily_cap(self, reset_after_s: float) -> None:
        """The account's day is used up now and starts over in ``reset_after_s`` (a short
        "midnight" for tests): every request meanwhile is refused with code 22 and that
        ``timeToReset``."""
        with self._lock:
            self._day_ends_at = time.monotonic() + reset_after_s

    def refused_for_daily_cap(self) -> int:
        """How many requests were refused with code 22 so far."""
        with self._lock:
            return self._refused_daily

    def delay_next(self, seconds: float, times: int = 1) -> None:
        """Hold the next ``times`` answers for ``seconds`` (to make a client time out)."""
        with self._lock:
            self._planned_delays.extend([seconds] * times)

    def held_requests(self) -> int:
        """How many requests ``delay_next`` is holding right now (a client waiting on us)."""
        with self._lock:
            return self._held

    def file(self, file_id: int) -> FakeFile | None:
        with self._lock:
            return self._files.get(file_id)

    def comment(self, comment_id: int) -> FakeComment | None:
        with self._lock:
            return self._comments.get(comment_id)

    def throttled_calls(self) -> list[RecordedCall]:
        """Requests refused for going over the per-second limit."""
        with self._lock:
            return [call for call in self.calls if call.status == 429]

    def storage_requests_with_authorization(self) -> list[StorageCall]:
        """Requests to the file storage that carried an Authorization header (none should)."""
        with self._lock:
            return [call for call in self.storage_calls if call.authorization is not None]

    def set_hidden(self, comment_id: int, hidden: bool = True) -> None:
        with self._lock:
            self._replace_comment_locked(replace(self._comments[comment_id], is_hidden=hidden))

    def tasks(self) -> list[FakeTask]:
        """Every task, by number (copies)."""
        with self._lock:
            return [replace(t, comments=list(t.comments)) for _, t in sorted(self._tasks.items())]

    # --- saving and loading (the sandbox keeps its state across restarts) ---------------------

    def snapshot(self) -> tuple[dict[str, Any], dict[str, bytes]]:
        """Tasks, comments, people and files as JSON-ready data, and the files' bytes by name.

        Task, comment and file numbers go on from where they were after a restore, so a comment
        id the bridge already saw is never given to another comment."""
        with self._lock:
            data: dict[str, Any] = {
                "next_task": self._next_task,
                "next_comment": self._next_comment,
                "next_file": self._next_file,
                "people": dict(self._people),
                "next_employee": self._next_employee,
                "next_contact": self._next_contact,
                "employees": [asdict(person) for person in self._employees.values()],
                "contacts": [asdict(person) for person in self._contacts.values()],
                "tasks": [
                    {
                        "number": task.number,
                        "name": task.name,
                        "description": task.description,
                        "extra": task.extra,
                        "assigner": task.assigner,
                        "assignees": list(task.assignees),
                        "participants": list(task.participants),
                        "auditors": list(task.auditors),
                        "process_id": task.process_id,
                        "status_id": task.status_id,
                        "deadline": task.deadline,
                        "files": list(task.files),
                        "comments": [_comment_data(comment) for comment in task.comments],
                    }
                    for task in self._tasks.values()
                ],
                "files": [
                    {"id": f.id, "name": f.name, "size": f.size, "content_type": f.content_type}
                    for f in self._files.values()
                ],
            }
            files = {str(f.id): f.data for f in self._files.values()}
        return data, files

    def restore(self, data: dict[str, Any], files: dict[str, bytes]) -> None:
        """Load what ``snapshot`` returned (before or after ``start``)."""
        with self._lock:
            self._next_task = max(self._next_task, int(data.get("next_task", FIRST_TASK_NUMBER)))
            self._next_comment = max(self._next_comment, int(data.get("next_comment", FIRST_COMMENT_ID)))
            self._next_file = max(self._next_file, int(data.get("next_file", FIRST_FILE_ID)))
            self._people.update(data.get("people", {}))
            self._next_employee = max(
                self._next_employee, int(data.get("next_employee", FIRST_EMPLOYEE_NUMBER))
            )
            self._next_contact = max(self._next_contact, int(data.get("next_contact", FIRST_CONTACT_NUMBER)))
            for saved_person in data.get("employees", []):
                person = FakePerson(**saved_person)
                self._employees[person.id] = person
            for saved_person in data.get("contacts", []):
                person = FakePerson(**saved_person)
                self._contacts[person.id] = person
            for saved in data.get("files", []):
                file = FakeFile(
                    id=int(saved["id"]),
                    name=str(saved["name"]),
                    data=files.get(str(saved["id"]), b""),
                    size=int(saved["size"]),
                    content_type=str(saved.get("content_type", "application/octet-stream")),
                )
                self._files[file.id] = file
            for saved in data.get("tasks", []):
                comments = [_comment_from_data(item) for item in saved.get("comments", [])]
                task = FakeTask(
                    number=int(saved["number"]),
                    name=str(saved["name"]),
                    description=str(saved.get("description", "")),
                    comments=comments,
                    extra=dict(saved.get("extra", {})),
                    assigner=saved.get("assigner"),
                    assignees=tuple(saved.get("assignees", ())),
                    participants=tuple(saved.get("participants", ())),
                    auditors=tuple(saved.get("auditors", ())),
                    process_id=int(saved.get("process_id", DEFAULT_PROCESS_ID)),
                    status_id=int(saved.get("status_id", STATUS_NEW)),
                    deadline=saved.get("deadline"),
                    files=tuple(int(file_id) for file_id in saved.get("files", ())),
                )
                self._tasks[task.number] = task
                self._comments.update((comment.id, comment) for comment in comments)

    # --- HTTP plumbing ----------------------------------------------------------------------

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path.startswith(STORAGE_PATH):
            # The storage is another service: no token, no budget, no planned failures.
            return await handler(request)
        arrived = time.monotonic()
        # A multipart upload is read by its handler (request.post()); anything else here, once.
        if request.content_type.startswith("multipart/"):
            request[_BODY] = _NO_BODY
        else:
            request[_BODY] = _parse_body(await request.read())
        operation = load_spec().find(request.method, request.path)
        request[_OPERATION] = operation
        with self._lock:
            unavailable = self._unavailable
            planned = self._planned_failures.pop(0) if self._planned_failures else None
            delay = self._planned_delays.pop(0) if self._planned_delays else 0.0
            self._held += 1 if delay else 0
        if delay:
            try:
                await asyncio.sleep(delay)
            finally:
                with self._lock:
                    self._held -= 1
        response: web.StreamResponse
        try:
            if planned is not None and planned[1] is not None:
                raise _Fail(planned[1], "Rest API error", status=planned[0])
            if unavailable or planned is not None:
                # An outage usually shows up as a proxy's HTML page, not as a Planfix JSON error.
                status = planned[0] if planned is not None else 503
                response = web.Response(
                    status=status,
                    text=f"<html><body>{status} Service Unavailable</body></html>",
                    content_type="text/html",
                )
            elif not self._authorized(request):
                raise _Fail(CODE_BAD_TOKEN, "Access denied, unknown token", status=401)
            else:
                self._take_budget(arrived)
                # A path no route of the fake takes (/task/abc) stays aiohttp's 404.
                if operation is not None and request.match_info.http_exception is None:
                    self._check(request, operation)
                response = await handler(request)
        except _Fail as fail:
            status = fail.status or (operation.error_status if operation is not None else 400)
            response = web.json_response(
                {"result": "fail", "code": fail.code, "error": fail.message, **fail.body},
                status=status,
                headers=fail.headers,
            )
        except web.HTTPException as error:
            self._record(request, error.status, arrived)
            raise
        with self._lock:
            response.headers["X-RateLimit-Remaining"] = str(max(0, self.daily_cap - self._used_today))
        self._record(request, response.status, arrived)
        return response

    def _check(self, request: web.Request, operation: Operation) -> None:
        """Refuse what Planfix's OpenAPI document does not allow (strict mode): code 30, or 40 for
        a required parameter left out, with the status the operation lists for its errors."""
        if self._checker is None:
            return
        body = request[_BODY]
        problems = self._checker.problems(
            operation,
            path=request.path,
            query=request.query,
            json_body=None if body is _NO_BODY or body is _BAD_JSON else body,
        )
        if problems:
            code = CODE_MISSING_PARAMETER if all(p.missing for p in problems) else CODE_BAD_JSON
            raise _Fail(code, "; ".join(str(problem) for problem in problems))

    def _take_budget(self, arrived: float) -> None:
        """Count one request against the per-second limit and the daily cap, or refuse it."""
        with self._lock:
            if self.rate_per_s is not None and self._last_accepted_at is not None:
                gap = arrived - self._last_accepted_at
                if gap < 1.0 / self.rate_per_s - self.rate_tolerance_s:
                    raise _Fail(
                        CODE_UNKNOWN,
                        "Too many requests: at most 1 request per second",
                        status=429,
                        headers={"Retry-After": "1"},
                    )
            if self._day_ends_at is not None and time.monotonic() >= self._day_ends_at:
                self._day_ends_at = None
                self._used_today = 0
            if self._used_today >= self.daily_cap or self._day_ends_at is not None:
                to_reset = (
                    max(1, round(self._day_ends_at - time.monotonic()))
                    if self._day_ends_at is not None
                    else _seconds_to_next_utc_midnight()
                )
                self._refused_daily += 1
                raise _Fail(
                    CODE_DAILY_LIMIT,
                    "Daily request limit reached",
                    status=403,
                    body={"timeToReset": to_reset},
                )
            self._last_accepted_at = arrived
            self._used_today += 1

    def _authorized(self, request: web.Request) -> bool:
        header = request.headers.get("Authorization", "")
        if header == f"Bearer {self._token}":
            return True
        # The docs allow the token as a query parameter on GET requests.
        return request.method == "GET" and request.query.get("access_token") == self._token

    def _record(self, request: web.Request, status: int, arrived: float) -> None:
        body = request.get(_BODY)
        operation = request.get(_OPERATION)
        call = RecordedCall(
            method=request.method,
            path=request.path,
            query=dict(request.query),
            json=None if body is _NO_BODY or body is _BAD_JSON else body,
            status=status,
            at=arrived,
            operation_id=operation.id if isinstance(operation, Operation) else None,
        )
        with self._lock:
            self.calls.append(call)

    # --- endpoints --------------------------------------------------------------------------

    async def _ping(self, request: web.Request) -> web.Response:
        return _success()

    async def _create_task(self, request: web.Request) -> web.Response:
        body = _json_object(request)
        name = _required_str(body, "name")
        description = _optional_str(body, "description") or ""
        extra: dict[str, Any] = {k: body[k] for k in ("template", "project", "assignees") if k in body}
        # A task made through the API is assigned by the token's employee unless it names one.
        assigner = body.get("assigner")
        with self._lock:
            number = self._add_task_locked(name, description, None)
            task = self._tasks[number]
            task.extra = extra
            task.assigner = (
                str(assigner["id"]) if isinstance(assigner, dict) and "id" in assigner else ROBOT_ID
            )
            task.assignees = _people_request(body.get("assignees"))
            task.participants = _people_request(body.get("participants"))
            task.auditors = _people_request(body.get("auditors"))
        return _success(status=201, id=number)

    async def _get_task(self, request: web.Request) -> web.Response:
        number = int(request.match_info["number"])
        with self._lock:
            task = self._tasks.get(number)
            denied = number in self._denied_tasks
        if denied:
            raise _Fail(CODE_ACCESS_DENIED, "Access denied")
        if task is None:
            raise _Fail(CODE_TASK_NOT_FOUND, f"Task {number} does not exist")
        with self._lock:
            full: dict[str, Any] = {
                "id": task.number,
                "name": task.name,
                "description": task.description,
                "isDeleted": False,
                "assignees": self._people_response_locked(task.assignees),
                "participants": self._people_response_locked(task.participants),
                "auditors": self._people_response_locked(task.auditors),
                **task_life_json(task),
                "files": [self._file_json_locked(file_id) for file_id in task.files],
            }
            if task.assigner is not None:
                full["assigner"] = {"id": task.assigner, "name": self._people.get(task.assigner, "")}
        return _success(task=_select(full, request.query.get("fields", ""), ("id", "name")))

    async def _list_users(self, request: web.Request) -> web.Response:
        body = _json_object(request, empty_ok=True)
        offset, page_size = _page(body)
        matchers = [_person_matcher(item, people="employees") for item in _filters(body)]
        only_active = body.get("onlyActive") is True
        fields = body.get("fields", "")
        with self._lock:
            found = [
                person
                for person in sorted(self._employees.values(), key=lambda p: p.number)
                if (person.active or not only_active) and all(match(person) for match in matchers)
            ]
        page = found[offset : offset + page_size]
        users = [
            _select(
                _person_json(person, employee=True), fields if isinstance(fields, str) else "", ("id", "name")
            )
            for person in page
        ]
        return _success(users=users)

    async def _get_user(self, request: web.Request) -> web.Response:
        raw = request.match_info["id"]
        person_id = raw if raw.startswith("user:") else f"user:{raw}"
        fields = request.query.get("fields", "")
        with self._lock:
            person = self._employees.get(person_id)
            if person is None:
                raise _Fail(CODE_EMPLOYEE_NOT_FOUND, f"Employee {raw} does not exist")
            rendered = _select(_person_json(person, employee=True), fields, ("id", "name"))
        return _success(user=rendered)

    async def _list_contacts(self, request: web.Request) -> web.Response:
        body = _json_object(request, empty_ok=True)
        offset, page_size = _page(body)
        matchers = [_person_matcher(item, people="contacts") for item in _filters(body)]
        fields = body.get("fields", "")
        with self._lock:
            # The fake keeps no companies: asking for them finds none.
            found = (
                []
                if body.get("isCompany") is True
                else [
                    person
                    for person in sorted(self._contacts.values(), key=lambda p: p.number)
                    if all(match(person) for match in matchers)
                ]
            )
        page = found[offset : offset + page_size]
        contacts = [
            _select(
                _person_json(person, employee=False),
                fields if isinstance(fields, str) else "",
                ("id", "name"),
            )
            for person in page
        ]
        return _success(contacts=contacts)

    async def _create_contact(self, request: web.Request) -> web.Response:
        body = _json_object(request)
        name = _required_str(body, "name")
        group = body.get("group")
        template = body.get("template")
        with self._lock:
            person = self._add_contact_locked(
                FakePerson(
                    id="",
                    name=name,
                    lastname=_optional_str(body, "lastname") or "",
                    telegram_id=_optional_str(body, "telegramId"),
                    telegram=_optional_str(body, "telegram"),
                    group_id=group.get("id") if isinstance(group, dict) else None,
                    template_id=template.get("id") if isinstance(template, dict) else None,
                )
            )
        return _success(status=201, id=person.number)

    async def _add_comment(self, request: web.Request) -> web.Response:
        number = int(request.match_info["number"])
        body = _json_object(request)
        description = _optional_str(body, "description")
        files = _file_ids(body)
        if description is None and not files:
            raise _Fail(CODE_MISSING_PARAMETER, "Required parameter 'description' is missing")
        source_id = _optional_str(body, "sourceId")
        source_object_id = _optional_str(body, "sourceObjectId")
        owner = _owner_id(body)
        owner_id = owner or ROBOT_ID
        recipients = _recipients(body)
        with self._lock:
            if owner is not None and owner != ROBOT_ID and self._refuse_owner:
                raise _Fail(
                    CODE_ACCESS_DENIED, f"Access denied: comments cannot be added on behalf of owner {owner}"
                )
            if number not in self._tasks:
                raise _Fail(CODE_TASK_NOT_FOUND, f"Task {number} does not exist")
            self._check_files_locked(files)
            comment = self._add_comment_locked(
                number, description or "", owner_id, source_id, source_object_id, files, recipients
            )
        if self.fire_webhooks_for_api_comments:
            self._schedule_webhook(number, comment.id)
        return _success(status=201, id=comment.id)

    async def _list_comments(self, request: web.Request) -> web.Response:
        number = int(request.match_info["number"])
        body = _json_object(request, empty_ok=True)
        offset = _int_param(body, "offset", 0)
        page_size = _int_param(body, "pageSize", MAX_PAGE_SIZE)
        if offset < 0 or page_size < 1:
            raise _Fail(CODE_BAD_PARAMETER, "offset must be >= 0 and pageSize >= 1")
        # Lists return at most 100 items whatever the caller asks for.
        page_size = min(page_size, MAX_PAGE_SIZE)
        # Not in the document's list request, but read: sourceObjectId shows only to its source.
        reader_source = _optional_str(body, "sourceId")
        fields = body.get("fields", "")
        order = _result_order(body)
        with self._lock:
            task = self._tasks.get(number)
            if task is None:
                raise _Fail(CODE_TASK_NOT_FOUND, f"Task {number} does not exist")
            page = _ordered(task.comments, order)[offset : offset + page_size]
            rendered = [
                self._comment_json(c, fields if isinstance(fields, str) else "", reader_source) for c in page
            ]
        return _success(comments=rendered)

    async def _get_comment(self, request: web.Request) -> web.Response:
        comment_id = int(request.match_info["id"])
        with self._lock:
            comment = self._comments.get(comment_id)
            if comment is None:
                raise _Fail(CODE_COMMENT_NOT_FOUND, f"Comment {comment_id} does not exist")
            rendered = self._comment_json(
                comment, request.query.get("fields", ""), request.query.get("sourceId")
            )
        return _success(comment=rendered)

    async def _delete_comment(self, request: web.Request) -> web.Response:
        comment_id = int(request.match_info["id"])
        with self._lock:
            comment = self._comments.get(comment_id)
            if comment is None or comment.is_deleted:
                raise _Fail(CODE_COMMENT_NOT_FOUND, f"Comment {comment_id} does not exist")
            self._replace_comment_locked(replace(comment, is_deleted=True))
            self.deleted_through_api.append(comment_id)
        # The spec answers an empty 200.
        return web.Response(status=200)

    async def _update_comment(self, request: web.Request) -> web.Response:
        number = int(request.match_info["number"])
        comment_id = int(request.match_info["id"])
        body = _json_object(request)
        description = _optional_str(body, "description")
        files = _file_ids(body) if "files" in body else None
        recipients = _recipients(body)
        with self._lock:
            comment = self._comments.get(comment_id)
            if comment is None or comment.task_number != number:
                raise _Fail(CODE_COMMENT_NOT_FOUND, f"Comment {comment_id} does not exist")
            self._check_files_locked(files or ())
            updated = replace(
                comment,
                description=comment.description if description is None else description,
                files=comment.files if files is None else files,
                recipients=comment.recipients if recipients is None else recipients,
                updates=comment.updates + 1,
            )
            self._replace_comment_locked(updated)
        return web.Response(status=200)

    async def _upload_file(self, request: web.Request) -> web.Response:
        if not request.content_type.startswith("multipart/"):
            raise _Fail(CODE_MISSING_PARAMETER, "Required parameter 'file' is missing")
        form = await request.post()
        upload = form.get("file")
        if not isinstance(upload, web.FileField):
            raise _Fail(CODE_MISSING_PARAMETER, "Required parameter 'file' is missing")
        data = upload.file.read()
        if len(data) > self.max_file_size:
            raise _Fail(CODE_FILE_TOO_LARGE, "File size exceeds the limit of your plan")
        with self._lock:
            file = FakeFile(
                id=self._next_file,
                name=upload.filename or "file",
                content_type=upload.content_type or "application/octet-stream",
                data=data,
                size=len(data),
            )
            self._next_file += 1
            self._files[file.id] = file
        return _success(id=file.id)

    async def _get_file(self, request: web.Request) -> web.Response:
        file = self._file(int(request.match_info["id"]))
        full = {"id": file.id, "name": file.name, "size": file.size}
        return _success(file=_select(full, request.query.get("fields", ""), ("id", "name")))

    async def _download_file(self, request: web.Request) -> web.Response:
        """302 to a fresh, unguessable storage address that serves the bytes without the token.

        The 302's own body is a short note, not the file: a client that does not follow the
        redirect ends up with the note (the document lists a binary body on the 302)."""
        file = self._file(int(request.match_info["id"]))
        token = secrets.token_urlsafe(24)
        with self._lock:
            self._storage_tokens[token] = file.id
        location = f"{self.storage_url}{token}/{quote(file.name, safe='')}"
        return web.Response(
            status=302,
            body=b"Found: the file is at the Location address",
            content_type="application/octet-stream",
            headers={"Location": location},
        )

    async def _storage(self, request: web.Request) -> web.Response:
        with self._lock:
            file_id = self._storage_tokens.get(request.match_info["token"])
            file = self._files.get(file_id) if file_id is not None else None
        if file is None:
            response = web.Response(status=404, text="NoSuchKey")
        else:
            response = web.Response(
                body=file.data,
                content_type=file.content_type,
                headers={"Content-Disposition": f"attachment; filename*=UTF-8''{quote(file.name)}"},
            )
        call = StorageCall(
            path=request.path,
            authorization=request.headers.get("Authorization"),
            status=response.status,
            at=time.monotonic(),
        )
        with self._lock:
            self.storage_calls.append(call)
        return response

    def _file(self, file_id: int) -> FakeFile:
        with self._lock:
            file = self._files.get(file_id)
        if file is None:
            raise _Fail(CODE_FILE_NOT_FOUND, f"File {file_id} does not exist")
        return file

    # --- state (call with the lock held) ----------------------------------------------------

    def _add_contact_locked(self, person: FakePerson) -> FakePerson:
        while f"contact:{self._next_contact}" in self._contacts:
            self._next_contact += 1
        person = replace(person, id=f"contact:{self._next_contact}")
        self._next_contact += 1
        self._contacts[person.id] = person
        self._people[person.id] = _full_name(person)
        return person

    def _people_response_locked(self, people: tuple[str, ...]) -> dict[str, Any]:
        """A PeopleResponse: users (employees and contacts) and employee groups."""
        users = [{"id": p, "name": self._people.get(p, "")} for p in people if not p.startswith("group:")]
        groups = [
            {"id": int(p.split(":", 1)[1]), "name": f"Group {p.split(':', 1)[1]}"}
            for p in people
            if p.startswith("group:")
        ]
        return {"users": users, "groups": groups}

    def _replace_comment_locked(self, comment: FakeComment) -> None:
        self._comments[comment.id] = comment
        comments = self._tasks[comment.task_number].comments
        comments[:] = [comment if c.id == comment.id else c for c in comments]

    def _check_files_locked(self, files: tuple[int, ...]) -> None:
        missing = [file_id for file_id in files if file_id not in self._files]
        if missing:
            raise _Fail(CODE_FILE_NOT_FOUND, f"File {missing[0]} does not exist")

    def _add_task_locked(self, name: str, description: str, number: int | None) -> int:
        if number is None:
            while self._next_task in self._tasks:
                self._next_task += 1
            number = self._next_task
        elif number in self._tasks:
            raise ValueError(f"task {number} already exists in the fake")
        self._tasks[number] = FakeTask(number=number, name=name, description=description)
        return number

    def _add_comment_locked(
        self,
        task_number: int,
        description: str,
        owner_id: str,
        source_id: str | None,
        source_object_id: str | None,
        files: tuple[int, ...],
        recipients: dict[str, Any] | None = None,
    ) -> FakeComment:
        comment = FakeComment(
            id=self._next_comment,
            task_number=task_number,
            description=description,
            owner_id=owner_id,
            owner_name=self._people.get(owner_id, ""),
            source_id=source_id,
            source_object_id=source_object_id,
            created_at=datetime.now(UTC),
            files=files,
            recipients=recipients,
        )
        self._next_comment += 1
        self._comments[comment.id] = comment
        self._tasks[task_number].comments.append(comment)
        return comment

    def _comment_json(self, comment: FakeComment, fields: str, reader_source: str | None) -> dict[str, Any]:
        at = comment.created_at
        full: dict[str, Any] = {
            "id": comment.id,
            "description": comment.description,
            "owner": {"id": comment.owner_id, "name": comment.owner_name},
            "task": {"id": comment.task_number},
            "dateTime": {
                "date": at.strftime("%d-%m-%Y"),
                "time": at.strftime("%H:%M"),
                "datetime": at.strftime("%Y-%m-%dT%H:%MZ"),
            },
            "isDeleted": comment.is_deleted,
            "isHidden": comment.is_hidden,
            "files": [self._file_json_locked(file_id) for file_id in comment.files],
        }
        if comment.recipients is not None:
            full["recipients"] = self._people_json_locked(comment.recipients)
        if comment.source_object_id is not None and reader_source and reader_source == comment.source_id:
            full["sourceObjectId"] = comment.source_object_id
        return _select(full, fields, DEFAULT_COMMENT_FIELDS)

    def _people_json_locked(self, recipients: dict[str, Any]) -> dict[str, Any]:
        """A PeopleResponse: the users and groups named (roles are not resolved to people)."""
        users = [
            {"id": str(user["id"]), "name": self._people.get(str(user["id"]), "")}
            for user in recipients.get("users") or []
            if isinstance(user, dict) and "id" in user
        ]
        groups = [
            {"id": group["id"]}
            for group in recipients.get("groups") or []
            if isinstance(group, dict) and "id" in group
        ]
        return {"users": users, "groups": groups}

    def _file_json_locked(self, file_id: int) -> dict[str, Any]:
        file = self._files.get(file_id)
        if file is None:  # attached through the API with an id the fake never stored
            return {"id": file_id}
        return {"id": file.id, "name": file.name, "size": file.size}

    # --- the scenario's HTTP request ----------------------------------------------------------

    def webhooks_waiting(self) -> int:
        """Scenario requests scheduled but not yet answered (or failed)."""
        queued = self._queue.qsize() if self._queue is not None else 0
        return queued + (1 if self._webhook_in_flight else 0)

    def _schedule_webhook(self, task_number: int, comment_id: int, event: str = "comment.added") -> None:
        # The URL is read now: a test that resets webhook_url afterwards still gets this send.
        url = self.webhook_url
        loop, queue = self._loop, self._queue
        if url is None or loop is None or queue is None:
            return
        job = (url, event, task_number, comment_id)
        if _running_loop() is loop:
            queue.put_nowait(job)
        else:
            asyncio.run_coroutine_threadsafe(queue.put(job), loop).result(5)

    async def _webhook_worker(self) -> None:
        assert self._queue is not None
        # One worker: Planfix sends an account's scenario requests strictly one after another.
        while True:
            url, event, task_number, comment_id = await self._queue.get()
            self._webhook_in_flight = True
            # Planfix pastes the values into the template as text, hence the quoted numbers.
            body = (
                f'{{"event":"{event}","task":"{task_number}"}}'
                if event == TASK_CHANGED_EVENT
                else f'{{"event":"{event}","task":"{task_number}","comment":"{comment_id}"}}'
            )
            status, error = 0, None
            sent_at = time.time()
            try:
                assert self._session is not None
                async with self._session.post(
                    url, data=body.encode(), headers={"Content-Type": "application/json"}
                ) as response:
                    status = response.status
                    await response.read()
            except Exception as failure:  # the worker must survive any receiver behaviour
                error = f"{type(failure).__name__}: {failure}"
            with self._lock:
                self.webhook_deliveries.append(
                    WebhookDelivery(task_number, comment_id, status, body, error, sent_at=sent_at)
                )
            self._webhook_in_flight = False


def _comment_data(comment: FakeComment) -> dict[str, Any]:
    data = asdict(comment)
    data["created_at"] = comment.created_at.isoformat()
    data["files"] = list(comment.files)
    return data


def _comment_from_data(data: dict[str, Any]) -> FakeComment:
    return FakeComment(
        **{
            **data,
            "created_at": datetime.fromisoformat(data["created_at"]),
            "files": tuple(int(file_id) for file_id in data.get("files", [])),
        }
    )


# --- request parsing helpers ----------------------------------------------------------------


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def _parse_body(raw: bytes) -> Any:
    if not raw.strip():
        return _NO_BODY
    try:
        return json.loads(raw)
    except ValueError:
        return _BAD_JSON


def _json_object(request: web.Request, *, empty_ok: bool = False) -> dict[str, Any]:
    body: Any = request[_BODY]
    if body is _NO_BODY and empty_ok:
        return {}
    if body is _NO_BODY or body is _BAD_JSON or not isinstance(body, dict):
        raise _Fail(CODE_BAD_JSON, "Request body is not a valid JSON object")
    return body


def _required_str(body: dict[str, Any], name: str) -> str:
    value = _optional_str(body, name)
    if not value:
        raise _Fail(CODE_MISSING_PARAMETER, f"Required parameter '{name}' is missing")
    return value


def _optional_str(body: dict[str, Any], name: str) -> str | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise _Fail(CODE_BAD_PARAMETER, f"Parameter '{name}' has a bad value")
    return str(value)


def _int_param(body: dict[str, Any], name: str, default: int) -> int:
    value = body.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise _Fail(CODE_BAD_PARAMETER, f"Parameter '{name}' must be an integer")
    return value


def _owner_id(body: dict[str, Any]) -> str | None:
    owner = body.get("owner")
    if owner is None:
        return None
    if not isinstance(owner, dict) or not isinstance(owner.get("id"), str):
        raise _Fail(CODE_BAD_PARAMETER, 'Parameter \'owner\' must be {"id": "user:N"}')
    owner_id: str = owner["id"]
    return owner_id


def _file_ids(body: dict[str, Any]) -> tuple[int, ...]:
    files = body.get("files")
    if files is None:
        return ()
    if not isinstance(files, list) or not all(
        isinstance(f, dict) and isinstance(f.get("id"), int) for f in files
    ):
        raise _Fail(CODE_BAD_PARAMETER, "Parameter 'files' must be [{\"id\": N}, ...]")
    return tuple(f["id"] for f in files)


def _recipients(body: dict[str, Any]) -> dict[str, Any] | None:
    """The request's "recipients" as sent (roles as an array or as one string: both are seen)."""
    recipients = body.get("recipients")
    if recipients is None:
        return None
    if not isinstance(recipients, dict):
        raise _Fail(CODE_BAD_PARAMETER, "Parameter 'recipients' must be an object")
    return recipients


def _people_request(raw: Any) -> tuple[str, ...]:
    """A PeopleRequest ({"users": [{"id": "user:5"}], "groups": [{"id": 3}]}) as ids."""
    if not isinstance(raw, dict):
        return ()
    users = [str(u["id"]) for u in raw.get("users") or () if isinstance(u, dict) and "id" in u]
    groups = [f"group:{g['id']}" for g in raw.get("groups") or () if isinstance(g, dict) and "id" in g]
    return (*users, *groups)


def _full_name(person: FakePerson) -> str:
    return " ".join(part for part in (person.name, person.lastname) if part)


def _person_json(person: FakePerson, *, employee: bool) -> dict[str, Any]:
    """A UserResponse or ContactResponse, every field the fake knows."""
    full: dict[str, Any] = {
        "id": person.number,
        "name": person.name,
        "lastname": person.lastname,
        "telegramId": person.telegram_id or "",
        "telegram": person.telegram or "",
        "isDeleted": False,
    }
    if employee:
        full["status"] = "Active" if person.active else "Inactive"
    elif person.group_id is not None:
        full["group"] = {"id": person.group_id, "name": f"Group {person.group_id}"}
    return full


def _page(body: dict[str, Any]) -> tuple[int, int]:
    offset = _int_param(body, "offset", 0)
    page_size = _int_param(body, "pageSize", MAX_PAGE_SIZE)
    if offset < 0 or page_size < 1:
        raise _Fail(CODE_BAD_PARAMETER, "offset must be >= 0 and pageSize >= 1")
    return offset, min(page_size, MAX_PAGE_SIZE)


def _filters(body: dict[str, Any]) -> list[dict[str, Any]]:
    filters = body.get("filters") or []
    if not isinstance(filters, list) or not all(isinstance(item, dict) for item in filters):
        raise _Fail(CODE_BAD_PARAMETER, "Parameter 'filters' must be an array of objects")
    return filters


def _username(value: str) -> str:
    """A Telegram username without "@" or a t.me address around it, in one case."""
    text = value.strip()
    for prefix in ("https://", "http://"):
        if text.lower().startswith(prefix):
            text = text[len(prefix) :]
    if text.lower().startswith("t.me/"):
        text = text[len("t.me/") :]
    return text.strip("/").removeprefix("@").strip().casefold()


def _person_matcher(item: dict[str, Any], *, people: str) -> Callable[[FakePerson], bool]:
    """One complex filter as a test on a person; a type or operator the fake does not simulate
    is refused (code 41), never ignored."""
    kind, operator, value = item.get("type"), item.get("operator"), item.get("value")
    simulated = {
        "employees": {FILTER_USER_TELEGRAM_ID: "telegram_id"},
        "contacts": {FILTER_CONTACT_TELEGRAM_ID: "telegram_id", FILTER_CONTACT_TELEGRAM_USERNAME: "telegram"},
    }[people]
    attribute = (
        simulated.get(int(kind)) if isinstance(kind, int | float) and not isinstance(kind, bool) else None
    )
    if attribute is None or operator not in ("equal", "notequal"):
        raise _Fail(
            CODE_BAD_PARAMETER,
            f"filter type {kind!r} with operator {operator!r} is not simulated by the fake",
        )
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise _Fail(CODE_BAD_PARAMETER, f"filter type {kind} wants a text or a number")
    if attribute == "telegram_id":
        wanted = str(value).strip()

        def equal(person: FakePerson) -> bool:
            return bool(wanted) and (person.telegram_id or "").strip() == wanted
    else:
        wanted = _username(str(value))

        def equal(person: FakePerson) -> bool:
            return bool(wanted) and _username(person.telegram or "") == wanted

    if operator == "equal":
        return equal
    return lambda person: not equal(person)


def _result_order(body: dict[str, Any]) -> list[tuple[str, bool]]:
    """``resultOrder`` as (field, descending) pairs; the document spells the key "filed", its
    example "field": both are read."""
    order = body.get("resultOrder") or []
    if not isinstance(order, list):
        raise _Fail(CODE_BAD_PARAMETER, "Parameter 'resultOrder' must be an array")
    pairs = []
    for item in order:
        name = item.get("field", item.get("filed")) if isinstance(item, dict) else None
        if name not in ("id", "dateTime"):
            raise _Fail(CODE_BAD_PARAMETER, "resultOrder sorts by id or dateTime")
        pairs.append((str(name), item.get("direction") == "Desc"))
    return pairs


def _ordered(comments: list[FakeComment], order: list[tuple[str, bool]]) -> list[FakeComment]:
    """Oldest first unless asked otherwise (the document is silent on the default: assumed)."""
    ordered = list(comments)
    # Stable sorts, least significant key first.
    for name, descending in reversed(order):
        key: Callable[[FakeComment], Any] = (
            (lambda c: c.created_at) if name == "dateTime" else (lambda c: c.id)
        )
        ordered.sort(key=key, reverse=descending)
    return ordered


def _seconds_to_next_utc_midnight() -> int:
    now = datetime.now(UTC)
    midnight = (now + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    return max(1, int((midnight - now).total_seconds()))


@functools.cache
def _request_checker() -> RequestChecker:
    # Imported here: the checker needs the dev dependencies (openapi-schema-validator), which a
    # non-strict fake can do without.
    from sandbox.planfix_spec.checker import RequestChecker

    return RequestChecker(load_spec())


def _select(full: dict[str, Any], fields: str, default: tuple[str, ...]) -> dict[str, Any]:
    wanted = {name.strip() for name in fields.split(",") if name.strip()} or set(default)
    wanted.add("id")
    return {key: value for key, value in full.items() if key in wanted}


def _success(*, status: int = 200, **payload: Any) -> web.Response:
    return web.json_response({"result": "success", **payload}, status=status)
