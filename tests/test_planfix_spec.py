"""The real Planfix client and the fake Planfix, held to Planfix's published OpenAPI document.

The document is swagger 1.3.4 (``https://help.planfix.com/restapidocs/swagger.json``), cut down
by ``tools/planfix_spec_extract.py`` to the calls the bridge makes (``sandbox/planfix_spec/``).
Requests are recorded raw at the client's transport and validated with ``openapi-core``:
method, path, query, body (required fields, types, formats such as uuid, enums). Every answer
the fake gives is validated too: a status the operation lists (or a generic error: 401, 403,
429, 5xx), its body schema, its headers (``Location`` on the download's 302).
"""

from __future__ import annotations

import inspect
import json
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import httpx
import pytest

from bridge_lib.aiohttp_transport import AiohttpTransport
from bridge_lib.planfix import PlanfixClient, Recipients, TaskPeople
from sandbox.fake_planfix import FakePlanfix
from sandbox.planfix_spec import EXTRACT_PATH, load_spec
from sandbox.planfix_spec.checker import RequestChecker
from tests.conftest import PLANFIX_TOKEN
from tests.planfix_openapi import Exchange, RecordingTransport, spec_check
from tests.support import LoopThread, serving
from tools import planfix_spec_extract

SOURCE_ID = "0c6b7f0e-2d7a-4f0e-9a56-6a3f1c9b8e11"
# Any fixed namespace: the test only needs well-formed UUIDs where the document wants them.
TEST_NAMESPACE = uuid.UUID("5f0e7c1a-9d55-4c4e-8a0b-0d7c1f2e3a4b")
AUTH = {"Authorization": f"Bearer {PLANFIX_TOKEN}"}

Driver = Callable[[PlanfixClient, FakePlanfix, Path], Awaitable[None]]


@dataclass(frozen=True)
class Call:
    operation_id: str
    drive: Driver


async def _ping(client: PlanfixClient, fake: FakePlanfix, tmp: Path) -> None:
    await client.ping()


async def _create_task(client: PlanfixClient, fake: FakePlanfix, tmp: Path) -> None:
    assigner = fake.add_employee("Task Setter", telegram_id=7_000_001)
    await client.create_task(name="Printer", description="<p>jammed</p>", assigner=assigner)


async def _get_task_people(client: PlanfixClient, fake: FakePlanfix, tmp: Path) -> None:
    task = fake.add_task("People")
    employee = fake.add_employee("Anna", telegram_id=7_000_002)
    contact = fake.add_contact("Client", telegram_id=7_000_003)
    fake.set_task_people(
        task,
        assigner=employee,
        assignees=(employee, "group:3"),
        participants=(contact,),
        auditors=("user:1",),
    )
    people = await client.get_task_people(task)
    assert people.everyone == {employee, contact, "user:1"}


async def _find_employees_by_telegram_id(client: PlanfixClient, fake: FakePlanfix, tmp: Path) -> None:
    employee = fake.add_employee("Boris", telegram_id=7_000_004, telegram="boris_spec")
    assert [p.id for p in await client.find_employees_by_telegram_id(7_000_004)] == [employee]


async def _find_employees_by_telegram_username(client: PlanfixClient, fake: FakePlanfix, tmp: Path) -> None:
    employee = fake.add_employee("Vera", telegram="https://t.me/vera_spec")
    assert [p.id for p in await client.find_employees_by_telegram_username("@Vera_Spec")] == [employee]


async def _list_employees(client: PlanfixClient, fake: FakePlanfix, tmp: Path) -> None:
    fake.add_employee("Gleb", telegram_id=7_000_005, active=False)
    assert await client.list_employees(only_active=True)


async def _find_contacts_by_telegram_id(client: PlanfixClient, fake: FakePlanfix, tmp: Path) -> None:
    contact = fake.add_contact("Dina", telegram_id=7_000_006)
    assert [p.id for p in await client.find_contacts_by_telegram_id(7_000_006)] == [contact]


async def _find_contacts_by_telegram_username(client: PlanfixClient, fake: FakePlanfix, tmp: Path) -> None:
    contact = fake.add_contact("Egor", telegram="egor_spec")
    assert [p.id for p in await client.find_contacts_by_telegram_username("egor_spec")] == [contact]


async def _create_contact(client: PlanfixClient, fake: FakePlanfix, tmp: Path) -> None:
    await client.create_contact(
        name="Fedor", lastname="Petrov", telegram_id=7_000_007, telegram_username="fedor"
    )


