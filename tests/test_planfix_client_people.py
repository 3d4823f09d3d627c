"""People in Planfix (issue 15) through ``PlanfixClient``, against the fake and in memory.

Employees and contacts are found by their Telegram id or username, contacts are created, a
task's people are read, and comments are written as their authors, with a typed refusal when
the token may not. The session's fake is shared: every test uses Telegram ids of its own.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import json
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

import httpx
import pytest

from bridge_lib.planfix import (
    ContactDefaults,
    OwnerRefused,
    PersonStatus,
    PlanfixClient,
    PlanfixPerson,
    PlanfixRejected,
    PlanfixUnavailable,
    TaskNotFound,
    TaskPeople,
    normalize_username,
    same_username,
)
from contracts.events import planfix_source_object_id
from sandbox.fake_planfix import FakePlanfix
from tests.conftest import PLANFIX_TOKEN
from tests.support import LoopThread

SOURCE_ID = "0c6b7f0e-2d7a-4f0e-9a56-6a3f1c9b8e11"
T = TypeVar("T")
# Telegram ids no other test of the session uses.
_ids = itertools.count(8_100_000_001)


def telegram_id() -> int:
    return next(_ids)


@pytest.fixture
def run(
    loop: LoopThread, fake_planfix: FakePlanfix
) -> Callable[[Callable[[PlanfixClient], Awaitable[T]]], T]:
    def go(action: Callable[[PlanfixClient], Awaitable[T]]) -> T:
        async def inner() -> T:
            async with PlanfixClient(
                base_url=fake_planfix.base_url,
                token=PLANFIX_TOKEN,
                timeout_s=5,
                retry_attempts=1,
                contact_defaults=ContactDefaults(group_id=12, template_id=3),
            ) as client:
                return await action(client)

        return loop.run(inner())

    return go


@pytest.fixture
def owner_refused(fake_planfix: FakePlanfix) -> Iterator[None]:
    fake_planfix.refuse_owner()
    try:
        yield
    finally:
        fake_planfix.refuse_owner(False)


Run = Callable[[Callable[[PlanfixClient], Awaitable[Any]]], Any]


# --- employees --------------------------------------------------------------------------------


def test_an_employee_is_found_by_telegram_id(run: Run, fake_planfix: FakePlanfix) -> None:
    tg = telegram_id()
    employee = fake_planfix.add_employee("Anna", lastname="Ivanova", telegram_id=tg, telegram="@anna_i")

    found = run(lambda c: c.find_employees_by_telegram_id(tg))

    assert found == [
        PlanfixPerson(
            id=employee,
            name="Anna Ivanova",
            telegram_id=tg,
            telegram_username="anna_i",
            status=PersonStatus.ACTIVE,
        )
    ]
    assert found[0].is_employee
    assert found[0].is_active
    sent = [call.json for call in fake_planfix.calls if call.path == "/rest/user/list"][-1]
    assert sent["filters"] == [{"type": 9126, "operator": "equal", "value": tg}]


def test_nobody_is_found_for_an_unknown_telegram_id(run: Run, fake_planfix: FakePlanfix) -> None:
    fake_planfix.add_employee("Someone else", telegram_id=telegram_id())

    assert run(lambda c: c.find_employees_by_telegram_id(telegram_id())) == []
    assert run(lambda c: c.find_contacts_by_telegram_id(telegram_id())) == []


def test_a_fired_employee_is_found_and_says_so(run: Run, fake_planfix: FakePlanfix) -> None:
    tg = telegram_id()
    employee = fake_planfix.add_employee("Fired", telegram_id=tg, active=False)

    [found] = run(lambda c: c.find_employees_by_telegram_id(tg))

    assert found.id == employee
    assert found.status is PersonStatus.INACTIVE
    assert not found.is_active
    # Asked for active employees only, Planfix leaves them out.
    assert employee not in {p.id for p in run(lambda c: c.list_employees(only_active=True))}
    assert employee in {p.id for p in run(lambda c: c.list_employees())}


def test_an_employee_is_found_by_username_in_any_form(run: Run, fake_planfix: FakePlanfix) -> None:
    by_address = fake_planfix.add_employee("Boris", telegram="https://t.me/Boris_Username_1")
    fake_planfix.add_employee("Not Boris", telegram="boris_username_10")

    for asked in ("boris_username_1", "@BORIS_USERNAME_1", "t.me/boris_username_1"):
        found = run(functools.partial(PlanfixClient.find_employees_by_telegram_username, username=asked))
        assert [p.id for p in found] == [by_address], asked
    assert run(lambda c: c.find_employees_by_telegram_username("@")) == []


def test_the_employee_list_is_read_page_by_page(run: Run, fake_planfix: FakePlanfix) -> None:
    for index in range(101):
        fake_planfix.add_employee(f"Paged {index}")
    before = len(fake_planfix.calls)

    everyone = run(lambda c: c.list_employees())

    assert len(everyone) == len(fake_planfix.employees())
    pages = [call.json for call in fake_planfix.calls[before:] if call.path == "/rest/user/list"]
    assert [page["offset"] for page in pages] == [100 * i for i in range(len(pages))]
    assert len(pages) == len(everyone) // 100 + 1


def test_a_planfix_outage_during_a_lookup_is_unavailable(run: Run, planfix_down: None) -> None:
    with pytest.raises(PlanfixUnavailable):
        run(lambda c: c.find_employees_by_telegram_id(telegram_id()))
    with pytest.raises(PlanfixUnavailable):
        run(lambda c: c.find_contacts_by_telegram_username("anyone"))


# --- contacts ----------------------------------------------------------------------------------


def test_a_contact_is_found_by_telegram_id_and_username(run: Run, fake_planfix: FakePlanfix) -> None:
    tg = telegram_id()
    contact = fake_planfix.add_contact("Client", telegram_id=tg, telegram="client_one")

    by_id = run(lambda c: c.find_contacts_by_telegram_id(tg))
    by_name = run(lambda c: c.find_contacts_by_telegram_username("@Client_One"))

    assert [p.id for p in by_id] == [p.id for p in by_name] == [contact]
    assert by_id[0].telegram_id == tg
    assert by_id[0].status is None
    assert by_id[0].is_active
    assert not by_id[0].is_employee
    sent = [call.json["filters"] for call in fake_planfix.calls if call.path == "/rest/contact/list"][-2:]
    assert sent == [
        [{"type": 4234, "operator": "equal", "value": tg}],
        [{"type": 4226, "operator": "equal", "value": "Client_One"}],
    ]


def test_a_contact_is_created_once_and_then_found(run: Run, fake_planfix: FakePlanfix) -> None:
    tg = telegram_id()

    contact = run(
        lambda c: c.create_contact(
            name="Ivan", lastname="Petrov", telegram_id=tg, telegram_username="@ivan_p"
        )
    )

    stored = fake_planfix.contact(contact)
    assert stored is not None
    assert (stored.name, stored.lastname, stored.telegram_id) == ("Ivan", "Petrov", str(tg))
    assert stored.telegram == "https://t.me/ivan_p"
    assert (stored.group_id, stored.template_id) == (12, 3)
    [found] = run(lambda c: c.find_contacts_by_telegram_id(tg))
    assert (found.id, found.name, found.telegram_username) == (contact, "Ivan Petrov", "ivan_p")
    assert [p.id for p in run(lambda c: c.find_contacts_by_telegram_username("ivan_p"))] == [contact]


def test_a_contact_creation_that_times_out_is_not_repeated(run: Run, fake_planfix: FakePlanfix) -> None:
    fake_planfix.fail_next(status=502)
    before = len(fake_planfix.contacts())

    with pytest.raises(PlanfixUnavailable):
        run(lambda c: c.create_contact(name="Once", telegram_id=telegram_id()))

    assert len(fake_planfix.contacts()) == before
    assert [c.status for c in fake_planfix.calls if c.path == "/rest/contact/"][-1:] == [502]


# --- a task's people ----------------------------------------------------------------------------


def test_a_tasks_people_are_read(run: Run, fake_planfix: FakePlanfix) -> None:
    task = fake_planfix.add_task("People of a task")
    anna = fake_planfix.add_employee("Anna P", telegram_id=telegram_id())
    boris = fake_planfix.add_employee("Boris P")
    client = fake_planfix.add_contact("Client P")
    fake_planfix.set_task_people(
        task, assigner=anna, assignees=(boris, "group:4"), participants=(client, "group:5"), auditors=(anna,)
    )

    people = run(lambda c: c.get_task_people(task))

    assert people == TaskPeople(
        number=task,
        assigner=anna,
        assignees=frozenset({boris}),
        participants=frozenset({client}),
        auditors=frozenset({anna}),
        assignee_groups=frozenset({4}),
        participant_groups=frozenset({5}),
    )
    assert people.everyone == {anna, boris, client}
    [read] = [call for call in fake_planfix.calls if call.path == f"/rest/task/{task}"]
    assert set(read.query["fields"].split(",")) >= {"assigner", "assignees", "participants", "auditors"}


def test_a_task_created_through_the_api_has_its_assigner(run: Run, fake_planfix: FakePlanfix) -> None:
    anna = fake_planfix.add_employee("Assigner", telegram_id=telegram_id())

    mine = run(lambda c: c.create_task(name="Mine", assigner=anna))
    robots = run(lambda c: c.create_task(name="The robot's"))

    assert run(lambda c: c.get_task_people(mine)).assigner == anna
    assert run(lambda c: c.get_task_people(robots)).assigner == "user:1"
    with pytest.raises(ValueError, match="user:N"):
        run(lambda c: c.create_task(name="Bad", assigner="anna"))


def test_an_unknown_tasks_people_is_task_not_found(run: Run) -> None:
    with pytest.raises(TaskNotFound):
        run(lambda c: c.get_task_people(7_099_999))


def test_a_task_the_token_cannot_see_is_refused(run: Run, fake_planfix: FakePlanfix) -> None:
    task = fake_planfix.add_task("Hidden people")
    fake_planfix.deny_access(task)

    with pytest.raises(PlanfixRejected) as refused:
        run(lambda c: c.get_task_people(task))

    assert refused.value.code == 6


# --- comments as their authors -----------------------------------------------------------------


def _comment(task: int, key: str, owner: str | None) -> Callable[[PlanfixClient], Awaitable[int]]:
    return lambda c: c.add_comment(
        task_number=task,
        description_html="<p>hello</p>",
        source_id=SOURCE_ID,
        source_object_id=planfix_source_object_id(key),
        owner=owner,
    )


def test_a_comment_is_written_as_its_owner(run: Run, fake_planfix: FakePlanfix) -> None:
    task = fake_planfix.add_task("Owned comments")
    anna = fake_planfix.add_employee("Anna", lastname="Owner", telegram_id=telegram_id())
    client = fake_planfix.add_contact("Client", lastname="Owner")

    by_anna = run(_comment(task, "tg:msg:-1:1", anna))
    by_client = run(_comment(task, "tg:msg:-1:2", client))

    for comment_id, owner, name in ((by_anna, anna, "Anna Owner"), (by_client, client, "Client Owner")):
        read = run(functools.partial(PlanfixClient.get_comment, comment_id=comment_id))
        assert (read.owner_id, read.owner_name) == (owner, name)
    sent = [call.json for call in fake_planfix.calls if call.path == f"/rest/task/{task}/comments/"]
    assert [body["owner"] for body in sent] == [{"id": anna}, {"id": client}]


def test_a_refused_owner_is_owner_refused_and_the_robot_may_post(
    run: Run, fake_planfix: FakePlanfix, owner_refused: None
) -> None:
    task = fake_planfix.add_task("Owner refused")
    anna = fake_planfix.add_employee("Refused", telegram_id=telegram_id())

    with pytest.raises(OwnerRefused) as refused:
        run(_comment(task, "tg:msg:-1:3", anna))
    fallback = run(_comment(task, "tg:msg:-1:3", None))

    assert (refused.value.code, refused.value.owner, refused.value.names_owner) == (6, anna, True)
    assert [c.id for c in fake_planfix.comments(task)] == [fallback]
    assert fake_planfix.comments(task)[0].owner_id == "user:1"


def test_a_comment_with_an_owner_on_an_unknown_task_is_task_not_found(run: Run) -> None:
    with pytest.raises(TaskNotFound):
        run(_comment(7_099_999, "tg:msg:-1:4", "user:1"))


def test_an_owner_must_be_a_person_id(run: Run, fake_planfix: FakePlanfix) -> None:
    task = fake_planfix.add_task("Bad owner")
    with pytest.raises(ValueError, match="contact:N"):
        run(_comment(task, "tg:msg:-1:5", "group:3"))


# --- in memory: how answers are read -----------------------------------------------------------


def _in_memory(
    answer: Callable[[httpx.Request], httpx.Response], action: Callable[[PlanfixClient], Any]
) -> Any:
    async def go() -> Any:
        async with PlanfixClient(
            base_url="https://acme.planfix.com/rest/",
            token="t",
            transport=httpx.MockTransport(answer),
            retry_attempts=1,
        ) as client:
            return await action(client)

    return asyncio.run(go())


@pytest.mark.parametrize(
    ("status", "body", "names_owner"),
    [
        (400, {"result": "fail", "code": 6, "error": "New comments not allowed in this process"}, False),
        (400, {"result": "fail", "code": 4001, "error": "Rest API error"}, False),
        (400, {"result": "fail", "code": 2003, "error": "Rest API error"}, False),
        (400, {"result": "fail", "code": 41, "error": "Bad value of parameter owner"}, True),
    ],
)
def test_refusals_of_a_comment_with_an_owner(status: int, body: dict[str, Any], names_owner: bool) -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, json=body)

    with pytest.raises(OwnerRefused) as refused:
        _in_memory(answer, _comment(5, "tg:msg:-1:6", "contact:9"))

    assert refused.value.names_owner is names_owner
    assert refused.value.code == body["code"]


def test_other_refusals_stay_what_they_are() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        sent = json.loads(request.content)
        if "owner" in sent:
            return httpx.Response(400, json={"result": "fail", "code": 7000, "error": "File does not exist"})
        return httpx.Response(400, json={"result": "fail", "code": 6, "error": "Access denied"})

    with pytest.raises(PlanfixRejected) as with_owner:
        _in_memory(answer, _comment(5, "tg:msg:-1:7", "user:3"))
    with pytest.raises(PlanfixRejected) as without_owner:
        _in_memory(answer, _comment(5, "tg:msg:-1:7", None))

    assert not isinstance(with_owner.value, OwnerRefused)
    assert not isinstance(without_owner.value, OwnerRefused)


def test_people_answers_in_other_shapes_are_read() -> None:
    users = [
        {"id": 5, "name": "A", "telegramId": "", "telegram": "", "status": "ActiveWithoutAccess"},
        {"id": "user:6", "name": "B", "telegramId": "123", "status": "SomethingNew"},
        {"id": "7", "name": "C", "isDeleted": True},
        {"id": None, "name": "no id"},
        "not an object",
    ]

    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"result": "success", "users": users})

    found = _in_memory(answer, lambda c: c.list_employees())

    assert [(p.id, p.telegram_id, p.status, p.is_active) for p in found] == [
        ("user:5", None, PersonStatus.ACTIVE_WITHOUT_ACCESS, True),
        ("user:6", 123, None, True),
        ("user:7", None, None, False),
    ]


def test_usernames_compare_without_decoration_or_case() -> None:
    assert normalize_username(" https://t.me/Ivan/ ") == "Ivan"
    assert normalize_username("@ivan") == "ivan"
    assert normalize_username("") == ""
    assert same_username("@IVAN", "t.me/ivan")
    assert not same_username("", "")
    assert not same_username("ivan", "ivan2")
