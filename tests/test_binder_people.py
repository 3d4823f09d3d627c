"""The binder's requester lookup and its task notices, in memory."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import UTC, datetime

import msgspec
import pytest

from bridge_lib.eventbus import TransientFailure
from bridge_lib.i18n import translator
from bridge_lib.planfix import PersonStatus, PlanfixPerson, PlanfixUnavailable
from contracts.events import (
    AnyEvent,
    BindRejected,
    BindRequested,
    Envelope,
    Event,
    PersonLinked,
    TaskBound,
    TaskUnbound,
    TelegramUser,
)
from contracts.people import People, evolve
from services.binder.bind_policy import BindRefusal
from services.binder.decide import announcement, refused
from services.binder.people import Requesters
from services.binder.task_notices import notice_comments, who_did
from services.relay.to_telegram.notices import rejected_notice

NOW = datetime(2026, 1, 1, tzinfo=UTC)


EN = translator("en")


def env(event_id: str) -> Envelope:
    return {"event_id": event_id, "occurred_at": NOW, "correlation_id": "c", "causation_id": "c"}


STRANGER = TelegramUser(id=9, full_name="Stranger", username="str")


@dataclass
class Known:
    people: People = field(default_factory=People)

    def apply(self, event: AnyEvent) -> None:
        self.people = evolve(self.people, event)

    async def catch_up(self, timeout_s: float = 10.0) -> None:
        return None


@dataclass
class Employees:
    by_id: dict[int, list[PlanfixPerson]] = field(default_factory=dict)
    by_username: dict[str, list[PlanfixPerson]] = field(default_factory=dict)
    calls: list[str] = field(default_factory=list)
    down: bool = False

    async def find_employees_by_telegram_id(self, telegram_id: int) -> list[PlanfixPerson]:
        self.calls.append(f"id:{telegram_id}")
        if self.down:
            raise PlanfixUnavailable("down")
        return self.by_id.get(telegram_id, [])

    async def find_employees_by_telegram_username(self, username: str) -> list[PlanfixPerson]:
        self.calls.append(f"username:{username}")
        return self.by_username.get(username, [])


@dataclass
class Published:
    events: list[tuple[Event, str, str]] = field(default_factory=list)

    async def publish(self, event: Event, *, subject: str, msg_id: str) -> bool:
        self.events.append((event, subject, msg_id))
        return True


def request(user: TelegramUser = STRANGER) -> BindRequested:
    return BindRequested(**env("r1"), chat_id=-1, message_id=1, requested_by=user, task_number=42)


def requesters(planfix: Employees, clock: list[float]) -> tuple[Requesters, Published, Known]:
    known, published = Known(), Published()
    found = Requesters(known=known, planfix=planfix, publisher=published, clock=lambda: clock[0])
    return found, published, known


def test_an_employee_found_by_telegram_id_is_linked_once_with_a_deterministic_id() -> None:
    planfix = Employees(by_id={9: [PlanfixPerson(id="user:5", name="Anna", telegram_id=9)]})
    found, published, _ = requesters(planfix, [0.0])

    person = asyncio.run(found.person_for(STRANGER, cause=request()))
    again = asyncio.run(found.person_for(STRANGER, cause=request()))

    assert person is not None
    assert person.planfix_id == "user:5"
    assert again == person
    [(event, subject, msg_id)] = published.events
    assert isinstance(event, PersonLinked)
    assert event.how == "planfix_profile"
    assert subject == "people.linked.9"
    assert msg_id == "people:planfix_profile:9:user:5"
    assert planfix.calls == ["id:9"]


def test_a_fired_employee_is_not_found_and_the_username_is_tried() -> None:
    fired = PlanfixPerson(id="user:6", name="Gone", telegram_id=9, status=PersonStatus.INACTIVE)
    planfix = Employees(by_id={9: [fired]}, by_username={"str": [PlanfixPerson(id="user:8", name="Str")]})
    found, _, _ = requesters(planfix, [0.0])

    person = asyncio.run(found.person_for(STRANGER, cause=request()))

    assert person is not None
    assert person.planfix_id == "user:8"
    assert planfix.calls == ["id:9", "username:str"]


def test_not_found_is_remembered_for_a_while_then_asked_again() -> None:
    planfix = Employees()
    clock = [0.0]
    found, published, _ = requesters(planfix, clock)

    for _ in range(5):
        assert asyncio.run(found.person_for(STRANGER, cause=request())) is None
    clock[0] = 601.0
    assert asyncio.run(found.person_for(STRANGER, cause=request())) is None

    assert planfix.calls == ["id:9", "username:str", "id:9", "username:str"]
    assert published.events == []


def test_a_planfix_outage_during_the_lookup_is_retried_never_not_linked() -> None:
    planfix = Employees(down=True)
    found, _, _ = requesters(planfix, [0.0])

    with pytest.raises(TransientFailure):
        asyncio.run(found.person_for(STRANGER, cause=request()))
    planfix.down = False
    planfix.by_id[9] = [PlanfixPerson(id="user:5", name="Anna")]
    assert asyncio.run(found.person_for(STRANGER, cause=request())) is not None


@pytest.mark.parametrize(
    ("refusal", "words"),
    [
        (BindRefusal.NOT_LINKED, "Planfix → profile → Telegram"),
        (BindRefusal.NOT_ON_THE_TASK, "not among the task"),
        (BindRefusal.TASK_ALREADY_BOUND, "task #42 is already bound to another Telegram group"),
        (BindRefusal.CHAT_NOT_ALLOWED, "may not bind Planfix tasks"),
        (BindRefusal.NOT_AN_EMPLOYEE, "only Planfix employees"),
    ],
)
def test_a_refusal_is_not_allowed_with_its_finer_reason_and_the_relay_words_it(
    refusal: BindRefusal, words: str
) -> None:
    outcome = refused(request(), refusal, task_number=42)
    event, subject, _ = announcement(request(), outcome)

    assert isinstance(event, BindRejected)
    assert subject == "binding.rejected.-1"
    assert event.reason == "not_allowed"
    assert getattr(event, "refusal", None) == str(refusal)
    assert words in rejected_notice(event, EN).replace("&#x27;", "'")
    # An older relay shows the detail: it says the same in plain words.
    assert event.detail


def test_an_unknown_refusal_falls_back_to_the_detail() -> None:
    outcome = refused(request(), BindRefusal.NOT_LINKED)
    event, _, _ = announcement(request(), outcome)
    assert isinstance(event, BindRejected)
    newer = msgspec.structs.replace(event, refusal="from_the_future", detail="ask later")
    assert rejected_notice(newer, EN) == "⚠️ Could not bind this group: ask later."


def test_bind_unbind_and_rebind_notices() -> None:
    bound = TaskBound(
        **env("e1"), chat_id=-1, task_number=42, task_title="T", created_task=False,
        requested_by=STRANGER, previous_task_number=41, thread_id=3,
    )  # fmt: skip
    unbound = TaskUnbound(**env("e2"), chat_id=-1, task_number=42, unbound_by="bridge-cli:ops")

    rebound = notice_comments(bound, group_title="Ops <team>", by="Anna", texts=EN)
    gone = notice_comments(
        unbound,
        group_title="Ops",
        by=who_did(None, planfix_name=None, operator="bridge-cli:ops", texts=EN),
        texts=EN,
    )

    assert [(c.key, c.task_number) for c in rebound] == [
        ("binding-notice:e1", 42),
        ("binding-notice:e1:previous", 41),
    ]
    assert rebound[0].html.startswith("Bound to Telegram group «Ops &lt;team&gt; (topic 3)» by Anna.")
    assert "now bound to task #42" in rebound[1].html
    assert gone[0].html == "Unbound from Telegram group «Ops» by the bridge&#x27;s operator (bridge-cli:ops)."
    assert who_did(STRANGER, planfix_name="Anna Petrova") == "Anna Petrova"
    assert who_did(STRANGER, planfix_name=None) == "Stranger (@str)"
