"""What a /link code written in Planfix does: the rule, in a table."""

from __future__ import annotations

import pytest

from bridge_lib.planfix import PersonStatus, PlanfixPerson
from contracts.events import LinkRefusal, PersonLinkMethod
from contracts.people import People, Person
from services.binder.linking import (
    AlreadyLinkedSame,
    IssuedCode,
    Linked,
    decide_redemption,
)

NOW = 1_000_000.0
CODE = IssuedCode(
    digest="d",
    telegram_user_id=11,
    telegram_username="lena",
    full_name="Lena",
    language_code="ru",
    issued_at=NOW - 60,
    expires_at=NOW + 600,
)
ACTIVE = PlanfixPerson(id="user:5", name="Lena Orlova", status=PersonStatus.ACTIVE)
FIRED = PlanfixPerson(id="user:5", name="Lena Orlova", status=PersonStatus.INACTIVE)


def person(telegram_user_id: int, planfix_id: str) -> Person:
    return Person(
        telegram_user_id=telegram_user_id, planfix_id=planfix_id, name="x", how=PersonLinkMethod.LINK_CODE
    )


@pytest.mark.parametrize(
    ("case", "author", "employee", "known", "now", "expected"),
    [
        ("a live code by an active employee", "user:5", ACTIVE, [], NOW, Linked()),
        ("too late", "user:5", ACTIVE, [], NOW + 601, LinkRefusal.EXPIRED),
        ("written by a contact", "contact:9", None, [], NOW, LinkRefusal.NOT_AN_EMPLOYEE),
        ("written by nobody Planfix names", "", None, [], NOW, LinkRefusal.NOT_AN_EMPLOYEE),
        ("a fired employee", "user:5", FIRED, [], NOW, LinkRefusal.EMPLOYEE_INACTIVE),
        ("an employee Planfix no longer has", "user:5", None, [], NOW, LinkRefusal.EMPLOYEE_INACTIVE),
        (
            "the person is someone else already",
            "user:5",
            ACTIVE,
            [person(11, "user:6")],
            NOW,
            LinkRefusal.ALREADY_LINKED,
        ),
        ("the same link again", "user:5", ACTIVE, [person(11, "user:5")], NOW, AlreadyLinkedSame()),
        (
            "the employee has another Telegram",
            "user:5",
            ACTIVE,
            [person(12, "user:5")],
            NOW,
            LinkRefusal.EMPLOYEE_LINKED_ELSEWHERE,
        ),
    ],
)
def test_what_a_code_does(
    case: str, author: str, employee: PlanfixPerson | None, known: list[Person], now: float, expected: object
) -> None:
    people = People()
    for someone in known:
        people = people.with_person(someone)

    outcome = decide_redemption(code=CODE, author_id=author, employee=employee, people=people, now=now)

    assert outcome == expected, case
