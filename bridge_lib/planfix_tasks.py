"""A task's state and its process's statuses as Planfix's REST API gives them (issue 18).

Pure conversions between Planfix's JSON (``TaskResponse``, ``TaskStatus``, ``TimePoint`` of the
OpenAPI document 1.3.4) and what the bridge keeps; ``PlanfixClient`` makes the calls.
"""

from __future__ import annotations

import re
from datetime import date
from typing import Any

import msgspec

from contracts.events import PlanfixFile, PlanfixPerson, PlanfixTaskState

# What the card and the change lines need, and the people the command policy looks at.
TASK_STATE_FIELDS = (
    "id,name,status,processId,assigner,assignees,participants,auditors,endDateTime,hasEndDate,isDeleted,files"
)
STATUS_FIELDS = "id,name,isActive,texts"

_PLANFIX_DATE = re.compile(r"(\d{2})-(\d{2})-(\d{4})")
_ISO_DATETIME = re.compile(r"(\d{4})-(\d{2})-(\d{2})(?:T(\d{2}):(\d{2}))?")
_TIME = re.compile(r"\d{2}:\d{2}")


class TaskStatusInfo(msgspec.Struct, frozen=True, kw_only=True):
    """One status of a task process (``GET /process/task/{id}/statuses``)."""

    id: int
    name: str
    is_active: bool | None = None
    # The status's name in each language Planfix keeps (``texts``): "Завершенная", "Completed".
    names: tuple[str, ...] = ()


def task_state_from_json(raw: dict[str, Any]) -> PlanfixTaskState:
    status = raw.get("status") if isinstance(raw.get("status"), dict) else {}
    assert isinstance(status, dict)
    return PlanfixTaskState(
        name=str(raw.get("name") or ""),
        status_id=_int(status.get("id")),
        status_name=str(status.get("name") or ""),
        status_active=status["isActive"] if isinstance(status.get("isActive"), bool) else None,
        process_id=_int(raw.get("processId")),
        assigner=_person(raw.get("assigner")),
        assignees=_people(raw.get("assignees")),
        deadline=None if raw.get("hasEndDate") is False else deadline_from_json(raw.get("endDateTime")),
        is_deleted=raw.get("isDeleted") is True,
        files=_files(raw.get("files")),
    )


def deadline_from_json(raw: Any) -> str | None:
    """A ``TimePoint`` as ``YYYY-MM-DD`` (``HH:MM`` after it when it has a time).

    The document gives three forms (``date`` dd-MM-yyyy, ``time`` HH:mm, ``datetime`` ISO);
    ``date`` wins, ``datetime`` is read when it is the only one.
    """
    if not isinstance(raw, dict):
        return None
    day = _PLANFIX_DATE.fullmatch(str(raw.get("date") or "").strip())
    if day is not None:
        text = f"{day[3]}-{day[2]}-{day[1]}"
        time = str(raw.get("time") or "").strip()
        return f"{text} {time}" if _TIME.fullmatch(time) else text
    iso = _ISO_DATETIME.match(str(raw.get("datetime") or "").strip())
    if iso is not None:
        text = f"{iso[1]}-{iso[2]}-{iso[3]}"
        return f"{text} {iso[4]}:{iso[5]}" if iso[4] else text
    return None


def deadline_request(day: date) -> dict[str, Any]:
    """The ``endDateTime`` of a ``TaskUpdateRequest`` (the document's "dates from an object")."""
    return {"endDateTime": {"date": day.strftime("%d-%m-%Y")}}


def statuses_from_json(raw: Any) -> list[TaskStatusInfo]:
    found: list[TaskStatusInfo] = []
    for item in raw if isinstance(raw, list) else ():
        if not isinstance(item, dict) or _int(item.get("id")) is None:
            continue
        texts = item.get("texts") if isinstance(item.get("texts"), list) else []
        names = tuple(
            str(text["name"]) for text in texts or () if isinstance(text, dict) and text.get("name")
        )
        found.append(
            TaskStatusInfo(
                id=int(item["id"]),
                name=str(item.get("name") or ""),
                is_active=item["isActive"] if isinstance(item.get("isActive"), bool) else None,
                names=names,
            )
        )
    return found


def _int(value: Any) -> int | None:
    # Status ids have been seen as prefixed strings ("x:123"); the number is what counts.
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.rsplit(":", 1)[-1].isdigit():
        return int(value.rsplit(":", 1)[-1])
    return None


def _files(raw: Any) -> list[PlanfixFile]:
    found = [
        PlanfixFile(id=item["id"], name=str(item.get("name") or ""), size=_int(item.get("size")))
        for item in (raw if isinstance(raw, list) else ())
        if isinstance(item, dict) and isinstance(item.get("id"), int) and not isinstance(item["id"], bool)
    ]
    return sorted(found, key=lambda file: file.id)


def _person(raw: Any) -> PlanfixPerson | None:
    if not isinstance(raw, dict) or raw.get("id") is None:
        return None
    return PlanfixPerson(id=str(raw["id"]), name=str(raw.get("name") or ""))


def _people(raw: Any) -> list[PlanfixPerson]:
    if not isinstance(raw, dict):
        return []
    people = [p for user in raw.get("users") or () if (p := _person(user)) is not None]
    groups = [
        PlanfixPerson(id=f"group:{group['id']}", name=str(group.get("name") or ""))
        for group in raw.get("groups") or ()
        if isinstance(group, dict) and group.get("id") is not None
    ]
    # Planfix's order is not a change: the same people in another order are the same state.
    return sorted(people + groups, key=lambda person: person.id or "")