async def _get_task(client: PlanfixClient, fake: FakePlanfix, tmp: Path) -> None:
    await client.get_task(fake.add_task("Read me"))


async def _add_comment(client: PlanfixClient, fake: FakePlanfix, tmp: Path) -> None:
    file_id = fake.add_file("scan.pdf", b"%PDF-1.4 scan")
    await client.add_comment(
        task_number=fake.add_task("Comment on me"),
        description_html="<p>from <b>Telegram</b></p>",
        source_id=SOURCE_ID,
        source_object_id=str(uuid.uuid5(TEST_NAMESPACE, "tg:msg:-1001:7")),
        file_ids=[file_id],
    )


async def _add_comment_as_owner(client: PlanfixClient, fake: FakePlanfix, tmp: Path) -> None:
    await client.add_comment(
        task_number=fake.add_task("Comment as someone"),
        description_html="<p>mine</p>",
        source_id=SOURCE_ID,
        source_object_id=str(uuid.uuid5(TEST_NAMESPACE, "tg:msg:-1001:8")),
        owner=fake.add_employee("Owner", telegram_id=7_000_008),
        recipients=Recipients(users=("user:1",)),
    )


async def _update_comment(client: PlanfixClient, fake: FakePlanfix, tmp: Path) -> None:
    task = fake.add_task("Edit a comment")
    comment = fake.add_employee_comment(task, "before", fire_webhook=False)
    await client.update_comment(
        task_number=task, comment_id=comment, description_html="<p>after</p>", file_ids=[]
    )


async def _get_comment(client: PlanfixClient, fake: FakePlanfix, tmp: Path) -> None:
    comment = fake.add_employee_comment(fake.add_task("Read a comment"), "hello", fire_webhook=False)
    await client.get_comment(comment, source_id=SOURCE_ID)


async def _list_comments(client: PlanfixClient, fake: FakePlanfix, tmp: Path) -> None:
    task = fake.add_task("List comments")
    for text in ("one", "two"):
        fake.add_employee_comment(task, text, fire_webhook=False)
    await client.list_comments(task, source_id=SOURCE_ID)


async def _upload_file(client: PlanfixClient, fake: FakePlanfix, tmp: Path) -> None:
    await client.upload_file(name="photo.jpg", data=b"\xff\xd8\xff jpeg", content_type="image/jpeg")


async def _get_file(client: PlanfixClient, fake: FakePlanfix, tmp: Path) -> None:
    await client.get_file(fake.add_file("notes.txt", b"notes"))


async def _download_file(client: PlanfixClient, fake: FakePlanfix, tmp: Path) -> None:
    file_id = fake.add_file("report.pdf", b"%PDF-1.7 report")
    await client.download_file(file_id, tmp / "report.pdf", max_bytes=1_000_000)


async def _get_employee(client: PlanfixClient, fake: FakePlanfix, tmp: Path) -> None:
    employee = fake.add_employee("Inna", telegram_id=7_000_009, active=False)
    found = await client.get_employee(employee)
    assert found is not None
    assert found.id == employee
    assert not found.is_active


async def _delete_comment(client: PlanfixClient, fake: FakePlanfix, tmp: Path) -> None:
    comment = fake.add_employee_comment(fake.add_task("Delete a comment"), "TGLINK", fire_webhook=False)
    await client.delete_comment(comment)
    assert comment in fake.deleted_through_api


async def _get_task_state(client: PlanfixClient, fake: FakePlanfix, tmp: Path) -> None:
    task = fake.add_task("Show my card")
    fake.set_task_people(task, assigner="user:1", assignees=["user:1", "group:3"])
    fake.set_task_deadline(task, "15-12-2026 18:00", fire_webhook=False)
    state, people = await client.get_task_state(task)
    assert (state.status_name, state.deadline, state.process_id) == ("New", "2026-12-15 18:00", 1)
    assert people.assignee_groups == frozenset({3})


async def _get_task_statuses(client: PlanfixClient, fake: FakePlanfix, tmp: Path) -> None:
    statuses = await client.get_task_statuses(1)
    assert any(status.is_active is False and "Завершенная" in status.names for status in statuses)


async def _update_task(client: PlanfixClient, fake: FakePlanfix, tmp: Path) -> None:
    task = fake.add_task("Change me")
    fake.set_task_people(task, assignees=["group:3"])
    people = TaskPeople(number=task, assignees=frozenset({"user:1"}), assignee_groups=frozenset({3}))
    applied = await client.update_task(task, status_id=3, deadline=date(2026, 12, 15), assignees=people)
    stored = fake.task(task)
    assert applied
    assert stored is not None
    assert (stored.status_id, stored.deadline, set(stored.assignees)) == (
        3,
        "15-12-2026",
        {"user:1", "group:3"},
    )


