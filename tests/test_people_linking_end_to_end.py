"""/link through the real services: a code in the private chat, written as a comment in Planfix,
links its author; the code is then useless, never logged and never carried into a group."""

from __future__ import annotations

import re

from contracts.events import PersonLinked, PersonLinkRefused, PersonUnlinked
from sandbox.fake_planfix import FakePlanfix
from sandbox.fake_telegram import FakeTelegram
from tests.e2e_bridge import ADMIN_ID, Bridge, bind_new_task, bridge_fixture, texts_sent, the_answer
from tests.support import eventually, stays

CODE = re.compile(r"TGLINK-[0-9A-Z]{5}-[0-9A-Z]{5}")
PERSON = 7_716_001


bridge = bridge_fixture("linking")


def private(fake_telegram: FakeTelegram, user_id: int, text: str) -> None:
    """The person writes to the bot in their private chat (its id is theirs)."""
    fake_telegram.add_group_message(user_id, text, user_id=user_id, first_name="Lena", username=None)


def code_from(fake_telegram: FakeTelegram, user_id: int) -> str:
    def found() -> list[str]:
        return [m[0] for text in texts_sent(fake_telegram, user_id) if (m := CODE.findall(text))]

    return eventually(found, what="a code in the private chat")[-1]


def people_events(bridge: Bridge, user_id: int) -> list[object]:
    return [e for e in bridge.events("people.>") if getattr(e, "telegram_user_id", None) == user_id]


def test_link_code_written_in_planfix_links_its_author_and_is_then_useless(
    bridge: Bridge, fake_telegram: FakeTelegram, fake_planfix: FakePlanfix, unique_chat_id: int
) -> None:
    lena = fake_planfix.add_employee("Lena Orlova")  # no Telegram in her Planfix profile
    task = fake_planfix.add_task("Anywhere at all")

    private(fake_telegram, PERSON, "/link")
    code = code_from(fake_telegram, PERSON)
    comment = fake_planfix.add_employee_comment(
        task, f"<p>{code}</p>", author_id=lena, author_name="Lena Orlova"
    )

    [linked] = eventually(lambda: people_events(bridge, PERSON), what="linked")
    assert isinstance(linked, PersonLinked)
    assert (linked.planfix_person_id, linked.how) == (lena, "link_code")
    eventually(
        lambda: any("Linked" in t and "Lena Orlova" in t for t in texts_sent(fake_telegram, PERSON)),
        what="told in private",
    )
    eventually(lambda: comment in fake_planfix.deleted_through_api, what="code comment deleted")

    # The same code again, by someone else: nothing changes.
    intruder = fake_planfix.add_employee("Igor Intruder")
    fake_planfix.add_employee_comment(task, code, author_id=intruder, author_name="Igor Intruder")
    stays(lambda: len(people_events(bridge, PERSON)) == 1, for_s=2.0, what="a spent code links nobody")

    # /whoami answers from the directory; /unlink undoes the link.
    private(fake_telegram, PERSON, "/whoami")
    eventually(lambda: any(lena in t for t in texts_sent(fake_telegram, PERSON)), what="whoami")
    private(fake_telegram, PERSON, "/unlink")
    eventually(
        lambda: any(isinstance(e, PersonUnlinked) for e in people_events(bridge, PERSON)), what="unlinked"
    )

    for name, process in bridge.processes.items():
        assert code not in process.log_text(), f"{name} logged a link code"
    stored = [e for e in bridge.events(">") if code in repr(e) and not hasattr(e, "text_html")]
    assert stored == [], "a link code is kept only in the comment that spent it"


def test_a_code_written_by_a_fired_employee_or_a_contact_links_nobody_and_says_why(
    bridge: Bridge, fake_telegram: FakeTelegram, fake_planfix: FakePlanfix
) -> None:
    fired = fake_planfix.add_employee("Fedor Fired", active=False)
    task = fake_planfix.add_task("Fired people write too")
    person = PERSON + 1

    private(fake_telegram, person, "/link")
    code = code_from(fake_telegram, person)
    fake_planfix.add_employee_comment(task, code, author_id=fired, author_name="Fedor Fired")

    [refused] = eventually(lambda: people_events(bridge, person), what="refused")
    assert isinstance(refused, PersonLinkRefused)
    assert refused.refusal == "employee_inactive"
    eventually(lambda: any("not active" in t for t in texts_sent(fake_telegram, person)), what="told why")


def test_too_many_codes_in_an_hour_are_refused(bridge: Bridge, fake_telegram: FakeTelegram) -> None:
    person = PERSON + 2
    for _ in range(3):
        before = len(texts_sent(fake_telegram, person))
        private(fake_telegram, person, "/link")
        eventually(lambda: len(texts_sent(fake_telegram, person)) > before, what="answer")  # noqa: B023

    private(fake_telegram, person, "/link")

    eventually(lambda: "enough codes" in texts_sent(fake_telegram, person)[-1], what="refused")
    assert len({CODE.findall(t)[0] for t in texts_sent(fake_telegram, person) if CODE.findall(t)}) == 3


def test_a_code_written_in_a_bound_task_never_reaches_its_group(
    bridge: Bridge, fake_telegram: FakeTelegram, fake_planfix: FakePlanfix, unique_chat_id: int
) -> None:
    number = bind_new_task(bridge, fake_telegram, unique_chat_id, "Codes stay private", fake_planfix)
    person = PERSON + 3
    nina = fake_planfix.add_employee("Nina Novak")
    private(fake_telegram, person, "/link")
    code = code_from(fake_telegram, person)

    fake_planfix.add_employee_comment(number, code, author_id=nina, author_name="Nina Novak")

    eventually(lambda: people_events(bridge, person), what="linked")
    assert all(code not in text for text in texts_sent(fake_telegram, unique_chat_id))


def test_link_in_a_group_points_to_the_private_chat(
    bridge: Bridge, fake_telegram: FakeTelegram, unique_chat_id: int
) -> None:
    fake_telegram.set_member_status(unique_chat_id, ADMIN_ID, "member")

    reply = the_answer(fake_telegram, unique_chat_id, "/link", what="answer")
    assert "?start=link" in reply
    assert not CODE.search(reply)
