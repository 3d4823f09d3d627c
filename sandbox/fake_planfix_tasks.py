"""The fake Planfix's task life (issue 18): statuses of a process, the deadline, changing a task
(``POST /task/{id}``) and the "task changed" scenario's request.

A mixin of ``FakePlanfix``: it works on the fake's tasks under the fake's lock.

Assumptions where Planfix's OpenAPI document is silent:

* every task belongs to process 1, whose statuses are Planfix's usual ones: 1 "New" and 2 "In
  progress" (active), 3 "Completed" ("Завершенная") and 7 "Cancelled" ("Отмененная"), both
  inactive (``isActive: false``); a task starts "New";
* ``GET /task/{id}`` shows ``status`` as ``{"id", "name", "isActive"}`` (``TaskStatus``) and the
  deadline as ``endDateTime`` ``{"date": "dd-MM-yyyy"[, "time"], "datetime"}`` with
  ``hasEndDate``;
* ``POST /task/{id}`` with a status its process does not have answers 400, code 1002 (task
  update error); a change answers 200 ``{"result": "success"}`` (the document's 200 lists
  ``failures`` only); the deadline is read from ``endDateTime`` as an object (``date``,
  optional ``time``) or as the string ``"dd-MM-yyyy HH:MM:SS"`` (both are the document's
  examples);
* a change made through the API fires the "task changed" scenario like any other change (the
  scenario's request: ``{"event": "task.changed", "task": "<number>"}``), unless
  ``fire_webhooks_for_api_task_changes`` is False.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aiohttp import web

if TYPE_CHECKING:
    from sandbox.fake_planfix import FakeTask

CODE_TASK_UPDATE_FAILED = 1002
DEFAULT_PROCESS_ID = 1
TASK_CHANGED_EVENT = "task.changed"
_DATE = re.compile(r"(\d{2})-(\d{2})-(\d{4})")
_DATE_STRING = re.compile(r"(\d{2}-\d{2}-\d{4})(?: (\d{2}:\d{2})(?::\d{2})?)?")


@dataclass(frozen=True)
class FakeStatus:
    id: int
    name: str
    is_active: bool
    ru: str


PROCESS_STATUSES: dict[int, tuple[FakeStatus, ...]] = {
    DEFAULT_PROCESS_ID: (
        FakeStatus(1, "New", True, "Новая"),
        FakeStatus(2, "In progress", True, "В работе"),
        FakeStatus(3, "Completed", False, "Завершенная"),
        FakeStatus(7, "Cancelled", False, "Отмененная"),
    )
}
STATUS_NEW, STATUS_IN_PROGRESS, STATUS_COMPLETED, STATUS_CANCELLED = 1, 2, 3, 7


def status_json(status: FakeStatus) -> dict[str, Any]:
    return {
        "id": status.id,
        "name": status.name,
        "isActive": status.is_active,
        "texts": [{"lang": "Ru", "name": status.ru}, {"lang": "En", "name": status.name}],
    }


def status_of(process_id: int, status_id: int) -> FakeStatus | None:
    return next((s for s in PROCESS_STATUSES.get(process_id, ()) if s.id == status_id), None)


def task_life_json(task: FakeTask) -> dict[str, Any]:
    """The task-life fields of ``GET /task/{id}`` (selected by ``fields`` afterwards)."""
    status = status_of(task.process_id, task.status_id)
    full: dict[str, Any] = {"processId": task.process_id, "hasEndDate": task.deadline is not None}
    if status is not None:
        full["status"] = {"id": status.id, "name": status.name, "isActive": status.is_active}
    if task.deadline is not None:
        day, _, time = task.deadline.partition(" ")
        d, m, y = day.split("-")
        point = {"date": day, "datetime": f"{y}-{m}-{d}T{time or '00:00'}Z"}
        if time:
            point["time"] = time
        full["endDateTime"] = point
    return full


class TaskLife:
    """Mixed into ``FakePlanfix``; these attributes are the fake's own."""

    _lock: threading.Lock
    _tasks: dict[int, FakeTask]
    fire_webhooks_for_api_task_changes: bool

    def _schedule_webhook(self, task_number: int, comment_id: int, event: str = "comment.added") -> None:
        raise NotImplementedError

    # --- driving (tests, the sandbox page) ----------------------------------------------------

    def set_task_status(self, number: int, status_id: int, *, fire_webhook: bool = True) -> None:
        """Someone changed the task's status in Planfix (and the scenario fires)."""
        with self._lock:
            task = self._tasks[number]
            if status_of(task.process_id, status_id) is None:
                raise ValueError(f"process {task.process_id} has no status {status_id}")
            task.status_id = status_id
        if fire_webhook:
            self.post_task_webhook(number)

    def set_task_deadline(self, number: int, deadline: str | None, *, fire_webhook: bool = True) -> None:
        """``deadline`` as Planfix writes it, ``dd-MM-yyyy`` with an optional `` HH:MM``."""
        with self._lock:
            self._tasks[number].deadline = deadline
        if fire_webhook:
            self.post_task_webhook(number)

    def add_task_file(self, number: int, name: str, data: bytes, *, fire_webhook: bool = True) -> int:
        """Someone attached a file to the task itself (not to a comment) in Planfix."""
        file_id = self.add_file(name, data)
        with self._lock:
            task = self._tasks[number]
            task.files = (*task.files, file_id)
        if fire_webhook:
            self.post_task_webhook(number)
        return file_id

    def add_file(self, name: str, data: bytes, *, size: int | None = None) -> int:
        raise NotImplementedError

    def post_task_webhook(self, number: int) -> None:
        """Fire (again) the "task changed" scenario's request for a task."""
        self._schedule_webhook(number, 0, TASK_CHANGED_EVENT)

    # --- endpoints ----------------------------------------------------------------------------

    async def _task_statuses(self, request: web.Request) -> web.Response:
        from sandbox.fake_planfix import _Fail, _select, _success

        process_id = int(request.match_info["id"])
        statuses = PROCESS_STATUSES.get(process_id)
        if statuses is None:
            raise _Fail(CODE_TASK_UPDATE_FAILED, f"Process {process_id} does not exist")
        fields = request.query.get("fields", "")
        default = ("id", "name", "color", "isActive", "hasDeadline", "isAppliedIndividually", "texts")
        return _success(statuses=[_select(status_json(s), fields, default) for s in statuses])

    async def _update_task(self, request: web.Request) -> web.Response:
        from sandbox.fake_planfix import (
            CODE_ACCESS_DENIED,
            CODE_BAD_PARAMETER,
            CODE_TASK_NOT_FOUND,
            _Fail,
            _json_object,
            _people_request,
            _success,
        )

        number = int(request.match_info["number"])
        body = _json_object(request)
        with self._lock:
            task = self._tasks.get(number)
            denied = number in getattr(self, "_denied_tasks", set())
            if denied:
                raise _Fail(CODE_ACCESS_DENIED, "Access denied")
            if task is None:
                raise _Fail(CODE_TASK_NOT_FOUND, f"Task for update not found by id {number}", status=404)
            changed = False
            status = body.get("status")
            if isinstance(status, dict) and "id" in status:
                if status_of(task.process_id, int(status["id"])) is None:
                    raise _Fail(
                        CODE_TASK_UPDATE_FAILED, f"Status {status['id']} is not in the task's process"
                    )
                changed |= task.status_id != int(status["id"])
                task.status_id = int(status["id"])
            if "endDateTime" in body:
                deadline = _deadline(body["endDateTime"])
                if deadline is None:
                    raise _Fail(CODE_BAD_PARAMETER, "endDateTime: not a date")
                changed |= task.deadline != deadline
                task.deadline = deadline
            if body.get("hasEndDate") is False:
                changed |= task.deadline is not None
                task.deadline = None
            if "assignees" in body:
                assignees = _people_request(body["assignees"])
                changed |= set(task.assignees) != set(assignees)
                task.assignees = assignees
            if "name" in body and isinstance(body["name"], str):
                changed |= task.name != body["name"]
                task.name = body["name"]
        if changed and self.fire_webhooks_for_api_task_changes:
            self.post_task_webhook(number)
        return _success()


def _deadline(raw: Any) -> str | None:
    if isinstance(raw, dict):
        day = str(raw.get("date") or "")
        if not _DATE.fullmatch(day):
            return None
        time = str(raw.get("time") or "")
        return f"{day} {time}" if re.fullmatch(r"\d{2}:\d{2}", time) else day
    if isinstance(raw, str) and (found := _DATE_STRING.fullmatch(raw.strip())):
        return f"{found[1]} {found[2]}" if found[2] and found[2] != "00:00" else found[1]
    return None