# Every public call of the client with the operation of the document it makes. A call added to
# the client without a line here fails test_every_client_call_is_checked_against_the_spec.
CALLS: dict[str, Call] = {
    "ping": Call("ping", _ping),
    "create_task": Call("post-task", _create_task),
    "get_task": Call("get-task-by-id", _get_task),
    "get_task_people": Call("get-task-by-id", _get_task_people),
    "find_employees_by_telegram_id": Call("get-user-list", _find_employees_by_telegram_id),
    "find_employees_by_telegram_username": Call("get-user-list", _find_employees_by_telegram_username),
    "list_employees": Call("get-user-list", _list_employees),
    "get_employee": Call("get-user-id", _get_employee),
    "find_contacts_by_telegram_id": Call("get-contact-list", _find_contacts_by_telegram_id),
    "find_contacts_by_telegram_username": Call("get-contact-list", _find_contacts_by_telegram_username),
    "create_contact": Call("post-contact", _create_contact),
    "add_comment": Call("post-task-add-comment", _add_comment),
    "update_comment": Call("post-task-update-comment", _update_comment),
    "get_comment": Call("get-comment-id", _get_comment),
    "list_comments": Call("get-task-comments", _list_comments),
    "delete_comment": Call("delete-comment-id", _delete_comment),
    "upload_file": Call("post-file-upload", _upload_file),
    "get_file": Call("get-file-id", _get_file),
    "download_file": Call("get-file-id-download", _download_file),
    "get_task_state": Call("get-task-by-id", _get_task_state),
    "get_task_statuses": Call("get-task-status-list", _get_task_statuses),
    "update_task": Call("post-task-by-id", _update_task),
}
# Other ways of calling the same operation, checked the same way (not client calls of their own).
VARIANTS: dict[str, Call] = {
    "add_comment with an owner and recipients": Call("post-task-add-comment", _add_comment_as_owner),
}
# Public coroutines of the client that call nothing in Planfix.
NOT_PLANFIX_CALLS = frozenset({"aclose"})


@pytest.fixture(scope="module")
def fake(loop: LoopThread) -> Iterator[FakePlanfix]:
    with serving(loop, FakePlanfix(token=PLANFIX_TOKEN)) as fake:
        yield fake


def _run_call(loop: LoopThread, fake: FakePlanfix, call: Call, tmp: Path) -> list[Exchange]:
    recorder = RecordingTransport(AiohttpTransport())

    async def go() -> None:
        async with PlanfixClient(
            base_url=fake.base_url, token=PLANFIX_TOKEN, transport=recorder, retry_attempts=1
        ) as client:
            await call.drive(client, fake, tmp)

    loop.run(go())
    return recorder.exchanges


def _raw(loop: LoopThread, method: str, url: str, **kwargs: Any) -> Exchange:
    """One request sent as given (no client), recorded."""
    recorder = RecordingTransport(httpx.AsyncHTTPTransport())

    async def go() -> None:
        async with httpx.AsyncClient(transport=recorder) as client:
            await client.request(method, url, **kwargs)

    loop.run(go())
    return recorder.exchanges[-1]


def _assert_valid(exchange: Exchange) -> None:
    check = spec_check()
    operation = check.operation(exchange)
    where = f"{exchange.method} {exchange.url} -> {exchange.status}"
    assert operation is not None, f"{where}: no operation of the document"
    assert check.request_errors(exchange) == [], where
    assert check.response_errors(exchange) == [], where


# --- the client's requests --------------------------------------------------------------------


def test_every_client_call_is_checked_against_the_spec() -> None:
    public = {
        name
        for name, member in inspect.getmembers(PlanfixClient, inspect.iscoroutinefunction)
        if not name.startswith("_")
    }
    spec = load_spec()

    assert public - NOT_PLANFIX_CALLS == set(CALLS), "a client call without a spec check (add it to CALLS)"
    assert {call.operation_id for call in CALLS.values()} <= set(spec.operations)


