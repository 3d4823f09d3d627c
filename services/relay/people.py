"""Who each Telegram person is in Planfix: the relay's live copy of ``contracts.people`` (the
PEOPLE fold), shared by both wings.

At start it replays the PEOPLE stream through an ordered consumer, then follows it; lookups are
reads of an immutable ``People`` value, so naming a comment's owner or a mentioned person costs
no Planfix request and no store round trip. A person not (yet) known is simply unknown: their
message is carried as a stranger's, never held back.
"""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec
import structlog
from nats.js.api import DeliverPolicy

from contracts.events import AnyEvent, PersonLinked, PersonUnlinked, decode_event
from contracts.people import People, Person, evolve
from contracts.subjects import ALL_PEOPLE_EVENTS, PEOPLE_STREAM

log = structlog.get_logger("relay.people")


class PeopleDirectory:
    def __init__(self, people: People | None = None) -> None:
        self._people = people if people is not None else People()
        self._by_planfix_id: dict[str, Person] = {}
        self._reindex()
        self._applied_seq = 0
        self._progress = asyncio.Condition()
        self._subscription: Any = None

    @property
    def people(self) -> People:
        return self._people

    async def start(self, js: Any, *, timeout_s: float = 10.0) -> None:
        self._subscription = await js.subscribe(
            ALL_PEOPLE_EVENTS, ordered_consumer=True, deliver_policy=DeliverPolicy.ALL, cb=self._on_message
        )
        info = await js.stream_info(PEOPLE_STREAM.name)
        target = info.state.last_seq
        async with self._progress:
            await asyncio.wait_for(self._progress.wait_for(lambda: self._applied_seq >= target), timeout_s)
        log.info("people_directory_ready", people=len(self._people))

    async def stop(self) -> None:
        if self._subscription is not None:
            await self._subscription.unsubscribe()

    def apply(self, event: AnyEvent) -> None:
        before = self._people
        self._people = evolve(before, event)
        if self._people is not before:
            self._reindex()
            if isinstance(event, PersonLinked | PersonUnlinked):
                log.info(
                    "person_link_applied", telegram_user_id=event.telegram_user_id, people=len(self._people)
                )

    def get(self, telegram_user_id: int) -> Person | None:
        return self._people.get(telegram_user_id)

    def by_username(self, username: str) -> Person | None:
        return self._people.by_username(username)

    def by_planfix_id(self, planfix_id: str) -> Person | None:
        """The Telegram person linked to a Planfix employee or contact ("user:N", "contact:N")."""
        return self._by_planfix_id.get(planfix_id)

    def _reindex(self) -> None:
        # Rebuilt on a change only (links are rare, lookups are per message).
        self._by_planfix_id = {person.planfix_id: person for person in self._people.by_telegram_id.values()}

    async def _on_message(self, msg: Any) -> None:
        try:
            event = decode_event(msg.data)
        except (msgspec.DecodeError, msgspec.ValidationError) as error:
            log.error("undecodable_people_event_skipped", error=str(error))
            event = None
        if event is not None:
            self.apply(event)
        async with self._progress:
            self._applied_seq = msg.metadata.sequence.stream
            self._progress.notify_all()
