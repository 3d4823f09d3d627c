"""The Planfix gateway as a real subprocess: fake Planfix scenario -> HTTP -> NATS -> fetch -> NATS.

One gateway serves most tests (module fixture) on the session's NATS; tests that need the
service to start differently (bad token, Planfix or NATS down) start their own, and those that
keep running use a private nats-server so that they never take notices from the shared one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlencode

import httpx
import pytest
from pydantic import ValidationError

from bridge_lib.settings import describe_settings_error
from contracts.events import (
    AnyEvent,
    Event,
    PlanfixCommentAction,
    PlanfixCommentAdded,
    PlanfixCommentDeleted,
    PlanfixCommentUpdated,
    PlanfixCommentWebhookReceived,
    PlanfixFile,
    planfix_source_object_id,
)
from devtools import devstack
from sandbox.fake_planfix import FakePlanfix
from services.planfix_gateway.config import PlanfixGatewaySettings
from tests.conftest import PLANFIX_TOKEN, WEBHOOK_SECRET
from tests.support import LoopThread, ServiceProcess, eventually, read_stream_events, run_module, stays

E = TypeVar("E", bound=Event)
OUR_SOURCE_ID = "0c6b7f0e-2d7a-4f0e-9a56-6a3f1c9b8e11"


@dataclass
class Gateway:
    service: ServiceProcess
    base_url: str

    @property
    def webhook_url(self) -> str:
        return f"{self.base_url}/planfix/webhook/{WEBHOOK_SECRET}"

    def healthy(self) -> bool:
        try:
            return httpx.get(f"{self.base_url}/healthz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False


def gateway_env(
    *, nats_url: str, planfix_url: str, port: int, token: str = PLANFIX_TOKEN, **extra: str
) -> dict[str, str]:
    return {
        **extra,
        "PLANFIX_BASE_URL": planfix_url,
        "PLANFIX_API_TOKEN": token,
        "PLANFIX_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "PLANFIX_WEBHOOK_HOST": "127.0.0.1",
        "PLANFIX_WEBHOOK_PORT": str(port),
        "PLANFIX_TIMEOUT_S": "5",
        # The shared fake enforces no rate; a high budget keeps these tests quick.
        "PLANFIX_RATE_PER_S": "50",
        "NATS_URL": nats_url,
    }


def start_gateway(log_dir: Path, **env: str) -> Gateway:
    """Start a gateway and wait until it answers; the caller stops it."""
    port = devstack.free_port()
    log_dir.mkdir(parents=True, exist_ok=True)
    service = ServiceProcess("planfix_gateway", gateway_env(port=port, **env), log_dir).start()
    gateway = Gateway(service=service, base_url=f"http://127.0.0.1:{port}")

    def up() -> bool:
        assert service.alive(), f"gateway exited:\n{service.log_text()}"
        return gateway.healthy()

    eventually(up, timeout_s=30, what="gateway answering /healthz")
    return gateway


@pytest.fixture(scope="module")
def gateway(nats_url: str, fake_planfix: FakePlanfix, work_dir: Path) -> Iterator[Gateway]:
    running = start_gateway(work_dir / "gateway-main", nats_url=nats_url, planfix_url=fake_planfix.base_url)
    try:
        yield running
    finally:
        running.service.stop()


@pytest.fixture
def scenario_to(gateway: Gateway, fake_planfix: FakePlanfix) -> Iterator[None]:
    """Point the fake's comment scenario at the gateway for one test."""
    with fake_planfix.webhooks_to(gateway.webhook_url):
        yield


def task_events(loop: LoopThread, nats_url: str, task_number: int) -> list[AnyEvent]:
    events = loop.run(read_stream_events(nats_url, "planfix.>"))
    return [event for _, event in events if getattr(event, "task_number", None) == task_number]


def of_type(events: list[AnyEvent], kind: type[E]) -> list[E]:
    return [event for event in events if isinstance(event, kind)]


def wait_events(loop: LoopThread, nats_url: str, task_number: int, count: int) -> list[AnyEvent]:
    def enough() -> list[AnyEvent]:
        events = task_events(loop, nats_url, task_number)
        return events if len(events) >= count else []

    return eventually(enough, what=f"{count} events for task {task_number}")


def post(
    gateway: Gateway,
    body: bytes,
    *,
    url: str | None = None,
    content_type: str = "application/json",
    headers: list[tuple[str, str]] | None = None,
) -> httpx.Response:
    return httpx.post(
        url or gateway.webhook_url,
        content=body,
        headers=[("Content-Type", content_type), *(headers or [])],
        timeout=30,
    )


