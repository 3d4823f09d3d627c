"""``bridge_lib.planfix.PlanfixClient`` against the fake Planfix, and the fake's own promises.

The client runs on the test loop thread next to the fake (``loop.run``). The fake is shared by
the whole session: each test makes its own tasks and restores any option it changes.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
import stamina
from aiohttp import web

from bridge_lib.planfix import (
    CommentNotFound,
    DailyLimitReached,
    FileNotFound,
    FileTooLarge,
    FileTooLargeToDownload,
    PlanfixAuthError,
    PlanfixClient,
    PlanfixFileInfo,
    PlanfixNoAnswer,
    PlanfixUnavailable,
    TaskDefaults,
    TaskNotFound,
)
from contracts.events import planfix_source_object_id
from sandbox.fake_planfix import FakePlanfix, RecordedCall, WebhookDelivery
from sandbox.fake_telegram import FakeTelegram
from tests.conftest import BOT_TOKEN, PLANFIX_TOKEN
from tests.support import LoopThread, ServiceProcess, eventually, serving, stays

SOURCE_ID = "0c6b7f0e-2d7a-4f0e-9a56-6a3f1c9b8e11"
OTHER_SOURCE_ID = "11111111-2222-3333-4444-555555555555"
T = TypeVar("T")


def comment_from_telegram(
    task_number: int, html: str, message_key: str, *, file_ids: list[int] | None = None
) -> Callable[[PlanfixClient], Awaitable[int]]:
    """For ``with_client``: add the comment the relay writes for a Telegram message (its key, e.g.
    "tg:-1:1", as the comment's source object id)."""
    return lambda c: c.add_comment(
        task_number=task_number,
        description_html=html,
        source_id=SOURCE_ID,
        source_object_id=planfix_source_object_id(message_key),
        file_ids=file_ids,
    )


@pytest.fixture
def with_client(loop: LoopThread, fake_planfix: FakePlanfix) -> Callable[..., Any]:
    """Run ``action(client)`` on the loop with a fresh client; ``token`` overrides the good one."""

    def run(
        action: Callable[[PlanfixClient], Awaitable[T]], token: str = PLANFIX_TOKEN, retry_attempts: int = 1
    ) -> T:
        async def go() -> T:
            async with PlanfixClient(
                base_url=fake_planfix.base_url, token=token, timeout_s=5, retry_attempts=retry_attempts
            ) as client:
                return await action(client)

        return loop.run(go())

    return run


def test_create_and_get_task(with_client: Callable[..., Any], fake_planfix: FakePlanfix) -> None:
    number = with_client(lambda c: c.create_task(name="TG: Support", description="Bound to chat -100123"))

    task = with_client(lambda c: c.get_task(number))

    assert (task.number, task.name) == (number, "TG: Support")
    stored = fake_planfix.task(number)
    assert stored is not None
    assert stored.description == "Bound to chat -100123"
    create = [c for c in fake_planfix.calls if c.method == "POST" and c.path == "/rest/task/"]
    assert create[-1].json == {"name": "TG: Support", "description": "Bound to chat -100123"}


def test_add_task_numbers(fake_planfix: FakePlanfix) -> None:
    chosen = fake_planfix.add_task("Chosen number", number=7_100_001)
    assert chosen == 7_100_001
    automatic = fake_planfix.add_task("Next free")
    assert automatic >= 4800
    assert automatic != chosen
    with pytest.raises(ValueError, match="already exists"):
        fake_planfix.add_task("Twice", number=chosen)


def test_unknown_task_is_task_not_found(with_client: Callable[..., Any]) -> None:
    with pytest.raises(TaskNotFound) as caught:
        with_client(lambda c: c.get_task(7_199_999))
    assert caught.value.code == 1000


def test_comment_on_unknown_task_is_task_not_found(with_client: Callable[..., Any]) -> None:
    with pytest.raises(TaskNotFound):
        with_client(comment_from_telegram(7_199_998, "hi", "tg:1:1"))


def test_bad_token_is_auth_error(with_client: Callable[..., Any], fake_planfix: FakePlanfix) -> None:
    number = fake_planfix.add_task("Auth check")
    with pytest.raises(PlanfixAuthError) as caught:
        with_client(lambda c: c.get_task(number), token="wrong-token")
    assert caught.value.code == 1
    assert caught.value.status == 401


def test_outage_is_unavailable(
    with_client: Callable[..., Any], fake_planfix: FakePlanfix, planfix_down: None
) -> None:
    number = fake_planfix.add_task("Outage check")
    with pytest.raises(PlanfixUnavailable):
        with_client(lambda c: c.get_task(number))
    with pytest.raises(PlanfixUnavailable):
        with_client(lambda c: c.get_comment(90001))


def test_unreachable_is_unavailable(loop: LoopThread) -> None:
    async def go() -> None:
        # Port 9 (discard) on loopback: nothing listens there in the test environment.
        async with PlanfixClient(
            base_url="http://127.0.0.1:9/rest/", token="x", timeout_s=2, retry_attempts=1
        ) as client:
            await client.get_task(1)

    with pytest.raises(PlanfixUnavailable):
        loop.run(go())


def test_add_and_get_comment(with_client: Callable[..., Any], fake_planfix: FakePlanfix) -> None:
    number = fake_planfix.add_task("Comments")
    comment_id = with_client(
        comment_from_telegram(number, "<b>Ivan (TG)</b>: hello<br>second line", "tg:-100123:456")
    )

    comment = with_client(lambda c: c.get_comment(comment_id, source_id=SOURCE_ID))

    assert comment_id >= 90001
    assert comment.id == comment_id
    assert comment.task_number == number
    assert comment.description == "<b>Ivan (TG)</b>: hello<br>second line"
    # Written through the API: owned by the token's employee.
    assert (comment.owner_id, comment.owner_name) == ("user:1", "Bridge Robot")
    assert comment.source_object_id == planfix_source_object_id("tg:-100123:456")
    assert comment.written_at is not None
    assert not comment.is_deleted
    [stored] = fake_planfix.comments(number)
    assert (stored.source_id, stored.source_object_id) == (
        SOURCE_ID,
        planfix_source_object_id("tg:-100123:456"),
    )


def test_source_object_id_is_scoped_by_source_id(
    with_client: Callable[..., Any], fake_planfix: FakePlanfix
) -> None:
    number = fake_planfix.add_task("Scoping")
    ours = with_client(comment_from_telegram(number, "from tg", "tg:-1:1"))

    assert with_client(lambda c: c.get_comment(ours, source_id=OTHER_SOURCE_ID)).source_object_id is None
    assert with_client(lambda c: c.get_comment(ours)).source_object_id is None
    listed_other = with_client(lambda c: c.list_comments(number, source_id=OTHER_SOURCE_ID))
    listed_ours = with_client(lambda c: c.list_comments(number, source_id=SOURCE_ID))
    assert [c.source_object_id for c in listed_other] == [None]
    assert [c.source_object_id for c in listed_ours] == [planfix_source_object_id("tg:-1:1")]


def test_employee_comment_and_list_pages(with_client: Callable[..., Any], fake_planfix: FakePlanfix) -> None:
    number = fake_planfix.add_task("Paging")
    ids = [fake_planfix.add_employee_comment(number, f"comment {i}", fire_webhook=False) for i in range(5)]

    first = with_client(lambda c: c.list_comments(number, page_size=2))
    rest = with_client(lambda c: c.list_comments(number, offset=2, page_size=100))
    one = with_client(lambda c: c.get_comment(ids[0], source_id=SOURCE_ID))

    assert [c.id for c in first + rest] == ids
    assert [c.description for c in first] == ["comment 0", "comment 1"]
    assert (one.owner_id, one.owner_name, one.source_object_id) == ("user:7", "Olga Smirnova", None)
    assert ids == sorted(ids)


def test_unknown_comment_is_comment_not_found(with_client: Callable[..., Any]) -> None:
    with pytest.raises(CommentNotFound) as caught:
        with_client(lambda c: c.get_comment(89_999))
    assert caught.value.code == 5000


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "code"),
    [
        ("POST", "task/", b"{not json", 400, 30),
        ("POST", "task/", b'{"description": "no name"}', 400, 40),
        ("POST", "task/", b'["an", "array"]', 400, 30),
        ("GET", "task/abc", None, 404, None),
    ],
)
def test_raw_errors(
    fake_planfix: FakePlanfix, method: str, path: str, body: bytes | None, status: int, code: int | None
) -> None:
    response = httpx.request(
        method,
        fake_planfix.base_url + path,
        content=body,
        headers={"Authorization": f"Bearer {PLANFIX_TOKEN}"},
    )
    assert response.status_code == status
    if code is not None:
        assert response.json()["result"] == "fail"
        assert response.json()["code"] == code


