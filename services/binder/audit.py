"""``bridge bindings audit``: the bindings made before the bind policy (or before a person was
unlinked, fired, or taken off the task) that the binder would refuse today.

Each binding is judged by ``bind_policy.bind_refusal`` as if its binder asked again now; whether
they are still the group's admin is not asked (Telegram would have to be), so it is assumed.
Reading a task's people costs a paced Planfix request: at most ``max_planfix_reads`` per audit,
the rest reported "unchecked".
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Protocol

import structlog

from bridge_lib.planfix import PlanfixRejected, PlanfixUnavailable, TaskPeople
from contracts.bindings import Binding
from contracts.events import AuditBindings, BindingAuditFinding, BindingsAudited, envelope_after
from services.binder.bind_policy import BindAsk, BindPolicy, bind_refusal
from services.binder.handlers import BindAccess
from services.binder.people import Known

log = structlog.get_logger("binder.audit")

UNCHECKED = "unchecked"


class AuditStore(Protocol):
    async def all_bindings(self) -> list[Binding]: ...


class TaskPeopleReader(Protocol):
    async def get_task_people(self, number: int) -> TaskPeople: ...


@dataclass(frozen=True, kw_only=True, eq=False)
class BindingAudit:
    store: AuditStore
    known: Known
    planfix: TaskPeopleReader
    access: BindAccess

    async def handle(self, command: AuditBindings) -> BindingsAudited:
        bindings = await self.store.all_bindings()
        await self.known.catch_up()
        people = self.known.people
        per_task = Counter(binding.task_number for binding in bindings)
        reads = 0
        task_people: dict[int, TaskPeople | None] = {}
        findings: list[BindingAuditFinding] = []
        for binding in sorted(bindings, key=lambda b: b.key):
            person = people.get(binding.bound_by_user_id) if binding.bound_by_user_id is not None else None
            needs_task = (
                self.access.policy is BindPolicy.PARTICIPANTS and person is not None and person.is_employee
            )
            if needs_task and binding.task_number not in task_people:
                if reads < command.max_planfix_reads:
                    reads += 1
                    task_people[binding.task_number] = await self._read(binding.task_number)
                else:
                    task_people[binding.task_number] = None
            known_task = task_people.get(binding.task_number)
            if needs_task and known_task is None:
                refusal: str | None = UNCHECKED
            else:
                ask = BindAsk(
                    requester_is_admin=True,
                    person=person,
                    # The task exists: "no people read" must not pass as a new task's "anyone".
                    task_people=known_task or TaskPeople(number=binding.task_number),
                    chat_allowed=self.access.chat_allowed(binding.chat_id),
                    # The others bound to the task, as if this one asked last.
                    groups_on_task=per_task[binding.task_number] - 1,
                )
                found = bind_refusal(self.access.policy, ask, groups_per_task=self.access.groups_per_task)
                refusal = str(found) if found is not None else None
            if refusal is not None:
                findings.append(
                    BindingAuditFinding(
                        group_key=binding.key,
                        chat_id=binding.chat_id,
                        task_number=binding.task_number,
                        bound_by_user_id=binding.bound_by_user_id,
                        refusal=refusal,
                    )
                )
        log.info(
            "bindings_audited",
            bindings=len(bindings),
            findings=len(findings),
            planfix_reads=reads,
            operator=command.operator,
        )
        return BindingsAudited(
            **envelope_after(command, f"audited:{command.event_id}"),
            policy=str(self.access.policy),
            findings=findings,
            bindings=len(bindings),
            planfix_reads=reads,
        )

    async def _read(self, task_number: int) -> TaskPeople | None:
        try:
            return await self.planfix.get_task_people(task_number)
        except (PlanfixUnavailable, PlanfixRejected) as error:
            log.warning("audit_task_people_unread", task_number=task_number, error=type(error).__name__)
            return None
