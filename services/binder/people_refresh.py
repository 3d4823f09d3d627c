"""Links checked against Planfix once a day: a fired employee, or one whose profile no longer
carries the Telegram it was linked by, stops acting in Telegram as them.

One paced pass lists every employee (one request per 100: cheaper than a lookup per person) and
``stale_links`` decides, purely, which links end and why. A link made with a /link code ends
only when the employee is fired or gone (their profile never named the Telegram). Contacts are
not checked (they have no status). ``PersonUnlinked`` keys include the day, so two binder
replicas doing the same pass store it once.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

import structlog

from bridge_lib.eventbus import Publisher
from bridge_lib.planfix import PlanfixPerson, PlanfixRejected, PlanfixUnavailable, same_username
from contracts.events import PersonLinkMethod, PersonUnlinked, root_envelope
from contracts.people import People, Person
from services.binder.people import Known, record_people_event

log = structlog.get_logger("binder.people_refresh")


def stale_links(people: People, employees: Iterable[PlanfixPerson]) -> list[tuple[Person, str]]:
    """The employee links that no longer hold, each with why."""
    by_id = {employee.id: employee for employee in employees}
    stale: list[tuple[Person, str]] = []
    for person in people.by_telegram_id.values():
        if not person.is_employee:
            continue
        employee = by_id.get(person.planfix_id)
        if employee is None or not employee.is_active:
            stale.append((person, "employee_inactive"))
        elif person.how is PersonLinkMethod.PLANFIX_PROFILE and not _names_telegram(employee, person):
            stale.append((person, "planfix_profile_changed"))
    return stale


def _names_telegram(employee: PlanfixPerson, person: Person) -> bool:
    if employee.telegram_id is not None:
        return employee.telegram_id == person.telegram_user_id
    return bool(
        employee.telegram_username
        and person.telegram_username
        and same_username(employee.telegram_username, person.telegram_username)
    )


class EmployeeList(Protocol):
    async def list_employees(self, *, only_active: bool = False) -> list[PlanfixPerson]: ...


@dataclass(frozen=True, kw_only=True, eq=False)
class PeopleRefresh:
    known: Known
    planfix: EmployeeList
    publisher: Publisher
    clock: Callable[[], float] = time.time

    async def once(self) -> int:
        """One pass; how many links ended."""
        await self.known.catch_up()
        people = self.known.people
        if not any(person.is_employee for person in people.by_telegram_id.values()):
            return 0  # nobody to check: no request spent
        employees = await self.planfix.list_employees()
        day = int(self.clock() // 86_400)
        ended = 0
        for person, why in stale_links(people, employees):
            key = f"people:refresh:{day}:{person.telegram_user_id}:{person.planfix_id}"
            event = PersonUnlinked(
                **root_envelope(key, caused_by="binder:people_refresh"),
                telegram_user_id=person.telegram_user_id,
                planfix_person_id=person.planfix_id,
                why=why,
            )
            await record_people_event(event, key, publisher=self.publisher, known=self.known)
            log.info("person_unlinked", telegram_user_id=person.telegram_user_id, why=why)
            ended += 1
        log.info("people_refreshed", people=len(people), employees=len(employees), unlinked=ended)
        return ended

    async def forever(self, interval_s: float) -> None:
        while True:
            try:
                await self.once()
            except (PlanfixUnavailable, PlanfixRejected) as error:
                log.warning("people_refresh_failed", error=type(error).__name__)
            await asyncio.sleep(interval_s)