@pytest.mark.parametrize("name", sorted(CALLS) + sorted(VARIANTS))
def test_each_call_sends_what_the_spec_allows_and_gets_a_listed_answer(
    name: str, loop: LoopThread, fake: FakePlanfix, tmp_path: Path
) -> None:
    call = CALLS.get(name) or VARIANTS[name]

    exchanges = _run_call(loop, fake, call, tmp_path)

    api = [exchange for exchange in exchanges if exchange.is_api_call]
    operations = {operation.id for exchange in api if (operation := spec_check().operation(exchange))}
    assert call.operation_id in operations
    for exchange in api:
        _assert_valid(exchange)
        assert exchange.status < 400, exchange.response_body
    # A request past the API (the download's storage address) never carries the token.
    for exchange in exchanges:
        if not exchange.is_api_call:
            assert "authorization" not in exchange.request_headers


def test_both_forms_of_comment_recipients_are_valid(loop: LoopThread, fake: FakePlanfix) -> None:
    task = fake.add_task("Notify")
    forms = [
        {"roles": ["assignee", "participant"], "users": [{"id": "user:5"}], "groups": [{"id": 3}]},
        {"roles": "auditor"},
    ]
    for recipients in forms:
        exchange = _raw(
            loop,
            "POST",
            f"{fake.base_url}task/{task}/comments/",
            json={"description": "hi", "sourceId": SOURCE_ID, "recipients": recipients},
            headers=AUTH,
        )
        _assert_valid(exchange)
        assert exchange.status == 201
        assert fake.comment(json.loads(exchange.response_body)["id"]).recipients == recipients  # type: ignore[union-attr]


def test_download_follows_the_redirect_without_the_token(
    loop: LoopThread, fake: FakePlanfix, tmp_path: Path
) -> None:
    """Needs the client to follow the 302 (issue 13): it fails until the client does."""
    data = bytes(range(256)) * 100
    file_id = fake.add_file("photo 1.jpg", data)
    before = len(fake.storage_calls)

    async def go() -> int:
        async with PlanfixClient(base_url=fake.base_url, token=PLANFIX_TOKEN, retry_attempts=1) as client:
            return await client.download_file(file_id, tmp_path / "photo.jpg", max_bytes=1_000_000)

    written = loop.run(go())

    assert (tmp_path / "photo.jpg").read_bytes() == data
    assert written == len(data)
    assert len(fake.storage_calls) > before
    assert fake.storage_requests_with_authorization() == []


# --- the fake's answers -----------------------------------------------------------------------


def test_the_fakes_error_answers_are_in_the_spec(loop: LoopThread, fake: FakePlanfix) -> None:
    task = fake.add_task("Errors")
    base = fake.base_url
    bad = {"Authorization": "Bearer wrong"}
    # (method, path, request kwargs, expected status, expected code)
    cases: list[tuple[str, str, dict[str, Any], int, int]] = [
        ("GET", "ping", {"headers": bad}, 401, 1),
        ("GET", "comment/1", {"headers": bad}, 401, 1),
        ("GET", "task/7099999", {"headers": AUTH}, 400, 1000),
        ("GET", "comment/7099999", {"headers": AUTH}, 400, 5000),
        ("POST", "task/7099999/comments/list", {"headers": AUTH, "json": {}}, 500, 1000),
        ("POST", f"task/{task}/comments/7099999", {"headers": AUTH, "json": {"description": "x"}}, 400, 5000),
        ("GET", "file/7099999", {"headers": AUTH}, 400, 7000),
        ("GET", "file/7099999/download", {"headers": AUTH}, 400, 7000),
        # Formats the document names are refused (code 30, the operation's error status).
        (
            "POST",
            f"task/{task}/comments/",
            {"headers": AUTH, "json": {"description": "x", "sourceObjectId": "tg:msg:-1:1"}},
            400,
            30,
        ),
        ("GET", "comment/1", {"headers": AUTH, "params": {"sourceId": "not-a-uuid"}}, 400, 30),
        ("POST", f"task/{task}/comments/list", {"headers": AUTH, "json": {"pageSize": 101}}, 500, 30),
        # People: a filter the document has but the fake does not simulate is refused, not ignored.
        (
            "POST",
            "user/list",
            {"headers": AUTH, "json": {"filters": [{"type": 9001, "operator": "equal", "value": 10}]}},
            500,
            41,
        ),
        ("POST", "contact/", {"headers": AUTH, "json": {"lastname": "Nameless"}}, 400, 40),
        ("GET", "task/7099999", {"headers": AUTH, "params": {"fields": "assigner"}}, 400, 1000),
    ]
    for method, path, kwargs, status, code in cases:
        exchange = _raw(loop, method, base + path, **kwargs)
        body = json.loads(exchange.response_body)
        assert (exchange.status, body["code"]) == (status, code), (method, path, body)
        assert body["result"] == "fail"
        assert isinstance(body["error"], str)
        assert spec_check().response_errors(exchange) == [], (method, path)


