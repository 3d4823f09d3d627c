"""A small client for the Planfix REST API v2 over one ``httpx.AsyncClient``.

Facts it relies on (``docs`` of the Planfix REST API; see the project's reference notes):
``Authorization: Bearer <token>``; success bodies carry ``"result": "success"``; errors carry
``{"result": ..., "code": <int>, "error": <text>}`` with codes such as 1 (bad token), 22 (daily
limit), 1000 (task does not exist), 5000 (comment does not exist) and 7002 (file over the plan's
size limit). The HTTP status that goes with each code is not documented, so the *code* decides,
whatever the status. ``X-RateLimit-Remaining`` on an answer is the day's remaining requests.

What the spec (Planfix's OpenAPI document 1.3.4, checked in ``tests/test_planfix_spec.py``)
says and we follow: ``sourceId``/``sourceObjectId`` are UUIDs; ``GET /file/{id}/download``
answers 302 with a ``Location`` to the bytes; ``recipients`` decides who is notified; list
endpoints take ``resultOrder``. Errors may come as HTTP 400, 403 or 500 with a code; the code is
read before deciding whether to try again (a 500 with code 1000 is a missing task, not an outage).

Assumptions, stated where the spec is silent: ``GET /comment/{id}`` wraps the comment in a
``"comment"`` key (we also accept an unwrapped body); ``sourceObjectId`` is shown only to the
``sourceId`` that wrote it (passed as a query parameter, and in a list's body, which the spec
does not list but does not forbid); an overrun of the 1 request/second limit is HTTP 429 (any
body, perhaps ``Retry-After``) or, as public code sees from real Planfix, HTTP 403 with code 22
and a time to reset (``timeToReset``, seconds, or ``Retry-After``): both are handled.

Failures become typed errors: ``PlanfixUnavailable`` (transport, 5xx, throttling, daily cap: try
later) and ``PlanfixRejected`` with subclasses for what callers act on (``TaskNotFound``,
``CommentNotFound``, ``PlanfixAuthError``, ``FileTooLarge``).

Every request first waits for its turn in the account's shared budget (``bridge_lib.pacing``),
then is retried with exponential backoff (stamina) when the failure is retryable *and* a retry
cannot duplicate anything: reads and updates on any retryable failure; creations (task, comment,
file) only when the request certainly did not reach Planfix (connection refused) or Planfix
said to slow down. A creation that timed out is not repeated here: its caller decides (the
relay looks the comment up by ``sourceObjectId`` before posting again).

People (issue 15): employees come from ``POST /user/list`` (operation ``get-user-list``),
contacts from ``POST /contact/list`` (``get-contact-list``), filtered with the spec's complex
filters: 9126 "Employee telegramId", 4234 "Contact telegramId", 4226 "Contact telegramUsername".
The spec has **no** employee filter for a Telegram username, so that lookup reads the employee
list page by page and compares locally (one request per 100 employees). Answers carry plain
integer ids (``UserResponse.id``, ``ContactResponse.id``: ``prefixedId`` would break their type),
so the client prefixes them itself ("user:N", "contact:N"). ``telegram`` holds a username or a
``https://t.me/<name>`` address (the spec's own example writes the address): both are read.
``GET /task/{id}?fields=assigner,assignees,participants,auditors`` gives a task's people
(``PeopleResponse``: users and groups; whether a user belongs to a group is not looked up).
A comment may be written as a person (``owner``); a refusal of that is ``OwnerRefused``, so the
caller can post again as the robot.

Files: ``GET /file/{id}?fields=id,name,size`` (assumed wrapped in ``"file"``, like a task in
``"task"``) and ``GET /file/{id}/download``: a 302 whose ``Location`` is followed once, without
the bearer token (the storage host is not Planfix's API), and only to ``https`` unless the API
itself is plain ``http`` (the fakes on loopback). A 200 with the bytes is taken as well.
"""

from __future__ import annotations

import email.utils
import urllib.parse
import uuid
from collections.abc import Mapping
from datetime import UTC, date, datetime
from enum import StrEnum
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol, Self

import anyio
import httpx
import msgspec
import stamina
import structlog

from bridge_lib.aiohttp_transport import AiohttpTransport
from bridge_lib.metrics import PlanfixCallMetrics
from bridge_lib.pacing import NoPacing, Pacer, PacingUnavailable
from bridge_lib.planfix_tasks import (
    STATUS_FIELDS,
    TASK_STATE_FIELDS,
    TaskStatusInfo,
    deadline_request,
    statuses_from_json,
    task_state_from_json,
)
from contracts.events import PlanfixFile, PlanfixTaskState

log = structlog.get_logger("planfix")

# Planfix error codes the bridge acts on.
CODE_BAD_TOKEN = 1
CODE_TOKEN_INACTIVE = 2
CODE_ACCESS_DENIED = 6
CODE_DAILY_LIMIT = 22
CODE_TASK_NOT_FOUND = 1000
CODE_COMMENT_NOT_FOUND = 5000
CODE_FILE_NOT_FOUND = 7000
# The documented range 4000-4006 is "employee errors"; which one means "no such employee" is not
# documented: 4000 assumed, and a 404 is read the same way.
CODE_EMPLOYEE_NOT_FOUND = 4000
CODE_FILE_TOO_LARGE = 7002

CODE_UNKNOWN = 0
CODE_BAD_JSON = 30
# Error code ranges of the error-code page: 2000-2006 contact errors, 4000-4006 employee errors.
CONTACT_ERROR_CODES = range(2000, 2007)
EMPLOYEE_ERROR_CODES = range(4000, 4007)

