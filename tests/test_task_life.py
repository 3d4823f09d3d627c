"""The task's life (issue 18) in memory: dates as people write them, the completed status, who
may change a task, the lines a change makes, a task read from Planfix's JSON, the scenario's
task notice, and what a task change costs in Planfix requests."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx
import msgspec
import nats.js.errors
import pytest

from bridge_lib.eventbus import Delivery
from bridge_lib.i18n import translator
from bridge_lib.planfix import TaskPeople
from bridge_lib.planfix_tasks import TaskStatusInfo, deadline_from_json, task_state_from_json
from contracts.bindings import Binding
from contracts.events import (
    PersonLinkMethod,
    PlanfixFile,
    PlanfixPerson,
    PlanfixTaskState,
    PlanfixTaskStateChanged,
    PlanfixTaskWebhookReceived,
    TaskCommand,
    TaskCommandAnswered,
    TaskUnbound,
    encode_event,
    root_envelope,
)
from contracts.people import Person
from services.binder.bind_policy import BindPolicy
from services.binder.task_commands import ClosedTasks, closed_now, completed_status, parse_deadline, refusal
from services.planfix_gateway.task_fetcher import TaskFetcher
from services.planfix_gateway.webhook import BadWebhook, TaskChangeNotice, parse_notice, parse_webhook
from services.relay.to_telegram.task_texts import card_text, change_lines, command_answer_text
from tests.conftest import BOT_TOKEN

TODAY = date(2026, 12, 2)
EN = translator("en")


@pytest.mark.parametrize(
    ("written", "expected"),
    [
        ("15.12", date(2026, 12, 15)),
        ("15 декабря", date(2026, 12, 15)),
        ("Dec 15", date(2026, 12, 15)),
        ("December 15, 2026", date(2026, 12, 15)),
        ("15 Dec", date(2026, 12, 15)),
        ("15 дек.", date(2026, 12, 15)),
        ("15.12.2026", date(2026, 12, 15)),
        ("15/12/26", date(2026, 12, 15)),
        ("2026-12-15", date(2026, 12, 15)),
        ("15 декабря 2027 г.", date(2027, 12, 15)),
        ("1.12", date(2027, 12, 1)),  # passed this year: next year's
        ("2.12", date(2026, 12, 2)),  # today still counts
        ("завтра", date(2026, 12, 3)),
        ("Tomorrow", date(2026, 12, 3)),
        ("31.02", None),
        ("someday", None),
        ("15 smarch", None),
        ("", None),
    ],
)
def test_a_deadline_reads_in_russian_and_english_forms(written: str, expected: date | None) -> None:
    assert parse_deadline(written, today=TODAY) == expected


def status(id: int, name: str, active: bool | None, *names: str) -> TaskStatusInfo:
    return TaskStatusInfo(id=id, name=name, is_active=active, names=names)


@pytest.mark.parametrize(
    ("statuses", "expected"),
    [
        ([status(1, "New", True), status(3, "Completed", False, "Завершенная")], 3),
        ([status(1, "Новая", True), status(9, "Завершённая", False)], 9),
        # A "Done" that is still active loses to the inactive completed one.
        ([status(4, "Done", True), status(3, "Completed", False)], 3),
        ([status(1, "New", True), status(7, "Cancelled", False, "Отмененная")], None),
        ([], None),
    ],
)
def test_the_completed_status_is_named_so_and_preferably_final(
    statuses: list[TaskStatusInfo], expected: int | None
) -> None:
    found = completed_status(statuses)
    assert (found.id if found else None) == expected


EMPLOYEE = Person(telegram_user_id=5, planfix_id="user:5", name="Anna", how=PersonLinkMethod.PLANFIX_PROFILE)
CONTACT = Person(telegram_user_id=6, planfix_id="contact:6", name="Client", how=PersonLinkMethod.LINK_CODE)
ON_TASK = TaskPeople(number=1, assignees=frozenset({"user:5"}))
NOT_ON_TASK = TaskPeople(number=1, assignees=frozenset({"user:9"}))


@pytest.mark.parametrize(
    ("policy", "admin", "person", "people", "expected"),
    [
        (BindPolicy.PARTICIPANTS, False, EMPLOYEE, ON_TASK, None),
        (BindPolicy.PARTICIPANTS, True, EMPLOYEE, NOT_ON_TASK, "not_on_the_task"),
        (BindPolicy.PARTICIPANTS, True, EMPLOYEE, None, None),  # before the task is read
        (BindPolicy.PARTICIPANTS, True, None, None, "not_linked"),
        (BindPolicy.PARTICIPANTS, True, CONTACT, None, "not_an_employee"),
        (BindPolicy.EMPLOYEES, False, EMPLOYEE, NOT_ON_TASK, None),
        (BindPolicy.ADMINS, True, None, NOT_ON_TASK, None),
        (BindPolicy.ADMINS, False, EMPLOYEE, ON_TASK, "not_admin"),
        (BindPolicy.ADMINS, None, None, None, "not_admin"),
    ],
)
def test_who_may_change_the_task_follows_the_bind_policy(
    policy: BindPolicy,
    admin: bool | None,
    person: Person | None,
    people: TaskPeople | None,
    expected: str | None,
) -> None:
    assert refusal(policy, requester_is_admin=admin, person=person, task_people=people) == expected


def state(**changes: Any) -> PlanfixTaskState:
    base = PlanfixTaskState(
        name="Boiler",
        status_id=1,
        status_name="New",
        status_active=True,
        process_id=1,
        assigner=PlanfixPerson(id="user:1", name="Ivan"),
        assignees=[PlanfixPerson(id="user:5", name="Anna")],
    )
    return msgspec.structs.replace(base, **changes)


@pytest.mark.parametrize(
    ("after", "lines"),
    [
        (state(), []),
        (state(status_id=2, status_name="In progress"), ["🔄 Status: New → <b>In progress</b>"]),
        (
            state(status_id=3, status_name="Completed", status_active=False),
            ["🏁 The task is closed: New → <b>Completed</b>"],
        ),
        (
            state(assignees=[PlanfixPerson(id="user:7", name="Oleg")]),
            ["👤 Assignees added: Oleg", "👤 Assignees removed: Anna"],
        ),
        (state(deadline="2026-12-15"), ["📅 Deadline set: <b>15.12.2026</b>"]),
        (state(name="Boiler, urgently"), []),  # the card shows it; no line
    ],
)
def test_a_change_is_one_short_line_each(after: PlanfixTaskState, lines: list[str]) -> None:
    assert change_lines(state(), after, EN) == lines


def test_a_moved_and_a_removed_deadline_are_said_so() -> None:
    before = state(deadline="2026-12-15")
    assert change_lines(before, state(deadline="2026-12-20 18:00"), EN) == [
        "📅 Deadline moved: 15.12.2026 → <b>20.12.2026 18:00</b>"
    ]
    assert change_lines(before, state(), EN) == ["📅 Deadline removed"]


def test_the_card_shows_the_task_and_says_when_it_is_closed() -> None:
    card = card_text(
        4821, state(status_name="Completed", status_active=False), "https://acc.planfix.com/task/4821", EN
    )
    assert '<a href="https://acc.planfix.com/task/4821">#4821</a>' in card
    assert "Status: <b>Completed</b> (closed)" in card
    assert "Assignees: Anna" in card
    assert "Deadline: none" in card
    assert "closed" in card.splitlines()[-1]


def test_a_refusal_says_why_and_a_result_says_what() -> None:
    envelope = root_envelope("k", caused_by="k")
    refused = TaskCommandAnswered(
        **envelope, chat_id=-1, message_id=1, command=TaskCommand.DONE, done=False, outcome="not_linked"
    )
    assert command_answer_text(refused, EN).startswith("⚠️ /done not done: your Telegram is not linked")
    done = TaskCommandAnswered(
        **envelope,
        chat_id=-1,
        message_id=1,
        command=TaskCommand.DEADLINE,
        done=True,
        outcome="deadline_set",
        detail="15.12.2026",
        requested_by="Anna <b>",
    )
    assert command_answer_text(done, EN) == "📅 Anna &lt;b&gt; set the deadline to <b>15.12.2026</b>."


def test_a_task_read_from_planfix_json() -> None:
    found = task_state_from_json(
        {
            "id": 4821,
            "name": "Boiler",
            "status": {"id": "x:3", "name": "Completed", "isActive": False},
            "processId": 1,
            "assignees": {"users": [{"id": "user:9", "name": "Zoe"}, {"id": "user:5", "name": "Anna"}]},
            "endDateTime": {"date": "15-12-2026", "time": "18:00", "datetime": "2026-12-15T18:00Z"},
            "hasEndDate": True,
        }
    )
    assert (found.status_id, found.status_active, found.deadline) == (3, False, "2026-12-15 18:00")
    # Planfix's order is not a change.
    assert [person.id for person in found.assignees] == ["user:5", "user:9"]
    assert task_state_from_json({"endDateTime": {"date": "15-12-2026"}, "hasEndDate": False}).deadline is None
    assert deadline_from_json({"datetime": "2026-12-15T00:00Z"}) == "2026-12-15 00:00"
    assert deadline_from_json("15-12-2026") is None


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b'{"event":"task.changed","task":"4821"}', "application/json"),
        (b"event=task.changed&task=4821", "application/x-www-form-urlencoded"),
        # Broken by a pasted title, still read: the number appears once.
        (b'{"event":"task.changed","task":"4821","title":"say "hi""}', "application/json"),
    ],
)
def test_the_task_changed_scenario_sends_the_task_number_only(body: bytes, content_type: str) -> None:
    assert parse_notice(body, content_type) == TaskChangeNotice(4821)
    with pytest.raises(BadWebhook):
        parse_webhook(body, content_type)


# --- what a change costs ------------------------------------------------------------------------


class StoredLast:
    """The PLANFIX stream as far as ``last_task_state`` reads it: the last message by subject."""

    def __init__(self) -> None:
        self.by_subject: dict[str, tuple[int, bytes]] = {}
        self.seq = 0

    async def get_last_msg(self, stream: str, subject: str) -> Any:
        if subject not in self.by_subject:
            raise nats.js.errors.NotFoundError
        seq, data = self.by_subject[subject]
        return _Raw(seq=seq, data=data)

    async def publish(self, event: PlanfixTaskStateChanged, *, subject: str, msg_id: str) -> bool:
        self.seq += 1
        self.by_subject[subject] = (self.seq, encode_event(event))
        return True


class _Raw(msgspec.Struct):
    seq: int
    data: bytes


class CountingPlanfix:
    def __init__(self) -> None:
        self.state = state()
        self.reads = 0

    async def get_task_state(self, number: int) -> tuple[PlanfixTaskState, TaskPeople]:
        self.reads += 1
        return self.state, TaskPeople(number=number)


def notice(key: str, at: datetime) -> PlanfixTaskWebhookReceived:
    envelope = root_envelope(key, caused_by=key)
    envelope["occurred_at"] = at
    return PlanfixTaskWebhookReceived(**envelope, task_number=4821)


DELIVERY = Delivery(stream_seq=1, num_delivered=1)


def test_a_change_costs_one_read_and_repeated_notices_cost_none() -> None:
    stream, planfix = StoredLast(), CountingPlanfix()
    fetcher = TaskFetcher(planfix=planfix, publisher=stream, jetstream=lambda: stream)  # type: ignore[arg-type]
    start = datetime.now(UTC)

    async def scenario() -> None:
        await fetcher.on_notice(notice("first", start), DELIVERY)  # the first state: stored
        planfix.state = state(status_id=2, status_name="In progress")
        now = datetime.now(UTC)
        # Three notices of one change, received before it was read (a burst, Planfix's repeats).
        notices = [notice(f"n{i}", now + timedelta(microseconds=i)) for i in range(3)]
        for each in notices:
            await fetcher.on_notice(each, DELIVERY)

    asyncio.run(scenario())

    assert planfix.reads == 2  # one for the first state, one for the change
    stored = msgspec.json.decode(
        stream.by_subject["planfix.task.changed.4821"][1], type=PlanfixTaskStateChanged
    )
    assert stored.previous is not None
    assert (stored.previous.status_name, stored.state.status_name) == ("New", "In progress")
    assert stream.seq == 2


def test_a_notice_after_the_read_that_finds_nothing_new_stores_nothing() -> None:
    stream, planfix = StoredLast(), CountingPlanfix()
    fetcher = TaskFetcher(planfix=planfix, publisher=stream, jetstream=lambda: stream)  # type: ignore[arg-type]

    async def scenario() -> None:
        await fetcher.on_notice(notice("a", datetime.now(UTC)), DELIVERY)
        await fetcher.on_notice(notice("b", datetime.now(UTC) + timedelta(seconds=1)), DELIVERY)

    asyncio.run(scenario())

    assert planfix.reads == 2
    assert stream.seq == 1


# --- the fake Telegram's pinChatMessage ---------------------------------------------------------


def test_the_fake_telegram_pins_only_as_an_administrator_with_the_right(fake_telegram: Any) -> None:
    chat = -1009_000_018_001
    base = f"{fake_telegram.base_url}/bot{BOT_TOKEN}"
    sent = httpx.post(f"{base}/sendMessage", json={"chat_id": chat, "text": "card"}, timeout=10).json()
    message_id = sent["result"]["message_id"]

    def pin() -> dict[str, Any]:
        answer = httpx.post(
            f"{base}/pinChatMessage", json={"chat_id": chat, "message_id": message_id}, timeout=10
        )
        return dict(answer.json())

    assert pin() == {
        "ok": False,
        "error_code": 400,
        "description": "Bad Request: not enough rights to manage pinned messages in the chat",
    }
    fake_telegram.set_bot_admin(chat, can_pin_messages=False)
    assert pin()["ok"] is False
    fake_telegram.set_bot_admin(chat)
    assert pin() == {"ok": True, "result": True}
    assert fake_telegram.pinned_messages(chat) == [message_id]
    missing = httpx.post(f"{base}/pinChatMessage", json={"chat_id": chat, "message_id": 999_999}, timeout=10)
    assert missing.json()["description"] == "Bad Request: message to pin not found"


# --- a task closed in Planfix -------------------------------------------------------------------


def changed_event(previous: PlanfixTaskState | None, now: PlanfixTaskState) -> PlanfixTaskStateChanged:
    return PlanfixTaskStateChanged(
        **root_envelope("change", caused_by="change"), task_number=4821, state=now, previous=previous
    )


CLOSED = state(status_id=3, status_name="Completed", status_active=False)


@pytest.mark.parametrize(
    ("previous", "now", "expected"),
    [
        (state(), CLOSED, True),
        (None, CLOSED, True),
        (CLOSED, CLOSED, False),  # closed before: nothing new
        (state(), state(status_id=2, status_name="In progress"), False),
        (state(), state(is_deleted=True), True),
    ],
)
def test_a_task_is_closed_by_a_final_status_or_its_deletion(
    previous: PlanfixTaskState | None, now: PlanfixTaskState, expected: bool
) -> None:
    assert closed_now(changed_event(previous, now)) is expected


class OneBindingStore:
    def __init__(self) -> None:
        self.applied: list[Any] = []

    async def bindings_of_task(self, task_number: int) -> list[Binding]:
        return [
            Binding(
                chat_id=-1001,
                thread_id=None,
                task_number=task_number,
                task_title="Boiler",
                bound_at=datetime.now(UTC),
                bound_by_user_id=501,
                bound_event_id="bound",
            )
        ]

    async def apply(self, event: Any) -> None:
        self.applied.append(event)


class Published:
    def __init__(self) -> None:
        self.events: list[tuple[Any, str]] = []

    async def publish(self, event: Any, *, subject: str, msg_id: str) -> bool:
        self.events.append((event, subject))
        return True


@pytest.mark.parametrize("enabled", [True, False])
def test_a_closed_task_unbinds_its_groups_only_when_the_setting_says_so(enabled: bool) -> None:
    store, published = OneBindingStore(), Published()
    closer = ClosedTasks(store=store, publisher=published, enabled=enabled)  # type: ignore[arg-type]

    asyncio.run(closer.handle(changed_event(state(), CLOSED), DELIVERY))

    if not enabled:
        assert published.events == []
        return
    [(unbound, subject)] = published.events
    assert isinstance(unbound, TaskUnbound)
    assert (unbound.chat_id, unbound.unbound_by, subject) == (
        -1001,
        "planfix:task_closed",
        "binding.unbound.-1001",
    )
    assert store.applied == [unbound]


def test_a_new_file_of_the_task_is_named_with_a_link_to_the_task() -> None:
    before = state(files=[PlanfixFile(id=1, name="old.pdf")])
    after = state(files=[PlanfixFile(id=1, name="old.pdf"), PlanfixFile(id=2, name="plan <v2>.pdf")])
    assert change_lines(before, after, EN, "https://acc.planfix.com/task/4821") == [
        "📎 New file in the task: plan &lt;v2&gt;.pdf "
        '(<a href="https://acc.planfix.com/task/4821">open the task</a>)'
    ]
    assert change_lines(after, before, EN) == []  # a file removed is not announced