def test_a_planned_server_error_carries_a_definite_code(loop: LoopThread, fake: FakePlanfix) -> None:
    fake.fail_next(status=500, code=1000)
    with_code = _raw(loop, "GET", fake.base_url + "ping", headers=AUTH)
    fake.fail_next(status=503)
    proxy_page = _raw(loop, "GET", fake.base_url + "ping", headers=AUTH)

    assert with_code.status == 500
    assert json.loads(with_code.response_body)["code"] == 1000
    assert spec_check().response_errors(with_code) == []
    assert proxy_page.status == 503
    assert proxy_page.response_headers["content-type"].startswith("text/html")


def test_throttling_answers_as_public_code_sees_it(loop: LoopThread) -> None:
    with serving(
        loop, FakePlanfix(token=PLANFIX_TOKEN, rate_per_s=1.0, rate_tolerance_s=0.0, daily_cap=1)
    ) as fake:
        first = _raw(loop, "GET", fake.base_url + "ping", headers=AUTH)
        too_soon = _raw(loop, "GET", fake.base_url + "ping", headers=AUTH)
        fake.rate_per_s = None
        over_cap = _raw(loop, "GET", fake.base_url + "ping", headers=AUTH)

    assert first.status == 200
    assert too_soon.status == 429
    assert too_soon.response_headers["Retry-After"] == "1"
    assert over_cap.status == 403
    body = json.loads(over_cap.response_body)
    assert body["code"] == 22
    assert isinstance(body["timeToReset"], int)
    assert 0 < body["timeToReset"] <= 86_400
    assert over_cap.response_headers["X-RateLimit-Remaining"] == "0"
    for exchange in (first, too_soon, over_cap):
        assert spec_check().response_errors(exchange) == []


def test_the_download_redirects_to_storage_that_wants_no_token(loop: LoopThread, fake: FakePlanfix) -> None:
    data = b"\x89PNG not really"
    file_id = fake.add_file("Фото 1.png", data)

    redirect = _raw(loop, "GET", f"{fake.base_url}file/{file_id}/download", headers=AUTH)
    location = redirect.response_headers["Location"]
    without_token = _raw(loop, "GET", location)
    with_token = _raw(loop, "GET", location, headers=AUTH)
    guessed = _raw(loop, "GET", fake.storage_url + "guessed/x.png")

    _assert_valid(redirect)
    assert redirect.status == 302
    assert redirect.response_body != data
    assert location.startswith(fake.storage_url)
    token = location.removeprefix(fake.storage_url).split("/")[0]
    assert len(token) >= 24
    assert location.endswith("/%D0%A4%D0%BE%D1%82%D0%BE%201.png")
    assert (without_token.status, without_token.response_body) == (200, data)
    assert with_token.status == 200
    assert guessed.status == 404
    # The fake tells which storage requests carried a token, so a test can say none did.
    assert [call.path for call in fake.storage_requests_with_authorization()][-1] == with_token.url.path


# --- the fake's strict checks agree with openapi-core -----------------------------------------