# The spec's complex filter types (ComplexUserFilter, ComplexContactFilter enums).
FILTER_USER_TELEGRAM_ID = 9126
FILTER_CONTACT_TELEGRAM_USERNAME = 4226
FILTER_CONTACT_TELEGRAM_ID = 4234
USER_FIELDS = "id,name,midname,lastname,telegramId,telegram,status,isDeleted"
CONTACT_FIELDS = "id,name,midname,lastname,telegramId,telegram,isDeleted"
TASK_PEOPLE_FIELDS = "id,assigner,assignees,participants,auditors"
# Lists answer at most 100 items; a people lookup stops after this many pages (10,000 people).
_PAGE_SIZE = 100
_MAX_PAGES = 100

COMMENT_FIELDS = "id,dateTime,description,owner,task,sourceObjectId,isDeleted,isHidden,files"
FILE_FIELDS = "id,name,size"
RATE_LIMIT_HEADER = "X-RateLimit-Remaining"
# Over the daily cap without a ``timeToReset``: calls stop this long, then one tries again.
DAILY_LIMIT_PAUSE_S = 600.0
# Log the remaining daily budget when it crosses a multiple of this.
_BUDGET_LOG_STEP = 1000
_DOWNLOAD_CHUNK = 256 * 1024


class Answered(Protocol):
    """What the client reads of an answer: an ``httpx.Response`` or a transport's ``Answer``."""

    @property
    def status_code(self) -> int: ...

    @property
    def headers(self) -> Mapping[str, str]: ...

    @property
    def content(self) -> bytes: ...


class PlanfixError(Exception):
    pass


class PlanfixUnavailable(PlanfixError):
    """Planfix could not be reached or asked us to slow down; the call may succeed later."""


class PlanfixNoAnswer(PlanfixUnavailable):
    """The request was sent and no answer came (a timeout, the connection lost, a gateway's
    504): Planfix may have done it all the same."""