def ids_body(task: int | str, comment: int | str) -> bytes:
    return f'{{"event":"comment.added","task":"{task}","comment":"{comment}"}}'.encode()


# --- the happy path and duplicates ------------------------------------------------------------


def test_employee_comment_becomes_webhook_and_comment_events(
    loop: LoopThread, nats_url: str, fake_planfix: FakePlanfix, scenario_to: None
) -> None:
    task = fake_planfix.add_task("Gateway happy path")
    comment_id = fake_planfix.add_employee_comment(task, "<p>Hello from <b>Planfix</b></p>")

    events = wait_events(loop, nats_url, task, 2)
    stays(lambda: len(task_events(loop, nats_url, task)) == 2, for_s=1.0, what="exactly two events")

    [notice] = of_type(events, PlanfixCommentWebhookReceived)
    [added] = of_type(events, PlanfixCommentAdded)
    assert (notice.task_number, notice.comment_id) == (task, comment_id)
    assert notice.correlation_id == notice.event_id
    assert (added.task_number, added.comment_id) == (task, comment_id)
    assert added.text_html == "<p>Hello from <b>Planfix</b></p>"
    assert (added.author.id, added.author.name) == ("user:7", "Olga Smirnova")
    assert (added.source_id, added.source_object_id) == (None, None)
    assert added.written_at
    assert added.correlation_id == notice.correlation_id
    assert added.causation_id == notice.event_id
    # The fake records the answer after reading it, which may be just after the events landed.
    [delivery] = eventually(
        lambda: [d for d in fake_planfix.webhook_deliveries if d.comment_id == comment_id],
        what="the scenario request's answer",
    )
    assert delivery.status == 200


def test_a_burst_of_comments_in_a_few_tasks_is_stored_once_each_in_order_per_task(
    loop: LoopThread, nats_url: str, fake_planfix: FakePlanfix, gateway: Gateway, scenario_to: None
) -> None:
    tasks = [fake_planfix.add_task(f"Gateway burst {n}") for n in range(4)]
    written: dict[int, list[int]] = {task: [] for task in tasks}
    for n in range(10):  # the tasks' comments interleaved, as several people write at once
        for task in tasks:
            written[task].append(fake_planfix.add_employee_comment(task, f"<p>burst {n}</p>"))

    def all_stored() -> dict[int, list[int]]:
        events = loop.run(read_stream_events(nats_url, "planfix.comment.added.>"))
        stored: dict[int, list[int]] = {task: [] for task in tasks}
        for _, event in events:
            if isinstance(event, PlanfixCommentAdded) and event.task_number in stored:
                stored[event.task_number].append(event.comment_id)
        return stored if sum(map(len, stored.values())) >= 40 else {}

    stored = eventually(all_stored, timeout_s=60, what="every comment of the burst")
    eventually(lambda: fake_planfix.webhooks_waiting() == 0, what="every notice answered")
    stays(lambda: all_stored() == stored, for_s=1.0, what="nothing stored twice")

    assert stored == written  # once each, in Planfix's order per task
    assert "batch_consumer_started" in gateway.service.log_text()


def test_same_webhook_twice_is_stored_once(
    loop: LoopThread, nats_url: str, fake_planfix: FakePlanfix, gateway: Gateway, scenario_to: None
) -> None:
    task = fake_planfix.add_task("Gateway duplicate")
    comment_id = fake_planfix.add_employee_comment(task, "once")
    eventually(lambda: len(task_events(loop, nats_url, task)) == 2, what="first delivery handled")

    fake_planfix.post_webhook(task, comment_id)
    # The same ids in another accepted spelling are the same notice too.
    again = post(gateway, f'{{"taskNumber": {task}, "commentId": {comment_id}}}'.encode())

    assert again.status_code == 200
    assert again.json() == {"ok": True}
    eventually(
        lambda: len([d for d in fake_planfix.webhook_deliveries if d.comment_id == comment_id]) == 2,
        what="second scenario request answered",
    )
    assert {d.status for d in fake_planfix.webhook_deliveries if d.comment_id == comment_id} == {200}
    stays(lambda: len(task_events(loop, nats_url, task)) == 2, for_s=1.5, what="still one of each")