def test_raw_auth_and_ping(fake_planfix: FakePlanfix) -> None:
    missing = httpx.get(fake_planfix.base_url + "ping")
    query_token = httpx.get(fake_planfix.base_url + "ping", params={"access_token": PLANFIX_TOKEN})
    assert missing.status_code == 401
    assert missing.json() == {"result": "fail", "code": 1, "error": missing.json()["error"]}
    assert query_token.json() == {"result": "success"}


def test_page_size_is_at_most_100(fake_planfix: FakePlanfix) -> None:
    number = fake_planfix.add_task("Cap")
    for i in range(101):
        fake_planfix.add_employee_comment(number, f"c{i}", fire_webhook=False)
    url = f"{fake_planfix.base_url}task/{number}/comments/list"
    auth = {"Authorization": f"Bearer {PLANFIX_TOKEN}"}
    default = httpx.post(url, json={}, headers=auth)
    # The spec's pageSize has maximum 100: more is refused (code 30, HTTP 500 as the list lists).
    over = httpx.post(url, json={"pageSize": 500}, headers=auth)
    assert len(default.json()["comments"]) == 100
    assert (over.status_code, over.json()["code"]) == (500, 30)


class _Receiver:
    """A tiny scenario-request receiver that notices overlapping requests."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.runner: web.AppRunner | None = None
        self.url = ""

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/hook", self.handle)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self.runner.addresses[0][1]}/hook"

    async def handle(self, request: web.Request) -> web.Response:
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            self.bodies.append(json.loads(await request.read()))
            await asyncio.sleep(0.05)
            return web.Response(status=200 if len(self.bodies) != 2 else 500)
        finally:
            self.in_flight -= 1


def test_scenario_requests_one_at_a_time(
    loop: LoopThread, fake_planfix: FakePlanfix, with_client: Callable[..., Any]
) -> None:
    receiver = _Receiver()
    loop.run(receiver.start())
    try:
        with fake_planfix.webhooks_to(receiver.url):
            number = fake_planfix.add_task("Scenario")
            ui_ids = [fake_planfix.add_employee_comment(number, f"ui {i}") for i in range(3)]
            api_id = with_client(comment_from_telegram(number, "api", "tg:-5:5"))
            fake_planfix.post_webhook(number, ui_ids[0])
            fake_planfix.add_employee_comment(number, "silent", fire_webhook=False)

            expected = [*ui_ids, api_id, ui_ids[0]]

            def mine() -> list[WebhookDelivery]:
                return [d for d in fake_planfix.webhook_deliveries if d.task_number == number]

            eventually(lambda: len(mine()) >= len(expected), what="five scenario requests")
            stays(lambda: len(mine()) == len(expected), for_s=0.3, what="no request for the silent comment")
            deliveries = mine()
    finally:
        assert receiver.runner is not None
        loop.run(receiver.runner.cleanup())

    assert [d.comment_id for d in deliveries] == expected
    assert [d.status for d in deliveries] == [200, 500, 200, 200, 200]
    assert receiver.bodies == [
        {"event": "comment.added", "task": str(number), "comment": str(c)} for c in expected
    ]
    assert receiver.max_in_flight == 1


def test_api_comments_can_skip_the_scenario(
    fake_planfix: FakePlanfix, with_client: Callable[..., Any]
) -> None:
    fake_planfix.fire_webhooks_for_api_comments = False
    try:
        with fake_planfix.webhooks_to("http://127.0.0.1:9/never"):
            number = fake_planfix.add_task("No echo scenario")
            with_client(comment_from_telegram(number, "api", "tg:-6:6"))
            ui = fake_planfix.add_employee_comment(number, "ui")
            [delivery] = eventually(
                lambda: [d for d in fake_planfix.webhook_deliveries if d.task_number == number],
                what="the UI comment's scenario request",
            )
    finally:
        fake_planfix.fire_webhooks_for_api_comments = True
    assert delivery.comment_id == ui
    # Nothing listens there: no answer is recorded as status 0 with the error.
    assert delivery.status == 0
    assert delivery.error


# --- the complete client: task defaults, comment updates, files, self-check ---------------------


def calls_to(fake: FakePlanfix, method: str, path: str) -> list[RecordedCall]:
    return [c for c in fake.calls if c.method == method and c.path == path]


def test_create_task_sends_template_project_and_assignees(
    loop: LoopThread, fake_planfix: FakePlanfix
) -> None:
    defaults = TaskDefaults(template_id=12, project_id=34, assignees=("user:5", "group:3"))

    async def go() -> int:
        async with PlanfixClient(
            base_url=fake_planfix.base_url, token=PLANFIX_TOKEN, task_defaults=defaults
        ) as client:
            return await client.create_task(name="With defaults")

    number = loop.run(go())

    task = fake_planfix.task(number)
    assert task is not None
    assert task.extra == {
        "template": {"id": 12},
        "project": {"id": 34},
        "assignees": {"users": [{"id": "user:5"}], "groups": [{"id": 3}]},
    }


def test_upload_a_file_and_attach_it_then_update_the_comment(
    with_client: Callable[..., Any], fake_planfix: FakePlanfix
) -> None:
    number = fake_planfix.add_task("Files")
    file_id = with_client(lambda c: c.upload_file(name="report.pdf", data=b"%PDF-1.4 hi", content_type="x/y"))
    comment_id = with_client(comment_from_telegram(number, "see file", "tg:-7:7", file_ids=[file_id]))

    with_client(
        lambda c: c.update_comment(task_number=number, comment_id=comment_id, description_html="edited")
    )

    stored = fake_planfix.file(file_id)
    assert stored is not None
    assert (stored.name, stored.content_type, stored.data) == ("report.pdf", "x/y", b"%PDF-1.4 hi")
    comment = fake_planfix.comment(comment_id)
    assert comment is not None
    assert (comment.description, comment.files, comment.updates) == ("edited", (file_id,), 1)
    read = with_client(lambda c: c.get_comment(comment_id))
    assert read.file_ids == [file_id]
    [update] = calls_to(fake_planfix, "POST", f"/rest/task/{number}/comments/{comment_id}")
    assert update.json == {"description": "edited"}


def test_a_file_over_the_plans_limit_is_file_too_large(
    with_client: Callable[..., Any], fake_planfix: FakePlanfix
) -> None:
    limit = fake_planfix.max_file_size
    fake_planfix.max_file_size = 1000
    try:
        with pytest.raises(FileTooLarge) as caught:
            with_client(lambda c: c.upload_file(name="big.bin", data=b"x" * 1001))
    finally:
        fake_planfix.max_file_size = limit
    assert caught.value.code == 7002


def test_updating_an_unknown_comment_is_comment_not_found(
    with_client: Callable[..., Any], fake_planfix: FakePlanfix
) -> None:
    number = fake_planfix.add_task("No such comment")
    with pytest.raises(CommentNotFound):
        with_client(lambda c: c.update_comment(task_number=number, comment_id=1, description_html="x"))


def test_ping_checks_the_token(with_client: Callable[..., Any]) -> None:
    with_client(lambda c: c.ping())
    with pytest.raises(PlanfixAuthError):
        with_client(lambda c: c.ping(), token="revoked")


# --- retries --------------------------------------------------------------------------------------


@pytest.fixture
def no_retry_waits() -> Iterator[None]:
    stamina.set_testing(True, attempts=100, cap=True)
    try:
        yield
    finally:
        stamina.set_testing(False)


def test_a_read_is_retried_through_5xx_answers(
    with_client: Callable[..., Any], fake_planfix: FakePlanfix, no_retry_waits: None
) -> None:
    number = fake_planfix.add_task("Retry 5xx")
    fake_planfix.fail_next(2, status=502)

    task = with_client(lambda c: c.get_task(number), retry_attempts=3)

    assert task.name == "Retry 5xx"
    assert [c.status for c in calls_to(fake_planfix, "GET", f"/rest/task/{number}")] == [502, 502, 200]


def test_a_read_is_retried_after_a_timeout(
    loop: LoopThread, fake_planfix: FakePlanfix, no_retry_waits: None
) -> None:
    number = fake_planfix.add_task("Retry timeout")
    fake_planfix.delay_next(1.5)

    async def go() -> str:
        async with PlanfixClient(
            base_url=fake_planfix.base_url, token=PLANFIX_TOKEN, timeout_s=0.5, retry_attempts=2
        ) as client:
            return (await client.get_task(number)).name

    assert loop.run(go()) == "Retry timeout"


def test_a_creation_is_not_repeated_after_a_5xx(
    with_client: Callable[..., Any], fake_planfix: FakePlanfix, no_retry_waits: None
) -> None:
    # A 5xx after a POST may mean the comment exists: repeating it here could post it twice.
    number = fake_planfix.add_task("No blind repeat")
    fake_planfix.fail_next(1, status=502)

    with pytest.raises(PlanfixUnavailable):
        with_client(
            comment_from_telegram(number, "x", "tg:-8:8"),
            retry_attempts=3,
        )
    assert len(calls_to(fake_planfix, "POST", f"/rest/task/{number}/comments/")) == 1


@pytest.mark.parametrize(("delay_s", "status"), [(1.5, None), (0.0, 504)])
def test_a_creation_that_got_no_answer_says_planfix_may_have_made_it(
    loop: LoopThread, fake_planfix: FakePlanfix, no_retry_waits: None, delay_s: float, status: int | None
) -> None:
    # A timeout, or a gateway's 504: the relay then looks for the comment before posting again.
    number = fake_planfix.add_task("No answer")
    if delay_s:
        fake_planfix.delay_next(delay_s)
    if status:
        fake_planfix.fail_next(1, status=status)

    async def go() -> None:
        async with PlanfixClient(
            base_url=fake_planfix.base_url, token=PLANFIX_TOKEN, timeout_s=0.5, retry_attempts=3
        ) as client:
            await client.add_comment(
                task_number=number,
                description_html="x",
                source_id=SOURCE_ID,
                source_object_id=planfix_source_object_id("tg:-8:9"),
            )

    with pytest.raises(PlanfixNoAnswer):
        loop.run(go())
    assert len(calls_to(fake_planfix, "POST", f"/rest/task/{number}/comments/")) <= 1


def test_unknown_task_code_1000_is_not_retried(
    with_client: Callable[..., Any], fake_planfix: FakePlanfix, no_retry_waits: None
) -> None:
    with pytest.raises(TaskNotFound):
        with_client(lambda c: c.get_task(7_188_888), retry_attempts=4)
    assert len(calls_to(fake_planfix, "GET", "/rest/task/7188888")) == 1


def test_throttling_is_retried_and_the_daily_cap_is_reported(loop: LoopThread) -> None:
    with serving(
        loop, FakePlanfix(token=PLANFIX_TOKEN, rate_per_s=1.0, rate_tolerance_s=0.0, daily_cap=4)
    ) as fake:
        number = fake.add_task("Limits")

        async def go() -> tuple[list[int | None], type[Exception] | None]:
            seen: list[int | None] = []
            async with PlanfixClient(base_url=fake.base_url, token=PLANFIX_TOKEN, retry_attempts=3) as client:
                for _ in range(4):
                    await client.get_task(number)  # the 2nd..4th overrun 1/s, wait Retry-After, pass
                    seen.append(client.daily_budget_remaining)
                try:
                    await client.get_task(number)
                except DailyLimitReached as error:
                    return seen, type(error)
            return seen, None

        remaining, error = loop.run(go(), timeout_s=60)
    assert remaining == [3, 2, 1, 0]
    assert error is DailyLimitReached
    statuses = [c.status for c in fake.calls]
    assert statuses.count(200) == 4
    assert 429 in statuses
    assert statuses[-1] == 403  # code 22, not retried


@pytest.mark.parametrize("service", ["binder", "relay"])
def test_a_service_with_a_refused_token_says_so_and_exits_2(
    service: str,
    fake_planfix: FakePlanfix,
    fake_telegram: FakeTelegram,
    nats_url: str,
    mongo_url: str,
    work_dir: Path,
) -> None:
    log_dir = work_dir / f"bad-token-{service}"
    log_dir.mkdir(exist_ok=True)
    env = {
        "NATS_URL": nats_url,
        "MONGODB_URL": mongo_url,
        "TELEGRAM_BOT_TOKEN": BOT_TOKEN,
        "TELEGRAM_API_BASE_URL": fake_telegram.base_url,
        "PLANFIX_BASE_URL": fake_planfix.base_url,
        "PLANFIX_API_TOKEN": "revoked-token",
        "PLANFIX_RATE_PER_S": "50",
    }
    process = ServiceProcess(service, env, log_dir).start()
    assert process.process is not None

    code = process.process.wait(timeout=60)

    assert code == 2, process.log_text()
    assert "planfix_token_rejected" in process.log_text()
    assert "revoked-token" not in process.log_text()


# --- files ------------------------------------------------------------------------------------


def test_a_comments_files_are_read_and_downloaded(
    with_client: Callable[..., Any], fake_planfix: FakePlanfix, tmp_path: Path
) -> None:
    task = fake_planfix.add_task("Files")
    data = bytes(range(256)) * 3000  # 768 kB: several chunks
    file_id = fake_planfix.add_file("scan.pdf", data)
    comment_id = fake_planfix.add_employee_comment(
        task, "scan attached", files=(file_id,), fire_webhook=False
    )

    comment = with_client(lambda c: c.get_comment(comment_id))
    info = with_client(lambda c: c.get_file(file_id))
    written = with_client(lambda c: c.download_file(file_id, tmp_path / "scan.pdf", max_bytes=1_000_000))

    assert comment.files == (PlanfixFileInfo(id=file_id, name="scan.pdf", size=len(data)),)
    assert info == PlanfixFileInfo(id=file_id, name="scan.pdf", size=len(data))
    assert written == len(data)
    assert (tmp_path / "scan.pdf").read_bytes() == data


def test_a_download_past_the_limit_keeps_nothing(
    with_client: Callable[..., Any], fake_planfix: FakePlanfix, tmp_path: Path
) -> None:
    file_id = fake_planfix.add_file("big.bin", b"x" * 10_000)

    with pytest.raises(FileTooLargeToDownload):
        with_client(lambda c: c.download_file(file_id, tmp_path / "big.bin", max_bytes=9_999))

    assert not (tmp_path / "big.bin").exists()


def test_an_unknown_file_is_file_not_found(with_client: Callable[..., Any], tmp_path: Path) -> None:
    with pytest.raises(FileNotFound):
        with_client(lambda c: c.get_file(79_999_999))
    with pytest.raises(FileNotFound):
        with_client(lambda c: c.download_file(79_999_999, tmp_path / "none", max_bytes=100))
    assert not (tmp_path / "none").exists()


def test_over_the_daily_cap_the_account_pauses_until_time_to_reset(loop: LoopThread) -> None:
    """One refusal (code 22, ``timeToReset``) pauses the account's calls: the next ones are not
    sent at all until then, and go through again after."""
    with serving(loop, FakePlanfix(token=PLANFIX_TOKEN)) as fake:
        number = fake.add_task("Over the cap")
        fake.use_up_daily_cap(reset_after_s=2.0)

        async def go() -> list[float | None]:
            waits: list[float | None] = []
            async with PlanfixClient(base_url=fake.base_url, token=PLANFIX_TOKEN, retry_attempts=3) as client:
                for _ in range(3):
                    try:
                        await client.get_task(number)
                    except DailyLimitReached as error:
                        waits.append(error.reset_after_s)
                await asyncio.sleep(2.2)
                await client.get_task(number)
            return waits

        waits = loop.run(go(), timeout_s=30)
    assert len(waits) == 3
    assert all(wait is not None and 0 < wait <= 2.0 for wait in waits)
    assert fake.refused_for_daily_cap() == 1  # the two after it were never sent
    assert fake.calls[-1].status == 200