class PlanfixThrottled(PlanfixUnavailable):
    """Planfix refused the request for going over the per-second limit."""

    def __init__(self, message: str, *, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class DailyLimitReached(PlanfixUnavailable):
    """The account's daily request cap is used up (code 22); retrying within minutes is pointless."""

    def __init__(self, message: str, *, reset_after_s: float | None = None) -> None:
        super().__init__(message)
        # Seconds until Planfix counts again, when it said (``timeToReset``); None when not.
        self.reset_after_s = reset_after_s


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


class PersonNotFound(PlanfixRejected):
    pass


class FileTooLarge(PlanfixRejected):
    """The file is over the size the account's plan allows (code 7002)."""


class OwnerRefused(PlanfixRejected):
    """Planfix refused a comment written as ``owner`` (the token may not write as that person).

    Raised only for a comment sent with an owner, when the code is 6 (access denied), an
    employee or contact error (4000-4006, 2000-2006), or the error text names the owner.
    ``names_owner`` is True when the text said so; a bare code 6 may also mean the task takes
    no new comments, which the caller learns when it posts again without the owner.
    """

    def __init__(
        self,
        message: str,
        *,
        owner: str,
        names_owner: bool,
        code: int | None = None,
        status: int | None = None,
    ) -> None:
        super().__init__(message, code=code, status=status)
        self.owner = owner
        self.names_owner = names_owner


class _NotSent(PlanfixUnavailable):
    """The request never reached Planfix: safe to repeat even when it creates something."""


class FileNotFound(PlanfixRejected):
    pass


class FileTooLargeToDownload(PlanfixError):
    """A download went past the size the caller can use; nothing was kept."""

    def __init__(self, message: str, *, limit: int) -> None:
        super().__init__(message)
        self.limit = limit


class PlanfixTask(msgspec.Struct, frozen=True, kw_only=True):
    number: int
    name: str


# A comment's file as Planfix lists it: what the events carry of it (``contracts.events``).
PlanfixFileInfo = PlanfixFile


class PlanfixComment(msgspec.Struct, frozen=True, kw_only=True):
    id: int
    task_number: int | None
    description: str
    owner_id: str | None
    owner_name: str
    written_at: str | None = None
    source_object_id: str | None = None
    is_deleted: bool = False
    is_hidden: bool = False
    file_ids: list[int] = []
    files: tuple[PlanfixFileInfo, ...] = ()


class PersonStatus(StrEnum):
    """An employee's ``status`` (the spec's ``UserResponse.status`` enum)."""

    ACTIVE = "Active"
    # Not fired, but cannot log in to Planfix.
    ACTIVE_WITHOUT_ACCESS = "ActiveWithoutAccess"
    # Fired (deactivated).
    INACTIVE = "Inactive"


class PlanfixPerson(msgspec.Struct, frozen=True, kw_only=True):
    """An employee ("user:N") or a contact ("contact:N") with their Telegram identity.

    Not ``contracts.events.PlanfixPerson`` (an event's author: id and name only).
    """

    id: str
    name: str
    telegram_id: int | None = None
    # Without "@" or "https://t.me/", as Telegram spells it (compare with ``same_username``).
    telegram_username: str | None = None
    # Employees only; contacts have no status in the spec.
    status: PersonStatus | None = None
    is_deleted: bool = False

    @property
    def is_employee(self) -> bool:
        return self.id.startswith("user:")

    @property
    def is_active(self) -> bool:
        """Not fired and not deleted (an employee without access to Planfix still counts)."""
        return not self.is_deleted and self.status is not PersonStatus.INACTIVE


class TaskPeople(msgspec.Struct, frozen=True, kw_only=True):
    """Who a task names: people as "user:N"/"contact:N", employee groups by their ids.

    Membership of a group is not resolved (out of scope: the spec's group calls are not used),
    so a person who is a participant only through a group is not in ``participants``.
    """

    number: int
    assigner: str | None = None
    assignees: frozenset[str] = frozenset()
    participants: frozenset[str] = frozenset()
    auditors: frozenset[str] = frozenset()
    assignee_groups: frozenset[int] = frozenset()
    participant_groups: frozenset[int] = frozenset()
    auditor_groups: frozenset[int] = frozenset()

    @property
    def everyone(self) -> frozenset[str]:
        """The assigner, assignees, participants and auditors named one by one."""
        assigner = frozenset({self.assigner}) if self.assigner else frozenset()
        return assigner | self.assignees | self.participants | self.auditors


class ContactDefaults(msgspec.Struct, frozen=True, kw_only=True):
    """What every contact the bridge creates gets, from settings (all optional)."""

    group_id: int | None = None
    template_id: int | None = None

    def fields(self) -> dict[str, Any]:
        fields: dict[str, Any] = {}
        if self.group_id is not None:
            fields["group"] = {"id": self.group_id}
        if self.template_id is not None:
            fields["template"] = {"id": self.template_id}
        return fields


class RecipientRole(StrEnum):
    """The roles ``recipients.roles`` names (the spec's enum)."""

    ASSIGNEE = "assignee"
    PARTICIPANT = "participant"
    AUDITOR = "auditor"
    ASSIGNER = "assigner"


class RolesForm(StrEnum):
    # The spec types ``roles`` as one string, while its own example sends an array: both are
    # sent as configured (``PLANFIX_NOTIFY_ROLES_FORM``); the string form carries the first role.
    ARRAY = "array"
    STRING = "string"


class Recipients(msgspec.Struct, frozen=True, kw_only=True):
    """Who Planfix notifies of a comment (the spec's ``NotifiedRequest``)."""

    users: tuple[str, ...] = ()  # "user:5", "contact:9"
    roles: tuple[RecipientRole, ...] = ()
    roles_form: RolesForm = RolesForm.ARRAY

    def request(self) -> dict[str, Any] | None:
        """The ``recipients`` object, or None when nobody is to be told."""
        body: dict[str, Any] = {}
        if self.users:
            body["users"] = [{"id": user} for user in self.users]
        if self.roles:
            roles = [str(role) for role in self.roles]
            body["roles"] = roles if self.roles_form is RolesForm.ARRAY else roles[0]
        return body or None


class TaskDefaults(msgspec.Struct, frozen=True, kw_only=True):
    """What every task the bridge creates gets, from settings (all optional)."""

    template_id: int | None = None
    project_id: int | None = None
    # "user:5", "contact:9" (people) or "group:3" (employee groups).
    assignees: tuple[str, ...] = ()

    def fields(self) -> dict[str, Any]:
        fields: dict[str, Any] = {}
        if self.template_id is not None:
            fields["template"] = {"id": self.template_id}
        if self.project_id is not None:
            fields["project"] = {"id": self.project_id}
        users = [{"id": a} for a in self.assignees if not a.startswith("group:")]
        groups = [{"id": int(a.split(":", 1)[1])} for a in self.assignees if a.startswith("group:")]
        if users or groups:
            fields["assignees"] = {
                key: value for key, value in (("users", users), ("groups", groups)) if value
            }
        return fields


class CommentLister(Protocol):
    """Listing a task's comments (``PlanfixClient.list_comments``), for those who only list."""

    async def list_comments(
        self,
        task_number: int,
        *,
        source_id: str | None = None,
        offset: int = 0,
        page_size: int = 100,
        newest_first: bool = False,
    ) -> list[PlanfixComment]: ...


class PlanfixClient:
    def __init__(
        self,
        *,
        base_url: str,
        token: str,
        timeout_s: float = 15.0,
        transport: httpx.AsyncBaseTransport | None = None,
        pacer: Pacer | None = None,
        retry_attempts: int = 4,
        retry_timeout_s: float = 60.0,
        task_defaults: TaskDefaults | None = None,
        contact_defaults: ContactDefaults | None = None,
    ) -> None:
        # Counts every call by result and notes the daily budget Planfix reports; sent over
        # aiohttp unless a test passes its own transport (a third of httpx's own CPU).
        self._transport = PlanfixCallMetrics(transport or AiohttpTransport())
        self._headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
        # What httpx sends besides (the transport's ``exchange`` undoes these codings).
        self._exchange_headers = {**self._headers, "Accept-Encoding": "gzip, deflate"}
        self._json_headers = {**self._exchange_headers, "Content-Type": "application/json"}
        self._http = httpx.AsyncClient(
            base_url=base_url,
            headers=self._headers,
            timeout=httpx.Timeout(timeout_s, connect=5.0),
            transport=self._transport,
        )
        # As httpx joins a path to the base: one slash between them.
        self._base_url = str(self._http.base_url)
        self._timeouts = self._http.timeout.as_dict()
        self.pacer: Pacer = pacer or NoPacing()
        # Only an API reached over plain http (the fakes on loopback) may redirect downloads to
        # plain http; a real account's API is https and so must its storage be.
        self._plain_http_api = httpx.URL(base_url).scheme == "http"
        self._attempts = max(1, retry_attempts)
        self._retry_timeout_s = retry_timeout_s
        self._task_defaults = task_defaults or TaskDefaults()
        self._contact_defaults = contact_defaults or ContactDefaults()
        # The day's remaining requests as Planfix last reported them (None until it does).
        self.daily_budget_remaining: int | None = None

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    # --- account ----------------------------------------------------------------------------

    async def ping(self) -> None:
        """A cheap authenticated call: raises ``PlanfixAuthError`` for a bad token."""
        await self._call("GET", "ping")

    # --- tasks ------------------------------------------------------------------------------

    async def create_task(self, *, name: str, description: str = "", assigner: str | None = None) -> int:
        """A new task; ``assigner`` ("user:N") names who set it (else the token's employee)."""
        payload = {"name": name, "description": description, **self._task_defaults.fields()}
        if assigner is not None:
            payload["assigner"] = {"id": _person_id(assigner)}
        body = await self._call("POST", "task/", json=payload, creates=True)
        return int(body["id"])

    async def get_task(self, number: int) -> PlanfixTask:
        body = await self._call("GET", f"task/{number}", params={"fields": "id,name"}, not_found=TaskNotFound)
        task = body.get("task") or {}
        return PlanfixTask(number=int(task.get("id", number)), name=str(task.get("name", "")))

    async def get_task_people(self, number: int) -> TaskPeople:
        """The task's assigner, assignees, participants and auditors (``TaskNotFound`` if none)."""
        body = await self._call(
            "GET", f"task/{number}", params={"fields": TASK_PEOPLE_FIELDS}, not_found=TaskNotFound
        )
        task = body.get("task")
        return _task_people_from_json(number, task if isinstance(task, dict) else {})

    async def get_task_state(self, number: int) -> tuple[PlanfixTaskState, TaskPeople]:
        """The task as its card shows it, and its people (one ``GET /task/{id}``)."""
        body = await self._call(
            "GET", f"task/{number}", params={"fields": TASK_STATE_FIELDS}, not_found=TaskNotFound
        )
        task = body.get("task")
        raw = task if isinstance(task, dict) else {}
        return task_state_from_json(raw), _task_people_from_json(number, raw)

    async def get_task_statuses(self, process_id: int) -> list[TaskStatusInfo]:
        """The statuses of a task process (``GET /process/task/{id}/statuses``)."""
        body = await self._call(
            "GET", f"process/task/{process_id}/statuses", params={"fields": STATUS_FIELDS}
        )
        return statuses_from_json(body.get("statuses"))

    async def update_task(
        self,
        number: int,
        *,
        status_id: int | None = None,
        deadline: date | None = None,
        assignees: TaskPeople | None = None,
    ) -> bool:
        """Change a task (``POST /task/{id}``); False when Planfix queued the change (HTTP 202:
        the task is locked by a scenario or another request) instead of making it at once."""
        payload: dict[str, Any] = {}
        if status_id is not None:
            payload["status"] = {"id": status_id}
        if deadline is not None:
            payload.update(deadline_request(deadline))
        if assignees is not None:
            payload["assignees"] = {
                "users": [{"id": person} for person in sorted(assignees.assignees)],
                "groups": [{"id": group} for group in sorted(assignees.assignee_groups)],
            }
        body = await self._call("POST", f"task/{number}", json=payload, not_found=TaskNotFound)
        failures = body.get("failures")
        # The document's example gives one failure as an object, its schema a list: both are read.
        listed = failures if isinstance(failures, list) else [failures] if isinstance(failures, dict) else []
        if listed:
            raise PlanfixRejected(f"POST task/{number}: Planfix did not change {listed}")
        # The document's 202 "Accepted" has no body; its 200 has one (``failures``; Planfix's
        # answers carry ``result`` too). An empty answer is read as queued.
        return body != {}

    # --- people -----------------------------------------------------------------------------

    async def find_employees_by_telegram_id(self, telegram_id: int) -> list[PlanfixPerson]:
        """Employees whose ``telegramId`` is this Telegram user's (filter 9126), fired ones too:
        the caller decides what an inactive match means."""
        # The spec's example sends the id as a number, though the field itself is a string.
        filters = [{"type": FILTER_USER_TELEGRAM_ID, "operator": "equal", "value": telegram_id}]
        return await self._list_people("user/list", "users", "user", USER_FIELDS, filters)

    async def find_employees_by_telegram_username(self, username: str) -> list[PlanfixPerson]:
        """Employees whose ``telegram`` is this username. The spec has no employee filter for it
        (ComplexUserFilter lists only 9126, telegramId), so the whole list is read, 100 a page,
        and compared here: cache the answer."""
        wanted = normalize_username(username)
        if not wanted:
            return []
        everyone = await self.list_employees()
        return [
            person
            for person in everyone
            if person.telegram_username and same_username(person.telegram_username, wanted)
        ]

    async def list_employees(self, *, only_active: bool = False) -> list[PlanfixPerson]:
        """Every employee with their Telegram fields (one request per 100), for a directory's
        background refresh: cheaper than a lookup per person."""
        extra: dict[str, Any] = {"onlyActive": True} if only_active else {}
        return await self._list_people("user/list", "users", "user", USER_FIELDS, [], extra=extra)

    async def get_employee(self, person_id: str) -> PlanfixPerson | None:
        """One employee ("user:N") with status and Telegram fields; None when Planfix names no
        such employee (an unknown id, or an answer without one)."""
        kind, _, number = _person_id(person_id).partition(":")
        if kind != "user":
            raise ValueError(f"an employee id is 'user:N', got {person_id!r}")
        try:
            body = await self._call(
                "GET", f"user/{number}", params={"fields": USER_FIELDS}, not_found=PersonNotFound
            )
        except PersonNotFound:
            return None
        raw = body.get("user")
        return _person_from_json(raw, "user") if isinstance(raw, dict) else None

    async def find_contacts_by_telegram_id(self, telegram_id: int) -> list[PlanfixPerson]:
        """Contacts whose ``telegramId`` is this Telegram user's (filter 4234)."""
        filters = [{"type": FILTER_CONTACT_TELEGRAM_ID, "operator": "equal", "value": telegram_id}]
        return await self._list_people("contact/list", "contacts", "contact", CONTACT_FIELDS, filters)

    async def find_contacts_by_telegram_username(self, username: str) -> list[PlanfixPerson]:
        """Contacts whose ``telegram`` is this username (filter 4226, sent without "@", as the
        spec's example does)."""
        wanted = normalize_username(username)
        if not wanted:
            return []
        filters = [{"type": FILTER_CONTACT_TELEGRAM_USERNAME, "operator": "equal", "value": wanted}]
        return await self._list_people("contact/list", "contacts", "contact", CONTACT_FIELDS, filters)

    async def create_contact(
        self,
        *,
        name: str,
        telegram_id: int,
        telegram_username: str | None = None,
        lastname: str = "",
    ) -> str:
        """Create a contact for a Telegram user; its id, "contact:N".

        Sent once: a timeout is not retried here (a repeat would make a second contact); the
        caller looks the contact up by ``telegram_id`` before creating again. ``telegram`` is
        written as ``https://t.me/<username>``, the form of the spec's own example.
        """
        payload: dict[str, Any] = {
            "name": name,
            "telegramId": str(telegram_id),
            **self._contact_defaults.fields(),
        }
        if lastname:
            payload["lastname"] = lastname
        username = normalize_username(telegram_username or "")
        if username:
            payload["telegram"] = f"https://t.me/{username}"
        body = await self._call("POST", "contact/", json=payload, creates=True)
        return f"contact:{int(body['id'])}"

    async def _list_people(
        self,
        path: str,
        key: str,
        prefix: str,
        fields: str,
        filters: list[dict[str, Any]],
        *,
        extra: dict[str, Any] | None = None,
    ) -> list[PlanfixPerson]:
        people: list[PlanfixPerson] = []
        for page in range(_MAX_PAGES):
            payload: dict[str, Any] = {"offset": page * _PAGE_SIZE, "pageSize": _PAGE_SIZE, "fields": fields}
            if filters:
                payload["filters"] = filters
            payload.update(extra or {})
            body = await self._call("POST", path, json=payload)
            items = body.get(key)
            rows = [item for item in items if isinstance(item, dict)] if isinstance(items, list) else []
            people.extend(person for row in rows if (person := _person_from_json(row, prefix)))
            if len(rows) < _PAGE_SIZE:
                break
        return people

    # --- comments ---------------------------------------------------------------------------

    async def add_comment(
        self,
        *,
        task_number: int,
        description_html: str,
        source_id: str,
        source_object_id: str,
        file_ids: list[int] | None = None,
        recipients: Recipients | None = None,
        owner: str | None = None,
    ) -> int:
        """Post a comment; ``source_id`` and ``source_object_id`` must be UUIDs (the spec's
        format: Planfix refuses anything else with code 30).

        ``owner`` ("user:N" or "contact:N") writes it as that person (the spec's ``owner``);
        refused for the token: ``OwnerRefused``, and the caller posts again without it."""
        payload: dict[str, Any] = {
            "description": description_html,
            "sourceId": _uuid_text(source_id, "sourceId"),
            "sourceObjectId": _uuid_text(source_object_id, "sourceObjectId"),
        }
        if file_ids:
            payload["files"] = [{"id": file_id} for file_id in file_ids]
        notified = recipients.request() if recipients is not None else None
        if notified:
            payload["recipients"] = notified
        if owner is not None:
            payload["owner"] = {"id": _person_id(owner)}
        try:
            body = await self._call(
                "POST", f"task/{task_number}/comments/", json=payload, not_found=TaskNotFound, creates=True
            )
        except PlanfixRejected as error:
            if owner is not None and not isinstance(error, TaskNotFound | PlanfixAuthError):
                refused = _owner_refusal(error, owner)
                if refused is not None:
                    raise refused from error
            raise
        return int(body["id"])

    async def update_comment(
        self, *, task_number: int, comment_id: int, description_html: str, file_ids: list[int] | None = None
    ) -> None:
        """Replace a comment's text; ``file_ids`` given replaces its files (left out: kept)."""
        payload: dict[str, Any] = {"description": description_html}
        if file_ids is not None:
            payload["files"] = [{"id": file_id} for file_id in file_ids]
        await self._call(
            "POST", f"task/{task_number}/comments/{comment_id}", json=payload, not_found=CommentNotFound
        )

    async def get_comment(self, comment_id: int, *, source_id: str | None = None) -> PlanfixComment:
        params = {"fields": COMMENT_FIELDS}
        if source_id:
            params["sourceId"] = source_id
        body = await self._call("GET", f"comment/{comment_id}", params=params, not_found=CommentNotFound)
        raw = body.get("comment", body)
        return _comment_from_json(raw)

    async def list_comments(
        self,
        task_number: int,
        *,
        source_id: str | None = None,
        offset: int = 0,
        page_size: int = 100,
        newest_first: bool = False,
    ) -> list[PlanfixComment]:
        payload: dict[str, Any] = {
            "offset": offset,
            "pageSize": page_size,
            "typeList": "Comments",
            "fields": COMMENT_FIELDS,
        }
        if newest_first:
            # The spec's schema spells the key "filed", its example "field": the example is what
            # public clients send; the order asked for is by id, newest first.
            payload["resultOrder"] = [{"field": "id", "direction": "Desc"}]
        if source_id:
            payload["sourceId"] = source_id
        body = await self._call(
            "POST", f"task/{task_number}/comments/list", json=payload, not_found=TaskNotFound
        )
        return [_comment_from_json(raw) for raw in body.get("comments", [])]

    async def delete_comment(self, comment_id: int) -> None:
        """Delete a comment (the spec's ``DELETE /comment/{id}``, answered with an empty 200)."""
        await self._call("DELETE", f"comment/{comment_id}", not_found=CommentNotFound)

    # --- files ------------------------------------------------------------------------------

    async def upload_file(self, *, name: str, data: bytes, content_type: str | None = None) -> int:
        """Upload bytes (multipart field ``file``); the new file's id. Over the plan's limit:
        ``FileTooLarge``."""
        files = {"file": (name, data, content_type or "application/octet-stream")}
        body = await self._call("POST", "file/", files=files, creates=True)
        return int(body["id"])

    async def get_file(self, file_id: int) -> PlanfixFileInfo:
        body = await self._call(
            "GET", f"file/{file_id}", params={"fields": FILE_FIELDS}, not_found=FileNotFound
        )
        raw = body.get("file", body)
        info = _file_from_json(raw if isinstance(raw, dict) else {})
        return info or PlanfixFileInfo(id=file_id)

    async def download_file(self, file_id: int, destination: Path, *, max_bytes: int) -> int:
        """Write the file's bytes to ``destination``; the number of bytes written.

        Planfix answers with a redirect to its storage (the spec's 302); that request goes
        without the bearer token. Streams to disk, so a large file never sits in memory; past
        ``max_bytes`` it stops, deletes what it wrote and raises ``FileTooLargeToDownload``.
        """
        path = f"file/{file_id}/download"
        await self._unless_paused("GET", path)
        try:
            await self.pacer.wait_turn()
        except PacingUnavailable as error:
            raise PlanfixUnavailable(str(error)) from error
        try:
            async with self._http.stream("GET", path) as response:
                if response.is_redirect:
                    await response.aclose()
                    storage = self._storage_request(response, path)
                    stored = await self._http.send(storage, stream=True)
                    try:
                        written = await self._save_download(stored, destination, max_bytes, path)
                    finally:
                        await stored.aclose()
                else:
                    written = await self._save_download(response, destination, max_bytes, path)
        except httpx.TransportError as error:
            await anyio.Path(destination).unlink(missing_ok=True)
            raise PlanfixUnavailable(f"GET {path}: {type(error).__name__}") from error
        except DailyLimitReached as error:
            await self._pause_account(error)
            raise
        if written > max_bytes:
            await anyio.Path(destination).unlink(missing_ok=True)
            raise FileTooLargeToDownload(f"file {file_id} is larger than {max_bytes} bytes", limit=max_bytes)
        return written

    def _storage_request(self, redirect: httpx.Response, path: str) -> httpx.Request:
        """The request for the redirect's ``Location``: no token, no downgrade to plain http."""
        location = redirect.headers.get("Location")
        if not location:
            raise PlanfixRejected(f"GET {path}: HTTP {redirect.status_code} without a Location")
        target = redirect.request.url.join(location)
        if target.scheme != "https" and not (target.scheme == "http" and self._plain_http_api):
            raise PlanfixRejected(f"GET {path}: redirected to a {target.scheme!r} address, not https")
        request = self._http.build_request("GET", target)
        # The storage host is not the API: Planfix's token stays with Planfix.
        del request.headers["Authorization"]
        return request

    async def _save_download(
        self, response: httpx.Response, destination: Path, max_bytes: int, path: str
    ) -> int:
        if response.is_redirect:
            # One redirect is what the spec describes; a chain is refused, not followed.
            raise PlanfixRejected(f"GET {path}: the download redirected more than once")
        if response.status_code >= 400 or "json" in response.headers.get("content-type", ""):
            # An error answer, or a JSON file: only an error body carries a failure code.
            content = await response.aread()
            _raise_for(response, _json_or_empty(response), "GET", path, FileNotFound)
            if len(content) <= max_bytes:
                await anyio.Path(destination).write_bytes(content)
            return len(content)
        return await _stream_to(response, destination, max_bytes)

    # --- plumbing ---------------------------------------------------------------------------

    async def _call(
        self,
        method: str,
        path: str,
        *,
        json: dict[str, Any] | None = None,
        params: dict[str, str] | None = None,
        files: dict[str, tuple[str, bytes, str]] | None = None,
        not_found: type[PlanfixRejected] = PlanfixRejected,
        creates: bool = False,
    ) -> dict[str, Any]:
        def retryable(error: Exception) -> bool | float:
            if isinstance(error, DailyLimitReached):
                return False  # hours, not seconds: the caller waits for ``reset_after_s``
            if isinstance(error, PlanfixThrottled):
                return error.retry_after_s if error.retry_after_s else True
            if creates:
                return isinstance(error, _NotSent)
            return isinstance(error, PlanfixUnavailable)

        async for attempt in stamina.retry_context(
            on=retryable,
            attempts=self._attempts,
            timeout=self._retry_timeout_s,
            wait_initial=0.5,
            wait_max=10.0,
        ):
            with attempt:
                return await self._once(
                    method, path, json=json, params=params, files=files, not_found=not_found
                )
        raise AssertionError("unreachable: stamina re-raises the last error")  # pragma: no cover

    async def _once(
        self,
        method: str,
        path: str,
        *,
        json: dict[str, Any] | None,
        params: dict[str, str] | None,
        files: dict[str, tuple[str, bytes, str]] | None,
        not_found: type[PlanfixRejected],
    ) -> dict[str, Any]:
        await self._unless_paused(method, path)
        try:
            await self.pacer.wait_turn()
        except PacingUnavailable as error:
            raise _NotSent(str(error)) from error
        try:
            response = await self._send(method, path, json=json, params=params, files=files)
        except (httpx.ConnectError, httpx.ConnectTimeout) as error:
            raise _NotSent(f"{method} {path}: {type(error).__name__}") from error
        except httpx.TransportError as error:
            raise PlanfixNoAnswer(f"{method} {path}: {type(error).__name__}") from error
        self._note_budget(response)
        body = _json_or_empty(response)
        try:
            _raise_for(response, body, method, path, not_found)
        except DailyLimitReached as error:
            await self._pause_account(error)
            raise
        return body

    async def _send(
        self,
        method: str,
        path: str,
        *,
        json: dict[str, Any] | None,
        params: dict[str, str] | None,
        files: dict[str, tuple[str, bytes, str]] | None,
    ) -> Answered:
        """A call through the transport's ``exchange`` when it has one (no httpx objects: they
        cost more client CPU than the exchange itself), else as an ``httpx.Request``."""
        if files is not None or not self._transport.exchanging:
            request = self._http.build_request(method, path, json=json, params=params, files=files)
            return await self._exchange(request)
        url = self._base_url + path.lstrip("/")
        if params:
            url += "?" + urllib.parse.urlencode(params)
        return await self._transport.exchange(
            method,
            url,
            path=path,
            headers=self._exchange_headers if json is None else self._json_headers,
            # What httpx would send: compact UTF-8 JSON.
            body=None if json is None else msgspec.json.encode(json),
            timeouts=self._timeouts,
        )

    async def _exchange(self, request: httpx.Request) -> httpx.Response:
        """An API call straight through the transport, its answer read whole. ``AsyncClient.send``
        would add auth, redirect and cookie handling the API's calls have no use for (no cookies,
        no redirects but a download's, which goes through the client): a fifth of the relay's CPU
        per comment."""
        response = await self._transport.handle_async_request(request)
        response.request = request
        try:
            await response.aread()
        finally:
            await response.aclose()
        return response

    async def _unless_paused(self, method: str, path: str) -> None:
        """Over the daily cap the account's calls stop until Planfix counts again: raise
        ``DailyLimitReached`` without sending (and without spending) anything."""
        paused_for = getattr(self.pacer, "paused_for", None)
        if paused_for is None:
            return
        remaining = await paused_for()
        if remaining > 0:
            raise DailyLimitReached(
                f"{method} {path}: not sent, the account's daily request limit is used up "
                f"for {round(remaining)} s more",
                reset_after_s=remaining,
            )

    async def _pause_account(self, error: DailyLimitReached) -> None:
        pause = getattr(self.pacer, "pause", None)
        if pause is None:
            return
        seconds = error.reset_after_s if error.reset_after_s is not None else DAILY_LIMIT_PAUSE_S
        log.warning("planfix_daily_limit_reached", pause_s=round(seconds), hint="calls resume then")
        await pause(seconds)

    def _note_budget(self, response: Answered) -> None:
        raw = response.headers.get(RATE_LIMIT_HEADER)
        if raw is None or not raw.strip().isdigit():
            return
        remaining = int(raw.strip())
        previous = self.daily_budget_remaining
        self.daily_budget_remaining = remaining
        if previous is None or previous // _BUDGET_LOG_STEP != remaining // _BUDGET_LOG_STEP:
            log.info("planfix_daily_budget", remaining=remaining)


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
    response: Answered, body: dict[str, Any], method: str, path: str, not_found: type[PlanfixRejected]
) -> None:
    """Raise the typed error an answer stands for; return when it is a success.

    The code decides before the status: Planfix answers errors as 400, 403 or 500 (the spec
    lists 500 with code 1000 for a missing task), so only a failure with no definite code
    (none, or 0 "unknown") at 5xx counts as Planfix being away.
    """
    code = body.get("code") if isinstance(body.get("code"), int) else None
    where = f"{method} {path}: HTTP {response.status_code}"
    if response.status_code == 429:
        raise PlanfixThrottled(
            f"{where} {body.get('error', '')}".strip(), retry_after_s=_retry_after(response)
        )
    if code == CODE_DAILY_LIMIT:
        raise DailyLimitReached(
            f"{where}, code 22: the account's request limit is used up",
            reset_after_s=_time_to_reset(body) or _retry_after(response),
        )
    if response.status_code == 504 and code is None:
        raise PlanfixNoAnswer(f"{where}: a gateway in front of Planfix gave up waiting")
    if response.status_code >= 500 and code in (None, CODE_UNKNOWN):
        raise PlanfixUnavailable(f"{where} {body.get('error', '')}".strip())
    failed = response.status_code >= 400 or (body.get("result") not in (None, "success") and code is not None)
    if not failed:
        return
    message = f"{where}, code {code}: {body.get('error', '')}"
    if code in (CODE_BAD_TOKEN, CODE_TOKEN_INACTIVE) or response.status_code == 401:
        raise PlanfixAuthError(message, code=code, status=response.status_code)
    if code == CODE_FILE_TOO_LARGE or response.status_code == 413:
        raise FileTooLarge(message, code=code, status=response.status_code)
    if (
        code in (CODE_TASK_NOT_FOUND, CODE_COMMENT_NOT_FOUND, CODE_FILE_NOT_FOUND, CODE_EMPLOYEE_NOT_FOUND)
        or response.status_code == 404
    ):
        raise not_found(message, code=code, status=response.status_code)
    raise PlanfixRejected(message, code=code, status=response.status_code)