def test_bridge_comment_is_marked_as_ours(
    loop: LoopThread, nats_url: str, fake_planfix: FakePlanfix, scenario_to: None
) -> None:
    task = fake_planfix.add_task("Gateway echo marker")

    async def write() -> int:
        from bridge_lib.planfix import PlanfixClient

        async with PlanfixClient(base_url=fake_planfix.base_url, token=PLANFIX_TOKEN) as client:
            return await client.add_comment(
                task_number=task,
                description_html="relayed",
                source_id=OUR_SOURCE_ID,
                source_object_id=planfix_source_object_id("tg:msg:-100500:7"),
            )

    comment_id = loop.run(write())

    [added] = eventually(
        lambda: of_type(task_events(loop, nats_url, task), PlanfixCommentAdded), what="the comment event"
    )
    assert added.comment_id == comment_id
    assert (added.source_id, added.source_object_id) == (
        OUR_SOURCE_ID,
        planfix_source_object_id("tg:msg:-100500:7"),
    )
    assert (added.author.id, added.author.name) == ("user:1", "Bridge Robot")


def test_a_comment_with_files_carries_their_ids_names_and_sizes(
    loop: LoopThread, nats_url: str, fake_planfix: FakePlanfix, scenario_to: None
) -> None:
    task = fake_planfix.add_task("Gateway files")
    scan = fake_planfix.add_file("scan.pdf", b"%PDF-1.4 scan")
    photo = fake_planfix.add_file("printer.jpg", b"\xff\xd8 jpeg", size=70_000_000)

    fake_planfix.add_employee_comment(task, "see attached", files=(scan, photo))

    [added] = eventually(
        lambda: of_type(task_events(loop, nats_url, task), PlanfixCommentAdded), what="the comment event"
    )
    assert added.files == [
        PlanfixFile(id=scan, name="scan.pdf", size=len(b"%PDF-1.4 scan")),
        PlanfixFile(id=photo, name="printer.jpg", size=70_000_000),
    ]


def test_an_edited_comment_becomes_an_update_with_the_new_text(
    loop: LoopThread, nats_url: str, fake_planfix: FakePlanfix, scenario_to: None
) -> None:
    task = fake_planfix.add_task("Gateway edit")
    comment_id = fake_planfix.add_employee_comment(task, "first version")
    eventually(lambda: of_type(task_events(loop, nats_url, task), PlanfixCommentAdded), what="added")

    fake_planfix.edit_comment(comment_id, "<p>second version</p>")
    fake_planfix.edit_comment(comment_id, "<p>third version</p>")

    updates = eventually(
        lambda: [
            e
            for e in of_type(task_events(loop, nats_url, task), PlanfixCommentUpdated)
            if "third" in e.text_html
        ],
        what="the latest edit",
    )
    notices = of_type(task_events(loop, nats_url, task), PlanfixCommentWebhookReceived)
    assert [n.action for n in notices] == [
        PlanfixCommentAction.ADDED,
        PlanfixCommentAction.UPDATED,
        PlanfixCommentAction.UPDATED,
    ]
    assert updates[-1].comment_id == comment_id
    assert updates[-1].author.name == "Olga Smirnova"
    assert len(of_type(task_events(loop, nats_url, task), PlanfixCommentUpdated)) == 2


def test_a_deleted_comment_becomes_one_deletion_and_a_false_notice_none(
    loop: LoopThread, nats_url: str, fake_planfix: FakePlanfix, gateway: Gateway, scenario_to: None
) -> None:
    task = fake_planfix.add_task("Gateway delete")
    kept = fake_planfix.add_employee_comment(task, "still here")
    gone = fake_planfix.add_employee_comment(task, "about to go")
    eventually(
        lambda: len(of_type(task_events(loop, nats_url, task), PlanfixCommentAdded)) == 2, what="added"
    )

    assert (
        post(
            gateway, f'{{"event":"comment.deleted","task":"{task}","comment":"{kept}"}}'.encode()
        ).status_code
        == 200
    )
    fake_planfix.delete_comment(gone)
    fake_planfix.post_webhook(task, gone, "comment.deleted")

    [deleted] = eventually(
        lambda: of_type(task_events(loop, nats_url, task), PlanfixCommentDeleted), what="the deletion"
    )
    assert (deleted.task_number, deleted.comment_id) == (task, gone)
    stays(
        lambda: len(of_type(task_events(loop, nats_url, task), PlanfixCommentDeleted)) == 1,
        for_s=1.0,
        what="one deletion, none for the comment still there",
    )


def test_comment_task_wins_over_webhook_task(
    loop: LoopThread, nats_url: str, fake_planfix: FakePlanfix, gateway: Gateway
) -> None:
    real_task = fake_planfix.add_task("Gateway real task")
    wrong_task = fake_planfix.add_task("Gateway wrong task")
    comment_id = fake_planfix.add_employee_comment(real_task, "where am I", fire_webhook=False)

    assert post(gateway, ids_body(wrong_task, comment_id)).status_code == 200

    [added] = eventually(
        lambda: of_type(task_events(loop, nats_url, real_task), PlanfixCommentAdded),
        what="comment event on the comment's own task",
    )
    assert added.comment_id == comment_id
    assert of_type(task_events(loop, nats_url, wrong_task), PlanfixCommentAdded) == []


