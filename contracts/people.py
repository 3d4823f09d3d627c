"""Who each Telegram person is in Planfix: one fold of the PEOPLE stream, shared by its readers.

The binder writes ``people.*``; the binder (who may bind), the relay (whose comment this is,
who is mentioned) and the sandbox read it through ``evolve``. Looking a person up costs no
Planfix request once the fold knows them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import immutables
import msgspec

from contracts.events import AnyEvent, PersonLinked, PersonLinkMethod, PersonUnlinked


class Person(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    telegram_user_id: int
    # "user:N" (an employee) or "contact:N".
    planfix_id: str
    name: str
    how: PersonLinkMethod
    telegram_username: str | None = None

    @property
    def is_employee(self) -> bool:
        return self.planfix_id.startswith("user:")


def username_key(username: str) -> str:
    """Telegram usernames are case-insensitive; "@Anna" and "anna" are one person."""
    key = username.lstrip("@").lower()
    # A username already in this form is its own key: a fold of 10,000 people keeps one string
    # for both, not two.
    return username if key == username else key


@dataclass(frozen=True, slots=True)
class People:
    by_telegram_id: immutables.Map[int, Person] = field(default_factory=immutables.Map)
    _id_by_username: immutables.Map[str, int] = field(default_factory=immutables.Map)

    def __len__(self) -> int:
        return len(self.by_telegram_id)

    def get(self, telegram_user_id: int) -> Person | None:
        return self.by_telegram_id.get(telegram_user_id)

    def by_username(self, username: str) -> Person | None:
        found = self._id_by_username.get(username_key(username))
        return self.by_telegram_id.get(found) if found is not None else None

    def with_person(self, person: Person) -> People:
        people = self.without(person.telegram_user_id)
        usernames = people._id_by_username
        if person.telegram_username:
            usernames = usernames.set(username_key(person.telegram_username), person.telegram_user_id)
        return People(people.by_telegram_id.set(person.telegram_user_id, person), usernames)

    def without(self, telegram_user_id: int) -> People:
        previous = self.by_telegram_id.get(telegram_user_id)
        if previous is None:
            return self
        usernames = self._id_by_username
        if (
            previous.telegram_username
            and usernames.get(username_key(previous.telegram_username)) == telegram_user_id
        ):
            usernames = usernames.delete(username_key(previous.telegram_username))
        return People(self.by_telegram_id.delete(telegram_user_id), usernames)


def evolve(people: People, event: AnyEvent) -> People:
    """The people after one PEOPLE event (anything else leaves them as they are)."""
    match event:
        case PersonLinked():
            return people.with_person(
                Person(
                    telegram_user_id=event.telegram_user_id,
                    planfix_id=event.planfix_person_id,
                    name=event.name,
                    how=event.how,
                    telegram_username=event.telegram_username,
                )
            )
        case PersonUnlinked():
            current = people.get(event.telegram_user_id)
            # Only the link that was undone: a later link to someone else stands.
            if current is None or current.planfix_id != event.planfix_person_id:
                return people
            return people.without(event.telegram_user_id)
        case _:
            return people


def fold(events: Iterable[AnyEvent], people: People | None = None) -> People:
    current = people if people is not None else People()
    for event in events:
        current = evolve(current, event)
    return current