def _time_to_reset(body: dict[str, Any]) -> float | None:
    """Seconds until the limit resets, as the error body says (field name assumed)."""
    for name in ("timeToReset", "time_to_reset"):
        value = body.get(name)
        if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:
            return float(value)
    return None


def _owner_refusal(error: PlanfixRejected, owner: str) -> OwnerRefused | None:
    """The ``OwnerRefused`` a refused comment with an owner stands for, or None when the refusal
    is about something else (a bad file, a bad format)."""
    names_owner = "owner" in str(error).lower()
    code = error.code
    by_code = code == CODE_ACCESS_DENIED or (
        code is not None and (code in CONTACT_ERROR_CODES or code in EMPLOYEE_ERROR_CODES)
    )
    if not (names_owner or by_code):
        return None
    return OwnerRefused(str(error), owner=owner, names_owner=names_owner, code=code, status=error.status)


def _person_id(value: str) -> str:
    """``value`` as a prefixed person id ("user:5", "contact:9"); a ValueError otherwise."""
    kind, _, number = value.partition(":")
    if kind not in ("user", "contact") or not number.isdigit():
        raise ValueError(f"a Planfix person id is 'user:N' or 'contact:N', got {value!r}")
    return value


def normalize_username(value: str) -> str:
    """A Telegram username as stored anywhere ("@Ivan", "https://t.me/Ivan", "t.me/Ivan",
    "Ivan") without its decoration; "" when nothing is left."""
    text = value.strip()
    for prefix in ("https://", "http://"):
        if text.lower().startswith(prefix):
            text = text[len(prefix) :]
    for host in ("www.t.me/", "t.me/", "telegram.me/"):
        if text.lower().startswith(host):
            text = text[len(host) :]
    return text.strip("/").removeprefix("@").strip()