def test_vanished_comment_is_skipped(
    loop: LoopThread, nats_url: str, fake_planfix: FakePlanfix, gateway: Gateway
) -> None:
    task = fake_planfix.add_task("Gateway vanished comment")
    assert post(gateway, ids_body(task, 89_000_001)).status_code == 200
    later = fake_planfix.add_employee_comment(task, "after the vanished one", fire_webhook=False)
    assert post(gateway, ids_body(task, later)).status_code == 200

    # One consumer, one message at a time: the later comment shows the missing one was settled.
    [added] = eventually(
        lambda: of_type(task_events(loop, nats_url, task), PlanfixCommentAdded), what="the later comment"
    )
    assert added.comment_id == later
    assert any(c.path == "/rest/comment/89000001" and c.status == 400 for c in fake_planfix.calls)


# --- bad input ----------------------------------------------------------------------------------


def test_wrong_secret_is_401_and_publishes_nothing(loop: LoopThread, nats_url: str, gateway: Gateway) -> None:
    task = 7_300_001
    for secret in ("not-the-right-secret-at-all", WEBHOOK_SECRET[:-1], WEBHOOK_SECRET + "x"):
        response = post(gateway, ids_body(task, 1), url=f"{gateway.base_url}/planfix/webhook/{secret}")
        assert response.status_code == 401
    stays(lambda: task_events(loop, nats_url, task) == [], for_s=1.0, what="nothing published")


MALFORMED: list[tuple[str, bytes, int]] = [
    ("neither JSON nor a form", b"task 7300002, comment 1", 400),
    ("a form with a field twice", b"task=7300014&task=7300015&comment=1", 400),
    ("a form without the comment", b"task=7300016&text=hello", 400),
    ("empty", b"", 400),
    (
        "broken JSON whose ids cannot be read",
        b'{"task":"7300003","comment":"1","text":"He said "comment": 2,\n"}',
        400,
    ),
    ("not an object", b'["7300004", "1"]', 400),
    ("missing comment", b'{"task": "7300005"}', 400),
    ("missing task", b'{"comment": "1"}', 400),
    ("non-numeric task", b'{"task": "73x0006", "comment": "1"}', 400),
    ("template not filled", b'{"task": "{{Task.Number}}", "comment": "{{Comment.Id}}"}', 400),
    ("float id", b'{"task": 7300007.5, "comment": 1}', 400),
    ("bool id", b'{"task": true, "comment": 1}', 400),
    ("negative id", b'{"task": -7300008, "comment": 1}', 400),
    ("zero id", b'{"task": 7300009, "comment": 0}', 400),
    ("too big for int64", b'{"task": 99999999999999999999, "comment": 1}', 400),
    ("other event", b'{"event": "task.updated", "task": 7300010, "comment": 1}', 400),
    ("invalid utf-8", b'{"task": "7300011", "comment": "\xff\xfe"}', 400),
    ("huge", b'{"task": 7300012, "comment": 1, "pad": "' + b"x" * 70_000 + b'"}', 413),
]


@pytest.mark.parametrize(
    ("body", "status"), [(b, s) for _, b, s in MALFORMED], ids=[n for n, _, _ in MALFORMED]
)
def test_malformed_body_is_rejected(gateway: Gateway, body: bytes, status: int) -> None:
    response = post(gateway, body)

    assert response.status_code == status
    assert response.json()["error"]
    assert gateway.healthy()


def test_a_body_broken_by_raw_newlines_and_quotes_is_still_read_by_its_ids(
    loop: LoopThread, nats_url: str, fake_planfix: FakePlanfix, gateway: Gateway
) -> None:
    task = fake_planfix.add_task("Gateway pasted text")
    comment_id = fake_planfix.add_employee_comment(task, 'He said "hi"', fire_webhook=False)
    # A scenario that also pastes the comment's text: Planfix inserts it raw.
    body = f'{{"event":"comment.added","task":"{task}","comment":"{comment_id}","text":"He said "hi"\nbye"}}'

    response = post(gateway, body.encode())

    assert response.status_code == 200
    [added] = eventually(
        lambda: of_type(task_events(loop, nats_url, task), PlanfixCommentAdded), what="comment fetched"
    )
    assert added.comment_id == comment_id


