"""``/link``: a person with no Telegram in their Planfix profile links themselves by writing a
one-time code as a comment in any Planfix task; ``/unlink`` and ``/whoami`` in the same private
chat.

The private commands are NATS requests from the gateway (``AnswerPrivateCommand``), answered
at once and never stored: a code is a secret while it lives. The code's SHA-256 is kept in
``link_codes`` with its Telegram user and expiry. The comment comes back through the PLANFIX
stream like every comment; ``redeem`` reads its author and links them, once: the code is spent
by the first comment that holds it, whatever the outcome, and the comment is deleted in Planfix.

``decide_redemption`` is the rule, pure; the classes around it do the reading and writing.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import msgspec
import structlog
from motor.motor_asyncio import AsyncIOMotorDatabase

from bridge_lib import link_codes
from bridge_lib.eventbus import Delivery, Publisher, TransientFailure
from bridge_lib.planfix import PlanfixPerson, PlanfixRejected, PlanfixUnavailable
from contracts import subjects
from contracts.events import (
    AnswerPrivateCommand,
    LinkRefusal,
    PersonLinked,
    PersonLinkMethod,
    PersonLinkRefused,
    PersonUnlinked,
    PlanfixCommentAdded,
    PrivateAnswer,
    PrivateCommand,
    PrivateCommandAnswered,
    envelope_after,
)
from contracts.people import People, Person
from services.binder.people import Known, Requesters, record_people_event

log = structlog.get_logger("binder.linking")

# A code lives this long; at most this many are handed to one person an hour.
CODE_TTL_S = 15 * 60
CODES_PER_HOUR = 3


class IssuedCode(msgspec.Struct, frozen=True, kw_only=True):
    """A code as stored: its digest, for whom, until when, and the comment that spent it."""

    digest: str
    telegram_user_id: int
    telegram_username: str | None
    full_name: str
    language_code: str | None
    issued_at: float
    expires_at: float
    spent_by_comment: int | None = None


class LinkCodes:
    """The ``link_codes`` collection (the binder's, like its other collections)."""

    def __init__(self, database: AsyncIOMotorDatabase[Any]) -> None:
        self._codes = database["link_codes"]

    async def create_indexes(self) -> None:
        await self._codes.create_index("telegram_user_id", name="by_telegram_user")

    async def issue(self, code: IssuedCode) -> None:
        # Earlier codes of the person that were never used stop working: one live code each.
        # Kept (as expired) so that they still count toward the hourly limit.
        await self._codes.update_many(
            {"telegram_user_id": code.telegram_user_id, "spent_by_comment": None},
            {"$set": {"expires_at": 0.0}},
        )
        document = msgspec.to_builtins(code)
        document["_id"] = code.digest
        await self._codes.insert_one(document)

    async def issued_since(self, telegram_user_id: int, since: float) -> list[float]:
        """When codes were issued to the person since ``since`` (spent ones count too)."""
        cursor = self._codes.find({"telegram_user_id": telegram_user_id}, {"issued_at": 1})
        return sorted(t for doc in await cursor.to_list(None) if (t := float(doc["issued_at"])) >= since)

    async def find(self, digest: str) -> IssuedCode | None:
        document = await self._codes.find_one({"_id": digest}, {"_id": 0})
        return msgspec.convert(document, IssuedCode, strict=False) if document else None

    async def spend(self, digest: str, comment_id: int) -> bool:
        """Mark the code spent by ``comment_id``; False when another comment spent it first."""
        result = await self._codes.update_one(
            {"_id": digest, "spent_by_comment": None}, {"$set": {"spent_by_comment": comment_id}}
        )
        if result.modified_count:
            return True
        current = await self.find(digest)
        return current is not None and current.spent_by_comment == comment_id

    async def forget_before(self, when: float) -> None:
        """Codes issued a day ago or more (the store keeps no history of secrets)."""
        await self._codes.delete_many({"issued_at": {"$lt": when}})


# --- the rule ------------------------------------------------------------------------------------


class Linked(msgspec.Struct, frozen=True):
    pass


class AlreadyLinkedSame(msgspec.Struct, frozen=True):
    """The same link exists: nothing to publish (a redelivery, or a profile link already)."""


Redemption = Linked | AlreadyLinkedSame | LinkRefusal


def decide_redemption(
    *,
    code: IssuedCode,
    author_id: str,
    employee: PlanfixPerson | None,
    people: People,
    now: float,
) -> Redemption:
    """What a code written in a comment by ``author_id`` does."""
    if now > code.expires_at:
        return LinkRefusal.EXPIRED
    if not author_id.startswith("user:"):
        return LinkRefusal.NOT_AN_EMPLOYEE
    if employee is None or not employee.is_active:
        return LinkRefusal.EMPLOYEE_INACTIVE
    current = people.get(code.telegram_user_id)
    if current is not None:
        return AlreadyLinkedSame() if current.planfix_id == author_id else LinkRefusal.ALREADY_LINKED
    linked_to_author = person_of_employee(people, author_id)
    if linked_to_author is not None and linked_to_author.telegram_user_id != code.telegram_user_id:
        return LinkRefusal.EMPLOYEE_LINKED_ELSEWHERE
    return Linked()


# --- the work -------------------------------------------------------------------------------------


class LinkPlanfix(Protocol):
    async def get_employee(self, person_id: str) -> PlanfixPerson | None: ...
    async def delete_comment(self, comment_id: int) -> None: ...


def person_of_employee(people: People, planfix_id: str) -> Person | None:
    # A scan: codes are redeemed a few times a day, lookups by employee are not per message here.
    return next((p for p in people.by_telegram_id.values() if p.planfix_id == planfix_id), None)


@dataclass(frozen=True, kw_only=True, eq=False)
class Linking:
    """Answers the private commands and redeems codes written in Planfix."""

    codes: LinkCodes
    known: Known
    requesters: Requesters
    planfix: LinkPlanfix
    publisher: Publisher
    our_source_id: str
    clock: Callable[[], float] = time.time

    # --- private commands ------------------------------------------------------------------------

    async def answer(self, command: AnswerPrivateCommand) -> PrivateCommandAnswered:
        structlog.contextvars.bind_contextvars(correlation_id=command.correlation_id)
        try:
            if command.command is PrivateCommand.LINK:
                return await self._issue_code(command)
            if command.command is PrivateCommand.UNLINK:
                return await self._unlink(command)
            return await self._whoami(command)
        except TransientFailure:
            log.warning("private_command_planfix_away", command=str(command.command))
            return self._answer(command, PrivateAnswer.PLANFIX_AWAY)

    async def _issue_code(self, command: AnswerPrivateCommand) -> PrivateCommandAnswered:
        user = command.user
        await self.known.catch_up()
        if (person := self.known.people.get(user.id)) is not None:
            return self._answer(command, PrivateAnswer.ALREADY_LINKED, person)
        now = self.clock()
        recent = await self.codes.issued_since(user.id, now - 3600)
        if len(recent) >= CODES_PER_HOUR:
            retry_after = int(recent[0] + 3600 - now) + 1
            log.info("link_code_refused_too_many", telegram_user_id=user.id)
            return self._answer(command, PrivateAnswer.TOO_MANY_CODES, retry_after_s=retry_after)
        code = link_codes.new_code()
        await self.codes.forget_before(now - 86_400)
        await self.codes.issue(
            IssuedCode(
                digest=link_codes.digest(code),
                telegram_user_id=user.id,
                telegram_username=user.username,
                full_name=user.full_name,
                language_code=command.language_code,
                issued_at=now,
                expires_at=now + CODE_TTL_S,
            )
        )
        log.info("link_code_issued", telegram_user_id=user.id, expires_in_s=CODE_TTL_S)
        return self._answer(command, PrivateAnswer.CODE_ISSUED, code=code, expires_in_s=CODE_TTL_S)

    async def _unlink(self, command: AnswerPrivateCommand) -> PrivateCommandAnswered:
        await self.known.catch_up()
        person = self.known.people.get(command.user.id)
        if person is None:
            return self._answer(command, PrivateAnswer.NOT_LINKED)
        key = f"people:unlink_command:{command.user.id}:{person.planfix_id}:{command.event_id}"
        unlinked = PersonUnlinked(
            **envelope_after(command, key),
            telegram_user_id=command.user.id,
            planfix_person_id=person.planfix_id,
            why="unlink_command",
        )
        await record_people_event(unlinked, key, publisher=self.publisher, known=self.known)
        log.info("person_unlinked", telegram_user_id=command.user.id, planfix_person_id=person.planfix_id)
        return self._answer(command, PrivateAnswer.UNLINKED, person)

    async def _whoami(self, command: AnswerPrivateCommand) -> PrivateCommandAnswered:
        # Asks Planfix when the fold does not know the person (found: linked from now on).
        person = await self.requesters.person_for(command.user, cause=command)
        if person is None:
            return self._answer(command, PrivateAnswer.NOT_LINKED)
        if person.is_employee and not await self._still_active(person):
            # Checked on demand too: a fired employee stops acting as themselves now.
            key = f"people:whoami:{command.event_id}:{person.planfix_id}"
            unlinked = PersonUnlinked(
                **envelope_after(command, key),
                telegram_user_id=person.telegram_user_id,
                planfix_person_id=person.planfix_id,
                why="employee_inactive",
            )
            await record_people_event(unlinked, key, publisher=self.publisher, known=self.known)
            return self._answer(command, PrivateAnswer.NOT_LINKED)
        return self._answer(command, PrivateAnswer.LINKED, person)

    async def _still_active(self, person: Person) -> bool:
        try:
            employee = await self.planfix.get_employee(person.planfix_id)
        except (PlanfixUnavailable, PlanfixRejected):
            return True  # the fold's answer stands while Planfix cannot be asked
        return employee is not None and employee.is_active

    @staticmethod
    def _answer(
        command: AnswerPrivateCommand,
        answer: PrivateAnswer,
        person: Person | None = None,
        *,
        code: str | None = None,
        expires_in_s: int | None = None,
        retry_after_s: int | None = None,
    ) -> PrivateCommandAnswered:
        return PrivateCommandAnswered(
            **envelope_after(command, f"private-answer:{command.event_id}"),
            answer=answer,
            planfix_person_id=person.planfix_id if person else None,
            person_name=person.name if person else None,
            code=code,
            expires_in_s=expires_in_s,
            retry_after_s=retry_after_s,
        )

    # --- codes written in Planfix ------------------------------------------------------------

    async def redeem(self, comment: PlanfixCommentAdded, delivery: Delivery) -> None:
        """A comment holding a code links its author to the code's Telegram user."""
        await self.redeem_all([comment])

    async def redeem_all(self, comments: Sequence[PlanfixCommentAdded]) -> None:
        """Each comment holding a code links its author to the code's Telegram user, in turn."""
        for comment in comments:
            with structlog.contextvars.bound_contextvars(
                correlation_id=comment.correlation_id, event_id=comment.event_id
            ):
                await self._redeem(comment)

    async def _redeem(self, comment: PlanfixCommentAdded) -> None:
        code = link_codes.code_in(comment.text_html)
        if code is None or comment.source_id == self.our_source_id:
            return  # no code; or a comment the bridge wrote (someone pasted a code in a group)
        structlog.contextvars.bind_contextvars(task_number=comment.task_number, comment_id=comment.comment_id)
        issued = await self.codes.find(link_codes.digest(code))
        if issued is None:
            log.info("link_code_unknown")
            return
        if issued.spent_by_comment not in (None, comment.comment_id):
            log.info("link_code_already_spent")
            return
        author = comment.author.id or ""
        employee = await self._employee(author)
        await self.known.catch_up()
        outcome = decide_redemption(
            code=issued, author_id=author, employee=employee, people=self.known.people, now=self.clock()
        )
        if not await self.codes.spend(issued.digest, comment.comment_id):
            log.info("link_code_already_spent")
            return
        if isinstance(outcome, LinkRefusal):
            await self._refuse(comment, issued, outcome)
        elif isinstance(outcome, Linked):
            assert employee is not None  # decide_redemption links active employees only
            await self._link(comment, issued, employee)
        await self._delete(comment.comment_id)

    async def _employee(self, author: str) -> PlanfixPerson | None:
        if not author.startswith("user:"):
            return None
        try:
            return await self.planfix.get_employee(author)
        except PlanfixUnavailable as error:
            # Nothing written yet: the comment is redelivered and the code still works.
            raise TransientFailure(
                f"Planfix unavailable while checking a link's employee: {error}"
            ) from error
        except PlanfixRejected as error:
            log.warning("planfix_refused_employee_read", code=error.code)
            return None

    async def _link(self, comment: PlanfixCommentAdded, issued: IssuedCode, employee: PlanfixPerson) -> None:
        key = f"people:link_code:{comment.comment_id}"
        linked = PersonLinked(
            **envelope_after(comment, key),
            telegram_user_id=issued.telegram_user_id,
            planfix_person_id=employee.id,
            name=employee.name or comment.author.name,
            how=PersonLinkMethod.LINK_CODE,
            telegram_username=issued.telegram_username,
            language_code=issued.language_code,
        )
        await record_people_event(linked, key, publisher=self.publisher, known=self.known)
        log.info(
            "person_linked",
            telegram_user_id=issued.telegram_user_id,
            planfix_person_id=employee.id,
            how="link_code",
        )

    async def _refuse(self, comment: PlanfixCommentAdded, issued: IssuedCode, refusal: LinkRefusal) -> None:
        key = f"people:link_refused:{comment.comment_id}"
        refused = PersonLinkRefused(
            **envelope_after(comment, key),
            telegram_user_id=issued.telegram_user_id,
            refusal=refusal,
            planfix_person_id=comment.author.id or "",
            task_number=comment.task_number,
            comment_id=comment.comment_id,
            language_code=issued.language_code,
        )
        await self.publisher.publish(refused, subject=subjects.subject_for(refused), msg_id=key)
        log.info("person_link_refused", telegram_user_id=issued.telegram_user_id, refusal=str(refusal))

    async def _delete(self, comment_id: int) -> None:
        """The code comment is noise in the task once spent: deleted where the token may."""
        try:
            await self.planfix.delete_comment(comment_id)
        except (PlanfixRejected, PlanfixUnavailable) as error:
            # Left in place: the code in it is spent and links nobody.
            log.warning("link_code_comment_not_deleted", error=type(error).__name__)