def same_username(left: str, right: str) -> bool:
    """Telegram usernames are case-insensitive."""
    a, b = normalize_username(left), normalize_username(right)
    return bool(a) and a.casefold() == b.casefold()


def _person_from_json(raw: dict[str, Any], prefix: str) -> PlanfixPerson | None:
    """A ``UserResponse``/``ContactResponse`` as a person; None without a usable id."""
    raw_id = raw.get("id")
    if isinstance(raw_id, bool):
        return None
    if isinstance(raw_id, int):
        person_id = f"{prefix}:{raw_id}"
    elif isinstance(raw_id, str) and raw_id.startswith(f"{prefix}:"):
        person_id = raw_id  # asked with prefixedId, or a Planfix that prefixes anyway
    elif isinstance(raw_id, str) and raw_id.isdigit():
        person_id = f"{prefix}:{raw_id}"
    else:
        return None
    name = " ".join(
        str(part).strip() for part in (raw.get("name"), raw.get("midname"), raw.get("lastname")) if part
    )
    telegram_id = str(raw.get("telegramId") or "").strip()
    username = normalize_username(str(raw.get("telegram") or ""))
    status = raw.get("status")
    return PlanfixPerson(
        id=person_id,
        name=name.strip(),
        telegram_id=int(telegram_id) if telegram_id.lstrip("-").isdigit() else None,
        telegram_username=username or None,
        status=_person_status(status),
        is_deleted=raw.get("isDeleted") is True,
    )