def multipart(fields: dict[str, str], boundary: str = "planfix-boundary") -> bytes:
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'
        for name, value in fields.items()
    ]
    return ("".join(parts) + f"--{boundary}--\r\n").encode()


PASTED_TEXT = 'He said "hi"\nand & left = 1'
FORMS: list[tuple[str, str, Callable[[int, int], bytes]]] = [
    (
        "urlencoded",
        "application/x-www-form-urlencoded",
        lambda task, comment: f"event=comment.added&task={task}&comment={comment}".encode(),
    ),
    (
        "urlencoded with a pasted text",
        "application/x-www-form-urlencoded; charset=UTF-8",
        lambda task, comment: urlencode({"task": task, "comment": comment, "text": PASTED_TEXT}).encode(),
    ),
    (
        "multipart",
        "multipart/form-data; boundary=planfix-boundary",
        lambda task, comment: multipart({"task": str(task), "comment": str(comment), "text": PASTED_TEXT}),
    ),
    ("JSON declared as a form", "application/x-www-form-urlencoded", ids_body),
    (
        "a form sent as text/plain",
        "text/plain",
        lambda task, comment: f"taskNumber={task}&commentId={comment}".encode(),
    ),
]


@pytest.mark.parametrize(
    ("content_type", "body_of"), [(t, b) for _, t, b in FORMS], ids=[name for name, _, _ in FORMS]
)
def test_a_form_scenario_body_is_read_like_json(
    loop: LoopThread,
    nats_url: str,
    fake_planfix: FakePlanfix,
    gateway: Gateway,
    content_type: str,
    body_of: Callable[[int, int], bytes],
) -> None:
    task = fake_planfix.add_task("Gateway form body")
    comment_id = fake_planfix.add_employee_comment(task, "<p>sent as a form</p>", fire_webhook=False)

    response = post(gateway, body_of(task, comment_id), content_type=content_type)

    assert response.status_code == 200, response.text
    assert response.json() == {"ok": True}
    [added] = eventually(
        lambda: of_type(task_events(loop, nats_url, task), PlanfixCommentAdded), what="comment fetched"
    )
    assert (added.comment_id, added.text_html) == (comment_id, "<p>sent as a form</p>")


def test_a_form_and_json_notice_of_one_comment_are_one_notice(
    loop: LoopThread, nats_url: str, fake_planfix: FakePlanfix, gateway: Gateway
) -> None:
    task = fake_planfix.add_task("Gateway form and JSON")
    comment_id = fake_planfix.add_employee_comment(task, "once", fire_webhook=False)

    assert post(gateway, ids_body(task, comment_id)).status_code == 200
    form = f"task={task}&comment={comment_id}".encode()
    assert post(gateway, form, content_type="application/x-www-form-urlencoded").status_code == 200

    eventually(lambda: len(task_events(loop, nats_url, task)) == 2, what="notice and comment")
    stays(lambda: len(task_events(loop, nats_url, task)) == 2, for_s=1.0, what="still one of each")


def test_hidden_comments_are_not_relayed(
    loop: LoopThread, nats_url: str, fake_planfix: FakePlanfix, gateway: Gateway
) -> None:
    task = fake_planfix.add_task("Gateway hidden")
    hidden = fake_planfix.add_employee_comment(task, "internal note", fire_webhook=False, hidden=True)
    shown = fake_planfix.add_employee_comment(task, "for everyone", fire_webhook=False)

    assert post(gateway, ids_body(task, hidden)).status_code == 200
    assert post(gateway, ids_body(task, shown)).status_code == 200

    [added] = eventually(
        lambda: of_type(task_events(loop, nats_url, task), PlanfixCommentAdded), what="the shown comment"
    )
    assert added.comment_id == shown
    stays(
        lambda: len(of_type(task_events(loop, nats_url, task), PlanfixCommentAdded)) == 1,
        for_s=1.0,
        what="hidden comment not published",
    )


def test_huge_chunked_body_is_413(gateway: Gateway) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"task": 7300013, "comment": 1, "pad": "'
        for _ in range(100):
            yield b"x" * 1024
        yield b'"}'

    # No Content-Length: the limit must hold while reading.
    response = httpx.post(f"{gateway.webhook_url}", content=chunks(), timeout=10)

    assert response.status_code == 413
    assert gateway.healthy()