def test_the_fake_refuses_exactly_what_the_spec_refuses(loop: LoopThread, fake: FakePlanfix) -> None:
    task = fake.add_task("Strict")
    comment = fake.add_employee_comment(task, "there", fire_webhook=False)
    good_uuid = str(uuid.uuid5(TEST_NAMESPACE, "x"))
    comments = f"task/{task}/comments/"
    # (method, path, kwargs): valid and invalid requests side by side.
    samples: list[tuple[str, str, dict[str, Any]]] = [
        ("POST", comments, {"json": {"description": "ok", "sourceObjectId": good_uuid, "whatever": 1}}),
        ("POST", comments, {"json": {"description": "x", "sourceObjectId": "tg:1:2"}}),
        ("POST", comments, {"json": {"description": "x", "sourceId": "x"}}),
        ("POST", comments, {"json": {"description": "x", "recipients": {"roles": "auditor"}}}),
        ("POST", comments, {"json": {"description": "x", "recipients": {"roles": ["boss"]}}}),
        ("POST", comments, {"json": {"description": "x", "files": [{"id": "a"}]}}),
        ("POST", comments, {"json": {"description": "x", "isPinned": "yes"}}),
        ("POST", comments, {"json": {"description": "x", "owner": {"id": "contact:10"}}}),
        ("POST", f"{comments}{comment}", {"json": {"description": "y", "sourceObjectId": "nope"}}),
        ("POST", f"{comments}{comment}", {"json": {"description": "y"}, "params": {"silent": "maybe"}}),
        ("POST", f"{comments}{comment}", {"json": {"description": "y"}, "params": {"silent": "true"}}),
        ("POST", f"{comments}list", {"json": {"resultOrder": [{"field": "id", "direction": "Desc"}]}}),
        ("POST", f"{comments}list", {"json": {"resultOrder": [{"filed": "dateTime", "direction": "Asc"}]}}),
        ("POST", f"{comments}list", {"json": {"resultOrder": [{"field": "id", "direction": "Down"}]}}),
        ("POST", f"{comments}list", {"json": {"pageSize": 0}}),
        ("POST", f"{comments}list", {"json": {"typeList": "Everything"}}),
        ("GET", f"comment/{comment}", {"params": {"sourceId": good_uuid, "fields": "id"}}),
        ("GET", f"comment/{comment}", {"params": {"sourceId": "nope"}}),
        ("POST", "task/", {"json": {"name": 5}}),
        ("POST", "task/", {"json": {"name": "Fine", "assignees": {"users": [{"id": "user:5"}]}}}),
        ("POST", "task/", {"json": {"name": "Set by", "assigner": {"id": "user:1"}}}),
        ("POST", "task/", {"json": {"name": "Set by", "assigner": "user:1"}}),
        ("GET", f"task/{task}", {"params": {"fields": "id,assigner,assignees,participants,auditors"}}),
        # People: the complex filters' types are the numbers (x-bridge-patches "filter-type-numbers").
        ("POST", "user/list", {"json": {"filters": [{"type": 9126, "operator": "equal", "value": 1}]}}),
        ("POST", "user/list", {"json": {"filters": [{"type": "9126", "operator": "equal", "value": 1}]}}),
        ("POST", "user/list", {"json": {"filters": [{"type": 4234, "operator": "equal", "value": 1}]}}),
        ("POST", "user/list", {"json": {"filters": [{"type": 9126, "operator": "like", "value": 1}]}}),
        ("POST", "user/list", {"json": {"filters": [{"type": 9126, "operator": "equal"}]}}),
        ("POST", "user/list", {"json": {"onlyActive": "yes"}}),
        ("POST", "user/list", {"json": {"onlyActive": True, "pageSize": 100, "fields": "id,telegram"}}),
        ("POST", "contact/list", {"json": {"filters": [{"type": 4226, "operator": "equal", "value": "x"}]}}),
        ("POST", "contact/list", {"json": {"filters": [{"type": 9126, "operator": "equal", "value": 1}]}}),
        ("POST", "contact/list", {"json": {"isCompany": True}}),
        ("POST", "contact/", {"json": {"name": "Ivan", "telegramId": "5", "telegram": "https://t.me/ivan"}}),
        ("POST", "contact/", {"json": {"name": "Ivan", "telegramId": 5}}),
        ("POST", "contact/", {"json": {"name": "Ivan", "group": {"id": "workers"}}}),
        ("POST", "contact/", {"json": {"name": "Ivan", "group": {"id": 3}, "template": {"id": 1}}}),
    ]
    for method, path, kwargs in samples:
        exchange = _raw(loop, method, fake.base_url + path, headers=AUTH, **kwargs)
        spec_says_valid = spec_check().request_errors(exchange) == []
        assert (exchange.status < 400) == spec_says_valid, (method, path, kwargs, exchange.response_body)
        assert spec_check().response_errors(exchange) == [], (method, path, kwargs)


def test_the_strict_checker_is_built_from_the_extract() -> None:
    checker = RequestChecker(load_spec())
    add = load_spec().operations["post-task-add-comment"]

    problems = checker.problems(
        add, path="/rest/task/1/comments/", query={}, json_body={"sourceObjectId": "tg:1"}
    )

    assert [str(problem) for problem in problems] == ["body sourceObjectId: 'tg:1' is not a 'uuid'"]


# --- what the fake keeps ------------------------------------------------------------------------


