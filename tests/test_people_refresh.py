"""Links checked against Planfix once a day: which end, and why (the rule, in a table)."""

from __future__ import annotations

import pytest

from bridge_lib.planfix import PersonStatus, PlanfixPerson
from contracts.events import PersonLinkMethod
from contracts.people import People, Person
from services.binder.people_refresh import stale_links

PROFILE, CODE = PersonLinkMethod.PLANFIX_PROFILE, PersonLinkMethod.LINK_CODE


def linked(how: PersonLinkMethod, planfix_id: str = "user:5", username: str | None = "anna") -> People:
    person = Person(
        telegram_user_id=11, planfix_id=planfix_id, name="Anna", how=how, telegram_username=username
    )
    return People().with_person(person)


def employee(
    *, telegram_id: int | None = 11, username: str | None = None, status: PersonStatus = PersonStatus.ACTIVE
) -> PlanfixPerson:
    return PlanfixPerson(
        id="user:5", name="Anna", telegram_id=telegram_id, telegram_username=username, status=status
    )


@pytest.mark.parametrize(
    ("case", "people", "employees", "why"),
    [
        ("profile still names them", linked(PROFILE), [employee()], None),
        (
            "profile names their username",
            linked(PROFILE),
            [employee(telegram_id=None, username="@Anna")],
            None,
        ),
        ("fired", linked(PROFILE), [employee(status=PersonStatus.INACTIVE)], "employee_inactive"),
        ("gone from Planfix", linked(PROFILE), [], "employee_inactive"),
        (
            "profile names someone else now",
            linked(PROFILE),
            [employee(telegram_id=99)],
            "planfix_profile_changed",
        ),
        (
            "a /link code link without Telegram in the profile",
            linked(CODE),
            [employee(telegram_id=None)],
            None,
        ),
        (
            "a /link code link, fired",
            linked(CODE),
            [employee(status=PersonStatus.INACTIVE)],
            "employee_inactive",
        ),
        ("a contact is not checked", linked(CODE, "contact:3"), [], None),
    ],
)
def test_which_links_end(case: str, people: People, employees: list[PlanfixPerson], why: str | None) -> None:
    found = [reason for _, reason in stale_links(people, employees)]

    assert found == ([why] if why else []), case