def test_rejected_bodies_published_nothing(loop: LoopThread, nats_url: str, gateway: Gateway) -> None:
    for body, _ in [(b, s) for _, b, s in MALFORMED]:
        post(gateway, body)
    events = loop.run(read_stream_events(nats_url, "planfix.>"))
    assert [e for _, e in events if 7_300_000 < getattr(e, "task_number", 0) < 7_400_000] == []
    assert gateway.service.alive()


# --- the optional header: a second factor beside the secret path --------------------------------------

HEADER_NAME = "X-Bridge-Key"
HEADER_VALUE = "second-factor-0123456789abcdef"


def test_the_optional_header_is_a_second_factor_refused_like_a_wrong_secret_and_never_logged(
    loop: LoopThread, work_dir: Path, fake_planfix: FakePlanfix
) -> None:
    # A NATS server of its own: this gateway must not take the shared one's notices.
    nats = devstack.start_nats(work_dir / "nats-gateway-header", log_file=work_dir / "nats-header.log")
    url = nats.extra["url"]
    running = start_gateway(
        work_dir / "gateway-header",
        nats_url=url,
        planfix_url=fake_planfix.base_url,
        PLANFIX_WEBHOOK_HEADER_NAME=HEADER_NAME,
        PLANFIX_WEBHOOK_HEADER_VALUE=HEADER_VALUE,
    )
    try:
        wrong_secret = post(
            running, ids_body(7_600_001, 1), url=f"{running.base_url}/planfix/webhook/wrong-secret-x"
        )
        refused = {
            "no header": post(running, ids_body(7_600_002, 2)),
            "wrong value": post(running, ids_body(7_600_003, 3), headers=[(HEADER_NAME, "x" * 30)]),
            "value plus one": post(
                running, ids_body(7_600_004, 4), headers=[(HEADER_NAME, HEADER_VALUE + "x")]
            ),
            "value twice": post(
                running,
                ids_body(7_600_005, 5),
                headers=[(HEADER_NAME, HEADER_VALUE), (HEADER_NAME, HEADER_VALUE)],
            ),
            "right header, wrong secret": post(
                running,
                ids_body(7_600_006, 6),
                url=f"{running.base_url}/planfix/webhook/wrong-secret-x",
                headers=[(HEADER_NAME, HEADER_VALUE)],
            ),
        }
        accepted = post(running, ids_body(7_600_007, 7), headers=[(HEADER_NAME.lower(), HEADER_VALUE)])
        form = post(
            running,
            b"task=7600008&comment=8",
            content_type="application/x-www-form-urlencoded",
            headers=[(HEADER_NAME, HEADER_VALUE)],
        )
        stored = {
            event.task_number
            for _, event in loop.run(read_stream_events(url, "planfix.webhook.comment.>"))
            if isinstance(event, PlanfixCommentWebhookReceived)
        }
    finally:
        running.service.stop()
        nats.stop()

    assert (wrong_secret.status_code, wrong_secret.json()) == (401, {"error": "unauthorized"})
    for what, response in refused.items():
        # The same answer as a wrong secret: a caller cannot tell which factor failed.
        assert (response.status_code, response.json()) == (401, {"error": "unauthorized"}), what
    assert (accepted.status_code, form.status_code) == (200, 200)
    assert stored == {7_600_007, 7_600_008}
    log = running.service.log_text()
    assert "webhook_bad_header" in log
    assert HEADER_VALUE not in log
    assert WEBHOOK_SECRET not in log


HEADER_SETTINGS: list[tuple[str, dict[str, str], str | None]] = [
    ("neither", {}, None),
    (
        "both",
        {"PLANFIX_WEBHOOK_HEADER_NAME": "X-Bridge-Key", "PLANFIX_WEBHOOK_HEADER_VALUE": HEADER_VALUE},
        None,
    ),
    ("name only", {"PLANFIX_WEBHOOK_HEADER_NAME": "X-Bridge-Key"}, "go together"),
    ("value only", {"PLANFIX_WEBHOOK_HEADER_VALUE": HEADER_VALUE}, "go together"),
    (
        "a short value",
        {"PLANFIX_WEBHOOK_HEADER_NAME": "X-Bridge-Key", "PLANFIX_WEBHOOK_HEADER_VALUE": "short-value"},
        "PLANFIX_WEBHOOK_HEADER_VALUE is invalid",
    ),
    (
        "a value with a line break",
        {
            "PLANFIX_WEBHOOK_HEADER_NAME": "X-Bridge-Key",
            "PLANFIX_WEBHOOK_HEADER_VALUE": HEADER_VALUE + "\nX: y",
        },
        "printable ASCII",
    ),
    (
        "a value ending in a space",
        {"PLANFIX_WEBHOOK_HEADER_NAME": "X-Bridge-Key", "PLANFIX_WEBHOOK_HEADER_VALUE": HEADER_VALUE + " "},
        "printable ASCII",
    ),
    (
        "a name with a space",
        {"PLANFIX_WEBHOOK_HEADER_NAME": "X Bridge Key", "PLANFIX_WEBHOOK_HEADER_VALUE": HEADER_VALUE},
        "PLANFIX_WEBHOOK_HEADER_NAME is invalid",
    ),
    (
        "a name HTTP sets",
        {"PLANFIX_WEBHOOK_HEADER_NAME": "Content-Type", "PLANFIX_WEBHOOK_HEADER_VALUE": HEADER_VALUE},
        "set by HTTP or a proxy",
    ),
]