def test_comments_list_newest_first_when_asked(loop: LoopThread, fake: FakePlanfix) -> None:
    task = fake.add_task("Order")
    ids = [fake.add_employee_comment(task, f"c{i}", fire_webhook=False) for i in range(3)]
    url = f"{fake.base_url}task/{task}/comments/list"

    def listed(body: dict[str, Any]) -> list[int]:
        exchange = _raw(loop, "POST", url, json=body, headers=AUTH)
        _assert_valid(exchange)
        return [comment["id"] for comment in json.loads(exchange.response_body)["comments"]]

    assert listed({}) == ids
    assert listed({"resultOrder": [{"field": "id", "direction": "Desc"}]}) == ids[::-1]
    assert listed({"resultOrder": [{"filed": "id", "direction": "Desc"}], "pageSize": 2}) == ids[:0:-1]
    assert listed({"resultOrder": [{"field": "dateTime", "direction": "Desc"}, {"field": "id"}]}) == ids[::-1]


def test_a_comments_owner_and_recipients_are_kept(loop: LoopThread, fake: FakePlanfix) -> None:
    task = fake.add_task("Keep")
    recipients = {"users": [{"id": "user:7"}], "roles": ["assignee"]}
    created = _raw(
        loop,
        "POST",
        f"{fake.base_url}task/{task}/comments/",
        json={"description": "x", "owner": {"id": "contact:10"}, "recipients": recipients},
        headers=AUTH,
    )
    comment_id = json.loads(created.response_body)["id"]
    read = _raw(
        loop, "GET", f"{fake.base_url}comment/{comment_id}", params={"fields": "id,recipients"}, headers=AUTH
    )

    comment = fake.comment(comment_id)
    assert comment is not None
    assert (comment.owner_id, comment.recipients) == ("contact:10", recipients)
    _assert_valid(read)
    assert json.loads(read.response_body)["comment"]["recipients"] == {
        "users": [{"id": "user:7", "name": "Olga Smirnova"}],
        "groups": [],
    }


def test_people_are_listed_and_filtered_as_the_spec_describes(loop: LoopThread, fake: FakePlanfix) -> None:
    active = fake.add_employee("Filter", lastname="Active", telegram_id=7_100_001, telegram="@Same_Name")
    fired = fake.add_employee("Filter", lastname="Fired", telegram_id=7_100_001, active=False)
    contact = fake.add_contact("Filter", lastname="Contact", telegram_id=7_100_001, telegram="t.me/same_name")
    url = fake.base_url

    def listed(path: str, body: dict[str, Any]) -> list[dict[str, Any]]:
        exchange = _raw(loop, "POST", url + path, json=body, headers=AUTH)
        _assert_valid(exchange)
        key = "users" if path.startswith("user") else "contacts"
        found: list[dict[str, Any]] = json.loads(exchange.response_body)[key]
        return found

    by_id = [{"type": 9126, "operator": "equal", "value": 7_100_001}]
    fields = "id,name,lastname,telegramId,telegram,status"
    assert listed("user/list", {"filters": by_id, "fields": fields}) == [
        {
            "id": int(active.split(":")[1]),
            "name": "Filter",
            "lastname": "Active",
            "telegramId": "7100001",
            "telegram": "@Same_Name",
            "status": "Active",
        },
        {
            "id": int(fired.split(":")[1]),
            "name": "Filter",
            "lastname": "Fired",
            "telegramId": "7100001",
            "telegram": "",
            "status": "Inactive",
        },
    ]
    # The id as text, as the field is typed; onlyActive leaves the fired one out.
    as_text = [{"type": 9126, "operator": "equal", "value": "7100001"}]
    assert [u["id"] for u in listed("user/list", {"filters": as_text, "onlyActive": True})] == [
        int(active.split(":")[1])
    ]
    # Without fields: id and name only.
    assert set(listed("user/list", {"filters": by_id})[0]) == {"id", "name"}
    contacts_by_id = [{"type": 4234, "operator": "equal", "value": 7_100_001}]
    by_name = [{"type": 4226, "operator": "equal", "value": "SAME_NAME"}]
    assert [c["id"] for c in listed("contact/list", {"filters": contacts_by_id})] == [
        int(contact.split(":")[1])
    ]
    assert [c["id"] for c in listed("contact/list", {"filters": by_name})] == [int(contact.split(":")[1])]
    not_him = [{"type": 4234, "operator": "notequal", "value": 7_100_001}]
    assert int(contact.split(":")[1]) not in [c["id"] for c in listed("contact/list", {"filters": not_him})]


