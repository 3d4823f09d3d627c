"""Who a comment is written as, and who it notifies.

A message's author becomes the comment's ``owner``: a linked employee ("user:N") or contact
("contact:N") from the PEOPLE fold; a stranger, with ``PLANFIX_CONTACTS=create``, their own
contact, found by Telegram id or created once (``ContactBook``, the relay's store, one writer);
otherwise nobody (the robot writes it, naming the author in the text). Where Planfix refuses
owners for the token, the robot writes for an hour (or until a restart), and the log says so once.

``owner_key`` is what ``plan.plan_batch`` splits author runs by, decided without I/O; ``owner``
resolves it (a stranger's contact may cost Planfix requests the first time, never again).
Mentions (``@username`` or a text mention) of linked employees become the comment's recipients.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import structlog
from motor.motor_asyncio import AsyncIOMotorDatabase
from pymongo.errors import DuplicateKeyError

from bridge_lib.planfix import OwnerRefused, PlanfixClient, Recipients
from contracts.events import TelegramEntity, TelegramMessageReceived, TelegramUser
from contracts.people import People

log = structlog.get_logger("relay.to_planfix.authors")

CONTACTS_BY_TELEGRAM = "contacts_by_telegram"
# How long owners stay off after Planfix refused one (a restart tries again at once).
OWNERS_OFF_S = 3600.0
# The owner key of a stranger whose contact is still to be found or made.
_STRANGER = "tg:"


def owner_key(sender: TelegramUser, people: People, *, create_contacts: bool) -> str | None:
    """Whom a message of ``sender`` is written as, before any I/O: a linked person's Planfix id,
    ``"tg:<id>"`` for a stranger who gets a contact, None for the robot."""
    person = people.get(sender.id)
    if person is not None:
        return person.planfix_id
    if create_contacts and not (sender.is_bot or sender.is_channel):
        return f"{_STRANGER}{sender.id}"
    return None


def mentioned_employees(messages: Iterable[TelegramMessageReceived], people: People) -> tuple[str, ...]:
    """The linked employees the messages mention (``@username`` or a text mention), in order."""
    found: dict[str, None] = {}
    for message in messages:
        for person_id in _mentions(message.text, message.entities, people):
            found.setdefault(person_id, None)
    return tuple(found)


def _mentions(text: str, entities: Sequence[TelegramEntity], people: People) -> list[str]:
    encoded = text.encode("utf-16-le")
    found: list[str] = []
    for entity in entities:
        person = None
        if entity.type == "mention":
            covered = encoded[entity.offset * 2 : (entity.offset + entity.length) * 2]
            person = people.by_username(covered.decode("utf-16-le", errors="replace"))
        elif entity.type == "text_mention" and entity.user_id is not None:
            person = people.get(entity.user_id)
        if person is not None and person.is_employee:
            found.append(person.planfix_id)
    return found


class ContactBook:
    """Telegram id -> the Planfix person a stranger to the PEOPLE fold writes as
    (``contacts_by_telegram``): an employee whose profile carries their Telegram, else their
    contact.

    Looked up once per person: the store first, then Planfix by Telegram id (employees, then
    contacts: a crash between creating and recording leaves a contact Planfix finds), only then
    a new contact. From then on a message costs no Planfix request.
    """

    def __init__(self, database: AsyncIOMotorDatabase[Any], planfix: PlanfixClient) -> None:
        self._contacts = database[CONTACTS_BY_TELEGRAM]
        self._planfix = planfix
        self._known: dict[int, str] = {}
        self._locks: dict[int, asyncio.Lock] = {}

    async def contact_for(self, sender: TelegramUser) -> str:
        if (known := self._known.get(sender.id)) is not None:
            return known
        # Chains of different tasks run side by side: one lookup (and one creation) per person.
        async with self._locks.setdefault(sender.id, asyncio.Lock()):
            if (known := self._known.get(sender.id)) is not None:
                return known
            contact = await self._recorded(sender.id) or await self._found_or_made(sender)
            self._known[sender.id] = contact
            return contact

    async def _recorded(self, telegram_id: int) -> str | None:
        document = await self._contacts.find_one({"_id": telegram_id})
        return str(document["contact"]) if document else None

    async def _found_or_made(self, sender: TelegramUser) -> str:
        # An employee whose Planfix profile carries this Telegram ("authorize Telegram") writes
        # as themselves even before the binder has linked them (they never wrote /task): never
        # a contact made for a colleague.
        employees = await self._planfix.find_employees_by_telegram_id(sender.id)
        active = sorted((p.id for p in employees if p.is_employee and p.is_active), key=_number)
        existing = [] if active else await self._planfix.find_contacts_by_telegram_id(sender.id)
        ids = sorted((person.id for person in existing), key=_number)
        if active:
            contact, how = active[0], "employee_profile"
        elif ids:
            contact, how = ids[0], "found"
        else:
            contact = await self._planfix.create_contact(
                name=sender.full_name or str(sender.id),
                telegram_id=sender.id,
                telegram_username=sender.username,
            )
            how = "created"
        try:
            await self._contacts.insert_one({"_id": sender.id, "contact": contact})
        except DuplicateKeyError:
            return await self._recorded(sender.id) or contact
        log.info("stranger_contact_recorded", how=how, contact=contact)
        return contact


def _number(person_id: str) -> int:
    _, _, number = person_id.partition(":")
    return int(number) if number.isdigit() else 0


class Authors:
    def __init__(
        self,
        *,
        people: Callable[[], People],
        contacts: ContactBook | None,
        recipients: Recipients | None,
        notify_mentioned: bool,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._people = people
        # None: PLANFIX_CONTACTS=none (strangers are written by the robot).
        self._contacts = contacts
        self._recipients = recipients
        self._notify_mentioned = notify_mentioned
        self._clock = clock
        self._owners_off_until: float | None = None

    @property
    def owners_on(self) -> bool:
        return self._owners_off_until is None or self._clock() >= self._owners_off_until

    def owner_keys(self, messages: Iterable[TelegramMessageReceived]) -> Mapping[int, str | None]:
        """Each sender's owner key, for ``plan_batch``: author runs split where it changes."""
        if not self.owners_on:
            return {}
        people = self._people()
        create = self._contacts is not None
        return {m.sender.id: owner_key(m.sender, people, create_contacts=create) for m in messages}

    async def owner(self, sender: TelegramUser) -> str | None:
        """The Planfix person a message of ``sender`` is written as (None: the robot)."""
        if not self.owners_on:
            return None
        key = owner_key(sender, self._people(), create_contacts=self._contacts is not None)
        if key is None or not key.startswith(_STRANGER):
            return key
        assert self._contacts is not None
        return await self._contacts.contact_for(sender)

    def mentioned(self, messages: Sequence[TelegramMessageReceived], owner: str | None) -> list[str]:
        """The linked employees the messages mention (not the owner), when mentions notify."""
        if not self._notify_mentioned:
            return []
        return [p for p in mentioned_employees(messages, self._people()) if p != owner]

    def recipients(self, mentioned: Sequence[str]) -> Recipients | None:
        """The configured roles and people, and the mentioned employees beside them."""
        base = self._recipients or Recipients()
        users = tuple(dict.fromkeys((*base.users, *mentioned)))
        if users == base.users:
            return self._recipients
        return Recipients(users=users, roles=base.roles, roles_form=base.roles_form)

    def owner_refused(self, error: OwnerRefused) -> None:
        """Planfix will not take owners from this token: the robot writes for a while."""
        first = self.owners_on
        self._owners_off_until = self._clock() + OWNERS_OFF_S
        if first:
            log.warning(
                "planfix_refused_comment_owner_robot_writes_instead",
                owner=error.owner,
                code=error.code,
                retry_owners_in_s=OWNERS_OFF_S,
            )
