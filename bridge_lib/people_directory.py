"""Who each Telegram person is in Planfix: a service's live copy of ``contracts.people`` (the
PEOPLE fold). The relay names comments' owners and mentioned people from it; the binder learns
who writes ``/task``.

At start it replays the PEOPLE stream through an ordered consumer, then follows it; lookups are
reads of an immutable ``People`` value, so a lookup costs no Planfix request and no store round
trip. A person not (yet) known is simply unknown (``catch_up`` for who must not miss a link).
"""

from __future__ import annotations

import structlog

from bridge_lib.followed_fold import FollowedFold
from contracts.events import AnyEvent, PersonLinked, PersonUnlinked
from contracts.people import People, Person, evolve
from contracts.subjects import ALL_PEOPLE_EVENTS, PEOPLE_STREAM

log = structlog.get_logger("people_directory")


class PeopleDirectory(FollowedFold[People]):
    def __init__(self, people: People | None = None) -> None:
        super().__init__(
            stream=PEOPLE_STREAM,
            subject_filter=ALL_PEOPLE_EVENTS,
            initial=people if people is not None else People(),
            evolve=evolve,
            on_change=self._changed,
        )
        # Built on the first lookup after a change: links are rare, lookups per comment, and a
        # replay of 10,000 links would otherwise rebuild it 10,000 times.
        self._by_planfix_id: dict[str, Person] | None = None

    @property
    def people(self) -> People:
        return self.value

    @property
    def _people(self) -> People:
        return self.value

    def _changed(self, people: People, event: AnyEvent) -> None:
        self._by_planfix_id = None
        if isinstance(event, PersonLinked | PersonUnlinked):
            log.info("person_link_applied", telegram_user_id=event.telegram_user_id, people=len(people))

    def get(self, telegram_user_id: int) -> Person | None:
        return self._people.get(telegram_user_id)

    def by_username(self, username: str) -> Person | None:
        return self._people.by_username(username)

    def by_planfix_id(self, planfix_id: str) -> Person | None:
        """The Telegram person linked to a Planfix employee or contact ("user:N", "contact:N")."""
        if self._by_planfix_id is None:
            self._by_planfix_id = {
                person.planfix_id: person for person in self._people.by_telegram_id.values()
            }
        return self._by_planfix_id.get(planfix_id)