def _person_status(raw: Any) -> PersonStatus | None:
    """The spec's status, or None (a contact, or a value a later Planfix may add)."""
    try:
        return PersonStatus(raw) if isinstance(raw, str) else None
    except ValueError:
        return None


def _task_people_from_json(number: int, raw: dict[str, Any]) -> TaskPeople:
    def users(field: str) -> frozenset[str]:
        people = raw.get(field)
        listed = people.get("users") if isinstance(people, dict) else None
        return frozenset(
            str(user["id"]) for user in listed or () if isinstance(user, dict) and user.get("id") is not None
        )

    def groups(field: str) -> frozenset[int]:
        people = raw.get(field)
        listed = people.get("groups") if isinstance(people, dict) else None
        return frozenset(
            int(group["id"])
            for group in listed or ()
            if isinstance(group, dict)
            and isinstance(group.get("id"), int)
            and not isinstance(group["id"], bool)
        )

    assigner = raw.get("assigner")
    return TaskPeople(
        number=number,
        assigner=str(assigner["id"]) if isinstance(assigner, dict) and assigner.get("id") else None,
        assignees=users("assignees"),
        participants=users("participants"),
        auditors=users("auditors"),
        assignee_groups=groups("assignees"),
        participant_groups=groups("participants"),
        auditor_groups=groups("auditors"),
    )