@pytest.mark.parametrize(
    ("values", "complaint"), [case[1:] for case in HEADER_SETTINGS], ids=[case[0] for case in HEADER_SETTINGS]
)
def test_the_header_settings_are_checked_at_start_without_showing_the_value(
    values: dict[str, str], complaint: str | None
) -> None:
    required = {
        "PLANFIX_BASE_URL": "https://example.planfix.com/rest/",
        "PLANFIX_API_TOKEN": "t",
        "PLANFIX_WEBHOOK_SECRET": WEBHOOK_SECRET,
    }

    try:
        # Validated as given: neither the environment nor a .env file adds to it.
        settings = PlanfixGatewaySettings.model_validate({**required, **values})
    except ValidationError as error:
        problems = "\n".join(describe_settings_error(error))
        assert complaint is not None, problems
        assert complaint in problems
        assert HEADER_VALUE not in problems
        return
    assert complaint is None
    if values:
        assert settings.planfix_webhook_header == ("X-Bridge-Key", HEADER_VALUE)
        assert HEADER_VALUE not in repr(settings)
    else:
        assert settings.planfix_webhook_header is None


# --- outages --------------------------------------------------------------------------------------


def test_comment_arrives_once_planfix_is_back(
    loop: LoopThread, nats_url: str, fake_planfix: FakePlanfix, scenario_to: None
) -> None:
    task = fake_planfix.add_task("Gateway Planfix outage")
    fake_planfix.set_unavailable(True)
    try:
        fake_planfix.add_employee_comment(task, "written during the outage")
        eventually(
            lambda: of_type(task_events(loop, nats_url, task), PlanfixCommentWebhookReceived),
            what="the notice stored while Planfix is down",
        )
        eventually(
            lambda: any(
                c.path == f"/rest/task/{task}/comments/list" and c.status == 503 for c in fake_planfix.calls
            ),
            what="a failed read of the task's comments",
        )
        assert of_type(task_events(loop, nats_url, task), PlanfixCommentAdded) == []
    finally:
        fake_planfix.set_unavailable(False)

    [added] = eventually(
        lambda: of_type(task_events(loop, nats_url, task), PlanfixCommentAdded),
        timeout_s=40,
        what="the comment after the outage",
    )
    assert added.text_html == "written during the outage"


def test_comments_whose_notices_failed_are_stored_in_order_before_a_later_one_and_not_again(
    loop: LoopThread, nats_url: str, fake_planfix: FakePlanfix, gateway: Gateway
) -> None:
    task = fake_planfix.add_task("Gateway notices lost and resent")
    fake_planfix.webhook_url = gateway.webhook_url
    first = fake_planfix.add_employee_comment(task, "kept first")
    eventually(lambda: of_type(task_events(loop, nats_url, task), PlanfixCommentAdded), what="the first")
    # Nothing answers for two comments (the gateway restarting): Planfix resends them 15 min on.
    fake_planfix.webhook_url = "http://127.0.0.1:9/planfix/webhook/nobody-home"
    missed = [fake_planfix.add_employee_comment(task, f"missed {n}") for n in (1, 2)]
    eventually(lambda: fake_planfix.webhooks_waiting() == 0, what="the failed requests")
    fake_planfix.webhook_url = gateway.webhook_url
    try:
        latest = fake_planfix.add_employee_comment(task, "announced after the restart")
        eventually(
            lambda: len(of_type(task_events(loop, nats_url, task), PlanfixCommentAdded)) == 4,
            what="every comment",
        )
        for comment_id in missed:  # the late resends
            fake_planfix.post_webhook(task, comment_id)
        eventually(lambda: fake_planfix.webhooks_waiting() == 0, what="the resends answered")
        stays(
            lambda: len(of_type(task_events(loop, nats_url, task), PlanfixCommentAdded)) == 4,
            for_s=1.0,
            what="nothing stored twice",
        )
    finally:
        fake_planfix.webhook_url = None

    added = of_type(task_events(loop, nats_url, task), PlanfixCommentAdded)
    assert [event.comment_id for event in added] == [first, *missed, latest]


