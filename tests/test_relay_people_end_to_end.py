"""Comments written as their authors, end to end (issue 15, the relay's part): the four
services as processes, real NATS and store, the fake Telegram and Planfix servers. People are
linked by a ``PersonLinked`` published straight into the PEOPLE stream, as the binder would.

The test refusing owners comes last: after a refusal the relay writes as the robot for an hour.
"""

from __future__ import annotations

from contracts.events import TelegramUser, encode_event, event_id_for
from contracts.subjects import subject_for
from sandbox.fake_planfix import ROBOT_ID, FakeComment, FakePlanfix
from sandbox.fake_telegram import FakeTelegram
from tests.e2e_bridge import Bridge, bind_new_task, texts_sent
from tests.support import connect_nats, envelope, eventually, person_linked
from tests.test_bridge_end_to_end import bridge

__all__ = ["bridge"]  # the module-scoped bridge fixture: one for this module


def person_id_for(chat_id: int) -> int:
    """A Telegram user id of this test's own (chat ids are unique per test)."""
    return 800_000_000 + abs(chat_id) % 1_000_000


def link(bridge: Bridge, telegram_user_id: int, planfix_id: str, name: str, username: str) -> None:
    """The binder's ``PersonLinked``, published as it would; waits until the relay applied it."""
    user = TelegramUser(id=telegram_user_id, full_name=name, username=username)
    event = person_linked(
        user, planfix_id, envelope(event_id_for(f"test-link:{telegram_user_id}:{planfix_id}"))
    )

    async def publish() -> None:
        nc = await connect_nats(bridge.nats_url)
        try:
            await nc.jetstream().publish(subject_for(event), encode_event(event))
        finally:
            await nc.close()

    bridge.loop.run(publish())
    relay = bridge.processes["relay"]
    eventually(
        lambda: any(
            "person_link_applied" in line and str(telegram_user_id) in line
            for line in relay.log_text().splitlines()
        ),
        what="the relay knows the person",
    )


def linked_employee(
    bridge: Bridge, fake_planfix: FakePlanfix, chat_id: int, name: str, username: str
) -> tuple[int, str]:
    """The test's own Telegram user (``person_id_for``) as a Planfix employee, linked (``link``):
    their Telegram id and their Planfix id."""
    telegram_user_id = person_id_for(chat_id)
    employee = fake_planfix.add_employee(name, telegram_id=telegram_user_id, telegram=username)
    link(bridge, telegram_user_id, employee, name, username)
    return telegram_user_id, employee


def comments_of(fake_planfix: FakePlanfix, number: int, needle: str) -> list[FakeComment]:
    def found() -> list[FakeComment]:
        return [c for c in fake_planfix.comments(number) if needle in c.description]

    return eventually(found, timeout_s=20, what=f"a comment with {needle!r} in task {number}")


def test_a_linked_employees_message_is_their_comment_and_their_planfix_comment_names_their_username(
    bridge: Bridge, fake_telegram: FakeTelegram, fake_planfix: FakePlanfix, unique_chat_id: int
) -> None:
    user_id, employee = linked_employee(bridge, fake_planfix, unique_chat_id, "Maria Linked", "maria_l")
    number = bind_new_task(bridge, fake_telegram, unique_chat_id, "Owners")

    fake_telegram.add_group_message(
        unique_chat_id,
        "Shipped the fix",
        user_id=user_id,
        first_name="Maria",
        last_name="L",
        username="maria_l",
    )

    [comment] = comments_of(fake_planfix, number, "Shipped the fix")
    assert comment.owner_id == employee
    assert comment.owner_name.startswith("Maria Linked")
    # Written as her: the author line keeps the time, not the name Planfix shows anyway.
    assert "<p>Telegram · " in comment.description
    assert "maria_l" not in comment.description

    fake_planfix.add_employee_comment(
        number, "<p>Thanks, checked</p>", author_id=employee, author_name="Maria Linked"
    )
    eventually(
        lambda: [t for t in texts_sent(fake_telegram, unique_chat_id) if "Thanks, checked" in t],
        what="the Planfix comment in the group",
    )
    [text] = [t for t in texts_sent(fake_telegram, unique_chat_id) if "Thanks, checked" in t]
    assert text.startswith("<b>Maria Linked</b> (@maria_l) · Planfix")


