"""A task's last known state: the last event on its ``planfix.task.changed.<task>`` subject.

The planfix gateway writes that subject (one writer) and reads it back before storing a change,
so a repeated notice that finds the same state stores nothing; the relay reads it to draw a
card for a group bound to a task whose state is already known. One direct read by subject,
no fold and no database.
"""

from __future__ import annotations

from typing import Any

import msgspec

from bridge_lib.last_event import last_event
from contracts.events import PlanfixTaskStateChanged
from contracts.subjects import PLANFIX_STREAM, planfix_task_changed


class KnownState(msgspec.Struct, frozen=True, kw_only=True):
    event: PlanfixTaskStateChanged
    # The stream sequence of that event: a newer card never gives way to an older one.
    seq: int


async def last_task_state(js: Any, task_number: int) -> KnownState | None:
    """The task's last stored state, or None when none is stored (or it aged out of the stream)."""
    found = await last_event(js, PLANFIX_STREAM.name, planfix_task_changed(task_number))
    if found is None or not isinstance(found.event, PlanfixTaskStateChanged):
        return None
    return KnownState(event=found.event, seq=int(found.message.seq))
