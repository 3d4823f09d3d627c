"""Who the person writing ``/task`` is in Planfix: the binder's live copy of the PEOPLE fold, and
the one Planfix question asked about a Telegram user the fold does not know.

``Requesters.person_for`` answers from the fold (``bridge_lib.people_directory``); for a stranger
it asks Planfix once (an active employee whose profile carries the Telegram id, else the username),
publishes ``PersonLinked(how=planfix_profile)`` when found, and remembers a "not found" for a
while, so a stranger spamming ``/task`` costs at most one Planfix lookup per period. A Planfix
outage raises ``TransientFailure``: the request is retried, never judged
"not linked".
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import structlog

from bridge_lib.eventbus import Publisher, TransientFailure
from bridge_lib.planfix import PlanfixPerson, PlanfixRejected, PlanfixUnavailable
from contracts import subjects
from contracts.events import (
    AnyEvent,
    Event,
    PersonLinked,
    PersonLinkMethod,
    PersonUnlinked,
    TelegramUser,
    envelope_after,
)
from contracts.people import People, Person

log = structlog.get_logger("binder.people")

# How long "no employee has this Telegram" is believed before Planfix is asked again.
NOT_FOUND_TTL_S = 600.0


class Employees(Protocol):
    """What the binder asks Planfix about people (``bridge_lib.planfix.PlanfixClient``)."""

    async def find_employees_by_telegram_id(self, telegram_id: int) -> list[PlanfixPerson]: ...
    async def find_employees_by_telegram_username(self, username: str) -> list[PlanfixPerson]: ...


class Known(Protocol):
    """Where the fold is read and applied (``PeopleDirectory``)."""

    @property
    def people(self) -> People: ...
    def apply(self, event: AnyEvent) -> None: ...
    async def catch_up(self, timeout_s: float = 10.0) -> None: ...


async def record_people_event(
    event: PersonLinked | PersonUnlinked, key: str, *, publisher: Publisher, known: Known
) -> None:
    """Store a PEOPLE event, then apply it to this binder's fold: the next request sees it at
    once, without waiting for the stream to bring it back (applying it twice changes nothing)."""
    await publisher.publish(event, subject=subjects.subject_for(event), msg_id=key)
    known.apply(event)


def person_linked_key(telegram_user_id: int, planfix_id: str) -> str:
    """The same Telegram user found as the same employee always makes the same event."""
    return f"people:planfix_profile:{telegram_user_id}:{planfix_id}"


@dataclass(frozen=True, kw_only=True, eq=False)
class Requesters:
    """The Planfix person behind a Telegram user, learned once."""

    known: Known
    planfix: Employees
    publisher: Publisher
    not_found_ttl_s: float = NOT_FOUND_TTL_S
    clock: Callable[[], float] = time.monotonic
    # Telegram user id -> when Planfix last said "no such employee".
    _not_found: dict[int, float] = field(default_factory=dict, init=False)

    def known_person(self, telegram_user_id: int) -> Person | None:
        """The person as the fold knows them now (no Planfix request)."""
        return self.known.people.get(telegram_user_id)

    async def person_for(self, user: TelegramUser, *, cause: Event) -> Person | None:
        """The person the fold knows, else the employee Planfix names (linked now), else None."""
        if (person := self.known.people.get(user.id)) is not None:
            return person
        asked_at = self._not_found.get(user.id)
        if asked_at is not None and self.clock() - asked_at < self.not_found_ttl_s:
            return None
        # Maybe linked by another binder replica, or stored before this one caught up.
        await self.known.catch_up()
        if (person := self.known.people.get(user.id)) is not None:
            return person
        found = await self._employee_of(user)
        if found is None:
            self._not_found[user.id] = self.clock()
            self._forget_stale()
            log.info("requester_not_linked", telegram_user_id=user.id)
            return None
        self._not_found.pop(user.id, None)
        key = person_linked_key(user.id, found.id)
        linked = PersonLinked(
            **envelope_after(cause, key),
            telegram_user_id=user.id,
            planfix_person_id=found.id,
            name=found.name,
            how=PersonLinkMethod.PLANFIX_PROFILE,
            telegram_username=user.username or found.telegram_username,
        )
        await record_people_event(linked, key, publisher=self.publisher, known=self.known)
        log.info("person_linked", telegram_user_id=user.id, planfix_person_id=found.id, how="planfix_profile")
        return self.known.people.get(user.id)

    async def _employee_of(self, user: TelegramUser) -> PlanfixPerson | None:
        try:
            matches = await self.planfix.find_employees_by_telegram_id(user.id)
            active = _active_employees(matches)
            if not active and user.username:
                active = _active_employees(
                    await self.planfix.find_employees_by_telegram_username(user.username)
                )
        except PlanfixUnavailable as error:
            raise TransientFailure(f"Planfix unavailable while looking up a requester: {error}") from error
        except PlanfixRejected as error:
            # The token may not list employees: nobody can be found, say so once in the log.
            log.warning("planfix_refused_people_lookup", code=error.code)
            return None
        if len(active) > 1:
            log.warning("several_employees_share_a_telegram", telegram_user_id=user.id, count=len(active))
        return active[0] if active else None

    def _forget_stale(self) -> None:
        now = self.clock()
        stale = [user for user, at in self._not_found.items() if now - at >= self.not_found_ttl_s]
        for user in stale:
            del self._not_found[user]


def _active_employees(people: list[PlanfixPerson]) -> list[PlanfixPerson]:
    """Active employees, the lowest id first (one answer whatever order Planfix lists them in)."""
    found = [person for person in people if person.is_employee and person.is_active]
    return sorted(found, key=lambda person: (len(person.id), person.id))