def test_a_strangers_messages_are_their_contacts_comments_one_contact_however_many_messages(
    bridge: Bridge, fake_telegram: FakeTelegram, fake_planfix: FakePlanfix, unique_chat_id: int
) -> None:
    user_id = person_id_for(unique_chat_id)
    number = bind_new_task(bridge, fake_telegram, unique_chat_id, "Strangers")

    for text in ("first note", "second note", "third note"):
        fake_telegram.add_group_message(
            unique_chat_id, text, user_id=user_id, first_name="Sam", last_name="Stranger", username="sam_s"
        )
        comments_of(fake_planfix, number, text)

    comments = fake_planfix.comments(number)
    mine = [c for c in comments if "note" in c.description]
    contacts = [c for c in fake_planfix.contacts() if c.telegram_id == str(user_id)]
    assert len(contacts) == 1
    assert {c.owner_id for c in mine} == {contacts[0].id}
    assert contacts[0].name.startswith("Sam")
    assert contacts[0].telegram == "https://t.me/sam_s"


def test_an_employee_whose_profile_names_their_telegram_writes_as_themselves_before_any_link(
    bridge: Bridge, fake_telegram: FakeTelegram, fake_planfix: FakePlanfix, unique_chat_id: int
) -> None:
    user_id = person_id_for(unique_chat_id)
    olga = fake_planfix.add_employee("Olga Profile", telegram_id=user_id)
    number = bind_new_task(bridge, fake_telegram, unique_chat_id, "Colleagues")
    contacts_before = len(fake_planfix.contacts())

    for text in ("profile note one", "profile note two"):
        fake_telegram.add_group_message(unique_chat_id, text, user_id=user_id, first_name="Olga")
        comments_of(fake_planfix, number, text)

    mine = [c for c in fake_planfix.comments(number) if "profile note" in c.description]
    assert {c.owner_id for c in mine} == {olga}
    assert len(fake_planfix.contacts()) == contacts_before
    lookups = [c for c in fake_planfix.calls if c.path == "/rest/user/list" and str(user_id) in str(c.json)]
    assert len(lookups) == 1, "one lookup for the person, then none per message"


def test_a_mentioned_linked_employee_is_a_recipient_of_the_comment(
    bridge: Bridge, fake_telegram: FakeTelegram, fake_planfix: FakePlanfix, unique_chat_id: int
) -> None:
    mentioned_id, employee = linked_employee(bridge, fake_planfix, unique_chat_id, "Olga Mentioned", "olga_m")
    number = bind_new_task(bridge, fake_telegram, unique_chat_id, "Mentions")

    text = "Could @olga_m look at this"
    fake_telegram.add_group_message(
        unique_chat_id,
        text,
        user_id=mentioned_id + 1,
        extra={"entities": [{"type": "mention", "offset": text.index("@"), "length": len("@olga_m")}]},
    )

    [comment] = comments_of(fake_planfix, number, "look at this")
    assert comment.recipients is not None
    assert {"id": employee} in comment.recipients["users"]


def test_where_planfix_refuses_owners_the_robot_writes_naming_the_author(
    bridge: Bridge, fake_telegram: FakeTelegram, fake_planfix: FakePlanfix, unique_chat_id: int
) -> None:
    user_id, _ = linked_employee(bridge, fake_planfix, unique_chat_id, "Petr Refused", "petr_r")
    number = bind_new_task(bridge, fake_telegram, unique_chat_id, "Refused owners")

    def petr_writes(text: str) -> FakeComment:
        fake_telegram.add_group_message(
            unique_chat_id, text, user_id=user_id, first_name="Petr", last_name="R", username="petr_r"
        )
        [comment] = comments_of(fake_planfix, number, text)
        return comment

    fake_planfix.refuse_owner()
    try:
        comment = petr_writes("Written by the robot")
        again = petr_writes("Again by the robot")
    finally:
        fake_planfix.refuse_owner(False)

    assert comment.owner_id == ROBOT_ID
    assert "<b>Petr R</b> (@petr_r) · Telegram · " in comment.description
    assert again.owner_id == ROBOT_ID
    # Said once in the log; not tried again (for an hour, or until a restart).
    assert (
        bridge.processes["relay"].log_text().count("planfix_refused_comment_owner_robot_writes_instead") == 1
    )