def test_nats_down_answers_503_then_recovers(work_dir: Path, fake_planfix: FakePlanfix) -> None:
    nats_dir = work_dir / "nats-gateway-outage"
    nats = devstack.start_nats(nats_dir, log_file=work_dir / "nats-gateway-outage.log")
    url = nats.extra["url"]
    running = start_gateway(work_dir / "gateway-nats-outage", nats_url=url, planfix_url=fake_planfix.base_url)
    try:
        assert post(running, ids_body(7_400_001, 1)).status_code == 200
        nats.stop()

        during = post(running, ids_body(7_400_002, 2))

        assert during.status_code == 503
        assert running.healthy()
        nats = devstack.start_nats(nats_dir, port=nats.port, log_file=work_dir / "nats-gateway-outage.log")
        eventually(
            lambda: post(running, ids_body(7_400_002, 2)).status_code == 200,
            timeout_s=30,
            what="accepting again after NATS is back",
        )
    finally:
        running.service.stop()
        nats.stop()


# --- start-up and shutdown ------------------------------------------------------------------------


def test_missing_settings_exit_2_naming_them(work_dir: Path) -> None:
    # Run outside the repository so that no .env file can fill the gaps.
    result = run_module("services.planfix_gateway", without=("PLANFIX_", "NATS_"), cwd=work_dir)

    assert result.returncode == 2
    for name in ("PLANFIX_BASE_URL", "PLANFIX_API_TOKEN", "PLANFIX_WEBHOOK_SECRET"):
        assert name in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_short_secret_is_refused(work_dir: Path) -> None:
    env = {
        "PLANFIX_BASE_URL": "http://127.0.0.1:9/rest/",
        "PLANFIX_API_TOKEN": "t",
        "PLANFIX_WEBHOOK_SECRET": "short",
    }
    result = run_module("services.planfix_gateway", env=env, cwd=work_dir)

    assert result.returncode == 2
    assert "PLANFIX_WEBHOOK_SECRET is invalid" in result.stderr
    assert "Traceback" not in result.stderr


def test_bad_token_exits_2(nats_url: str, fake_planfix: FakePlanfix, work_dir: Path) -> None:
    log_dir = work_dir / "gateway-bad-token"
    log_dir.mkdir(parents=True, exist_ok=True)
    env = gateway_env(
        nats_url=nats_url, planfix_url=fake_planfix.base_url, port=devstack.free_port(), token="revoked-token"
    )
    service = ServiceProcess("planfix_gateway", env, log_dir).start()
    assert service.process is not None
    try:
        code = service.process.wait(30)
    finally:
        service.stop()

    assert code == 2
    assert "planfix_token_rejected" in service.log_text()
    assert "PLANFIX_API_TOKEN" in service.log_text()
    assert "Traceback" not in service.log_text()


def test_unreachable_planfix_only_warns_and_sigterm_exits_0(work_dir: Path) -> None:
    nats = devstack.start_nats(work_dir / "nats-gateway-noplanfix", log_file=work_dir / "nats-noplanfix.log")
    try:
        running = start_gateway(
            work_dir / "gateway-noplanfix", nats_url=nats.extra["url"], planfix_url="http://127.0.0.1:9/rest/"
        )
        try:
            assert post(running, ids_body(7_500_001, 1)).status_code == 200
        finally:
            code = running.service.stop()
    finally:
        nats.stop()

    assert code == 0
    log = running.service.log_text()
    assert "planfix_unreachable_at_start" in log
    assert "planfix_gateway_stopped" in log
    assert "Traceback" not in log


def test_sigterm_while_waiting_for_nats_exits_0(fake_planfix: FakePlanfix, work_dir: Path) -> None:
    log_dir = work_dir / "gateway-no-nats"
    log_dir.mkdir(parents=True, exist_ok=True)
    env = gateway_env(
        nats_url=f"nats://127.0.0.1:{devstack.free_port()}",
        planfix_url=fake_planfix.base_url,
        port=devstack.free_port(),
    )
    service = ServiceProcess("planfix_gateway", env, log_dir).start()
    try:
        eventually(lambda: "nats_connecting" in service.log_text(), timeout_s=30, what="waiting for NATS")
    finally:
        code = service.stop()

    assert code == 0
    assert "stopped_during_startup" in service.log_text()
    assert "Traceback" not in service.log_text()