def _uuid_text(value: str, field: str) -> str:
    """``value`` as the spec's ``format: uuid``; a ValueError naming the field otherwise."""
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise ValueError(f"{field} must be a UUID (Planfix refuses anything else), got {value!r}") from None


def _retry_after(response: Answered) -> float | None:
    raw = response.headers.get("Retry-After")
    if not raw:
        return None
    try:
        return max(0.0, float(raw))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        return None
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _json_or_empty(response: Answered) -> dict[str, Any]:
    if not response.content:
        return {}
    try:
        body = msgspec.json.decode(response.content)
    except msgspec.DecodeError:
        return {}
    return body if isinstance(body, dict) else {}


def _comment_from_json(raw: dict[str, Any]) -> PlanfixComment:
    owner = raw.get("owner") or {}
    task = raw.get("task") or {}
    written = raw.get("dateTime")
    files = raw.get("files") or []
    return PlanfixComment(
        id=int(raw["id"]),
        task_number=int(task["id"]) if task.get("id") is not None else None,
        description=str(raw.get("description") or ""),
        owner_id=str(owner["id"]) if owner.get("id") is not None else None,
        owner_name=str(owner.get("name") or ""),
        written_at=str(written.get("datetime")) if isinstance(written, dict) else None,
        source_object_id=raw.get("sourceObjectId") or None,
        is_deleted=bool(raw.get("isDeleted", False)),
        is_hidden=bool(raw.get("isHidden", False)),
        file_ids=[int(f["id"]) for f in files if isinstance(f, dict) and isinstance(f.get("id"), int)],
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