def test_a_created_contact_and_a_tasks_people_read_back(loop: LoopThread, fake: FakePlanfix) -> None:
    created = _raw(
        loop,
        "POST",
        fake.base_url + "contact/",
        json={"name": "New", "telegramId": "7100002", "telegram": "https://t.me/new_one", "group": {"id": 4}},
        headers=AUTH,
    )
    _assert_valid(created)
    assert created.status == 201
    contact = f"contact:{json.loads(created.response_body)['id']}"
    task = fake.add_task("People read back")
    fake.set_task_people(task, assigner="user:1", participants=(contact, "group:9"))

    read = _raw(
        loop,
        "GET",
        f"{fake.base_url}task/{task}",
        params={"fields": "assigner,assignees,participants,auditors"},
        headers=AUTH,
    )

    _assert_valid(read)
    assert json.loads(read.response_body)["task"] == {
        "id": task,
        "assigner": {"id": "user:1", "name": "Bridge Robot"},
        "assignees": {"users": [], "groups": []},
        "participants": {"users": [{"id": contact, "name": "New"}], "groups": [{"id": 9, "name": "Group 9"}]},
        "auditors": {"users": [], "groups": []},
    }
    stored = fake.contact(contact)
    assert stored is not None
    assert (stored.telegram_id, stored.telegram, stored.group_id) == ("7100002", "https://t.me/new_one", 4)


def test_an_owner_refused_for_the_token_is_code_6_naming_the_owner(
    loop: LoopThread, fake: FakePlanfix
) -> None:
    task = fake.add_task("Refuse owner")
    owner = fake.add_employee("Not me")
    fake.refuse_owner()
    try:
        refused = _raw(
            loop,
            "POST",
            f"{fake.base_url}task/{task}/comments/",
            json={"description": "x", "owner": {"id": owner}},
            headers=AUTH,
        )
        as_robot = _raw(
            loop, "POST", f"{fake.base_url}task/{task}/comments/", json={"description": "x"}, headers=AUTH
        )
    finally:
        fake.refuse_owner(False)

    _assert_valid(as_robot)
    assert spec_check().response_errors(refused) == []
    body = json.loads(refused.response_body)
    assert (refused.status, body["code"]) == (400, 6)
    assert owner in body["error"]
    assert [c.owner_id for c in fake.comments(task)] == ["user:1"]


def test_people_survive_a_snapshot(loop: LoopThread, fake: FakePlanfix) -> None:
    employee = fake.add_employee("Kept", telegram_id=7_100_003, telegram="kept", active=False)
    contact = fake.add_contact("Kept contact", telegram_id=7_100_004)
    task = fake.add_task("Kept people")
    fake.set_task_people(task, assigner=employee, auditors=(contact,))
    data, files = fake.snapshot()

    restored = FakePlanfix(token=PLANFIX_TOKEN)
    restored.restore(json.loads(json.dumps(data)), files)

    assert restored.employee(employee) == fake.employee(employee)
    assert restored.contact(contact) == fake.contact(contact)
    kept = restored.task(task)
    assert kept is not None
    assert (kept.assigner, kept.auditors) == (employee, (contact,))
    assert restored.add_contact("Next") not in {c.id for c in fake.contacts()}
    assert restored.add_employee("Next") not in {e.id for e in fake.employees()}


# --- the extract ------------------------------------------------------------------------------


def test_the_extract_is_up_to_date() -> None:
    spec_file = planfix_spec_extract.DEFAULT_SPEC
    if not spec_file.is_file():
        pytest.skip(f"no full copy of Planfix's document at {spec_file} to regenerate the extract from")

    assert planfix_spec_extract.extract_file(spec_file) == EXTRACT_PATH.read_text(encoding="utf-8"), (
        "regenerate it: python -m tools.planfix_spec_extract"
    )


def test_the_extract_says_what_it_is_and_keeps_no_prose() -> None:
    document = load_spec().document
    prose: list[str] = []

    def walk(node: Any, at: str, named: bool) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                # OpenAPI requires a title and a description on each response (left empty).
                required = (key == "description" and value == "") or f"{at}/{key}" == "/info/title"
                if not named and key in planfix_spec_extract.PROSE and not required:
                    prose.append(f"{at}/{key}")
                walk(value, f"{at}/{key}", key in planfix_spec_extract.NAMED_MAPS and not named)
        elif isinstance(node, list):
            for index, item in enumerate(node):
                walk(item, f"{at}/{index}", False)

    walk(document, "", False)

    assert document["info"]["version"] == "1.3.4"
    assert document["x-source"]["publishedAt"] == "https://help.planfix.com/restapidocs/swagger.json"
    assert {patch["id"] for patch in document["x-bridge-patches"]} >= {
        "notified-request-roles-array",
        "result-order-field-spelling",
    }
    assert set(load_spec().operations) == set(planfix_spec_extract.OPERATIONS)
    assert prose == []
