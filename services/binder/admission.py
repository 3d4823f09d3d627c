"""May the bot stay in a group it was just added to (``TELEGRAM_LEAVE_UNKNOWN_GROUPS=true``)?

A group is known when it is bound already (the bot re-added) or on the operator's allow-list;
otherwise the person who added the bot must be able to bind there under the bind policy: a
linked employee (``participants``, ``employees``), anyone (``admins``). A Planfix outage while
looking the person up admits the group: binding stays guarded by the bind policy anyway.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import structlog

from bridge_lib.eventbus import TransientFailure
from contracts.bindings import Binding
from contracts.events import AdmitGroup, GroupAdmissionDecided, envelope_after
from contracts.people import Person
from services.binder.bind_policy import BindPolicy
from services.binder.handlers import BindAccess
from services.binder.people import Requesters

log = structlog.get_logger("binder.admission")


def decide_admission(
    *, bound: bool, access: BindAccess, chat_id: int, person: Person | None
) -> tuple[bool, str]:
    if bound:
        return True, "known_group"
    if access.allowed_chats:
        return (True, "allowed_chat") if chat_id in access.allowed_chats else (False, "chat_not_allowed")
    if access.policy is BindPolicy.ADMINS:
        return True, "policy_admins"
    if person is None:
        return False, "not_linked"
    if not person.is_employee:
        return False, "not_an_employee"
    return True, "linked_employee"


class ChatBindings(Protocol):
    async def bindings_of_chat(self, chat_id: int) -> list[Binding]: ...


@dataclass(frozen=True, kw_only=True, eq=False)
class Admission:
    store: ChatBindings
    requesters: Requesters
    access: BindAccess

    async def handle(self, command: AdmitGroup) -> GroupAdmissionDecided:
        bound = bool(await self.store.bindings_of_chat(command.chat_id))
        person = None
        try:
            if not bound and command.added_by is not None and not self.access.allowed_chats:
                person = await self.requesters.person_for(command.added_by, cause=command)
            admitted, why = decide_admission(
                bound=bound, access=self.access, chat_id=command.chat_id, person=person
            )
        except TransientFailure:
            admitted, why = True, "planfix_away"
        log.info("group_admission_decided", chat_id=command.chat_id, admitted=admitted, why=why)
        return GroupAdmissionDecided(
            **envelope_after(command, f"admission:{command.event_id}"), admitted=admitted, why=why
        )
