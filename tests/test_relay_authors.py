"""Who a comment is written as and who it notifies (``to_planfix.authors``), the author line
with and without an owner, and the Planfix -> Telegram author line naming a linked employee's
@username: tables over the PEOPLE fold, no NATS, no store."""

from __future__ import annotations

import asyncio
from zoneinfo import ZoneInfo

import pytest

from bridge_lib.i18n import translator
from bridge_lib.people_directory import PeopleDirectory
from bridge_lib.planfix import OwnerRefused, RecipientRole, Recipients
from contracts.events import (
    PlanfixCommentAdded,
    PlanfixPerson,
    TelegramEntity,
    TelegramMessageReceived,
    TelegramUser,
    event_id_for,
    utc_now,
)
from contracts.people import People, fold
from services.relay.to_planfix.authors import OWNERS_OFF_S, Authors, mentioned_employees, owner_key
from services.relay.to_planfix.from_telegram_html import build_block, comment_html
from services.relay.to_telegram.from_planfix_html import comment_author_line, telegram_comment_text
from tests.support import envelope, person_linked

EN = translator("en")
ANNA = TelegramUser(id=11, full_name="Anna Petrova", username="anna_p")  # an employee
CARL = TelegramUser(id=12, full_name="Carl", username="carl")  # a linked contact
STRANGER = TelegramUser(id=13, full_name="Sam Stranger", username="sam")
BOT = TelegramUser(id=14, full_name="Helper", username="helper_bot", is_bot=True)
CHANNEL = TelegramUser(id=-1005, full_name="Ops news", is_channel=True)


PEOPLE: People = fold([person_linked(ANNA, "user:5"), person_linked(CARL, "contact:9")])


def message(
    text: str = "hi", entities: list[TelegramEntity] | None = None, by: TelegramUser = STRANGER
) -> TelegramMessageReceived:
    return TelegramMessageReceived(
        **envelope(event_id_for(f"m:{text}")),
        chat_id=-100,
        message_id=1,
        sender=by,
        text=text,
        entities=entities or [],
        sent_at=utc_now(),
    )


@pytest.mark.parametrize(
    ("sender", "create_contacts", "expected"),
    [
        (ANNA, True, "user:5"),
        (ANNA, False, "user:5"),
        (CARL, False, "contact:9"),
        (STRANGER, True, "tg:13"),
        (STRANGER, False, None),
        (BOT, True, None),
        (CHANNEL, True, None),
    ],
    ids=[
        "employee",
        "employee-no-contacts",
        "linked-contact",
        "stranger-gets-contact",
        "stranger-robot",
        "bot",
        "channel",
    ],
)
def test_whom_a_message_is_written_as(
    sender: TelegramUser, create_contacts: bool, expected: str | None
) -> None:
    assert owner_key(sender, PEOPLE, create_contacts=create_contacts) == expected


def mention(text: str, word: str) -> TelegramEntity:
    start = text.index(word)
    return TelegramEntity(type="mention", offset=start, length=len(word))


@pytest.mark.parametrize(
    ("text", "entities", "expected"),
    [
        ("ping @anna_p please", [mention("ping @anna_p please", "@anna_p")], ("user:5",)),
        ("😀 @ANNA_P", [TelegramEntity(type="mention", offset=3, length=7)], ("user:5",)),
        ("hey Anna", [TelegramEntity(type="text_mention", offset=4, length=4, user_id=ANNA.id)], ("user:5",)),
        ("@carl is a contact", [mention("@carl is a contact", "@carl")], ()),
        ("@nobody", [mention("@nobody", "@nobody")], ()),
        ("@anna_p without an entity", [], ()),
        (
            "@anna_p and again @anna_p",
            [
                TelegramEntity(type="mention", offset=0, length=7),
                TelegramEntity(type="mention", offset=18, length=7),
            ],
            ("user:5",),
        ),
    ],
    ids=[
        "username",
        "utf16-and-case",
        "text-mention",
        "contact-not-notified",
        "unknown",
        "plain-text",
        "once",
    ],
)
def test_mentions_of_linked_employees(
    text: str, entities: list[TelegramEntity], expected: tuple[str, ...]
) -> None:
    assert mentioned_employees([message(text, entities)], PEOPLE) == expected


def authors(clock: list[float], *, notify_mentioned: bool = True) -> Authors:
    return Authors(
        people=lambda: PEOPLE,
        contacts=None,
        recipients=Recipients(roles=(RecipientRole.PARTICIPANT,)),
        notify_mentioned=notify_mentioned,
        clock=lambda: clock[0],
    )


def test_mentioned_employees_join_the_configured_roles_but_not_the_owner() -> None:
    clock = [0.0]
    text = "@anna_p look"
    messages = [message(text, [mention(text, "@anna_p")])]

    assert authors(clock).recipients(authors(clock).mentioned(messages, None)) == Recipients(
        users=("user:5",), roles=(RecipientRole.PARTICIPANT,)
    )
    assert authors(clock).mentioned(messages, "user:5") == []
    assert authors(clock, notify_mentioned=False).mentioned(messages, None) == []
    assert authors(clock).recipients([]) == Recipients(roles=(RecipientRole.PARTICIPANT,))


def test_a_refused_owner_turns_owners_off_for_an_hour() -> None:
    clock = [100.0]
    subject = authors(clock)
    assert asyncio.run(subject.owner(ANNA)) == "user:5"

    subject.owner_refused(OwnerRefused("no", owner="user:5", names_owner=True, code=6))

    assert asyncio.run(subject.owner(ANNA)) is None
    assert subject.owner_keys([message(by=ANNA)]) == {}
    clock[0] += OWNERS_OFF_S
    assert asyncio.run(subject.owner(ANNA)) == "user:5"


def test_the_author_line_names_the_author_only_when_the_robot_writes() -> None:
    block = build_block(message("hello", by=ANNA), ZoneInfo("UTC"), [], EN)

    named = comment_html([block], EN)
    as_owner = comment_html([block], EN, named=False)

    assert "<b>Anna Petrova</b> (@anna_p) · Telegram · " in named
    assert "Anna" not in as_owner
    assert as_owner.startswith("<p>Telegram · ")
    assert "hello" in as_owner


def comment_by(person_id: str, name: str) -> PlanfixCommentAdded:
    return PlanfixCommentAdded(
        **envelope("e"),
        task_number=1,
        comment_id=2,
        text_html="<p>done</p>",
        author=PlanfixPerson(id=person_id, name=name),
    )


def test_a_linked_employees_planfix_comment_names_their_telegram_username() -> None:
    directory = PeopleDirectory(PEOPLE)
    anna = directory.by_planfix_id("user:5")
    assert anna is not None
    assert anna.telegram_username == "anna_p"

    line = comment_author_line(comment_by("user:5", "Anna Petrova"), anna.telegram_username, EN)

    assert line == "<b>Anna Petrova</b> (@anna_p) · Planfix"
    assert telegram_comment_text(comment_by("user:7", "Bob"), None, EN) == "<b>Bob</b> · Planfix:\ndone"
    assert directory.by_planfix_id("user:7") is None
