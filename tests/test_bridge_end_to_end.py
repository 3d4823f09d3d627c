"""The whole bridge, end to end: the four services as processes, real NATS JetStream, the real
store, the real aiogram and httpx clients, and fake Telegram and Planfix HTTP servers.

Each test reads as the feature: given what people do in Telegram or Planfix, expect what the
fakes receive (and, where it matters, the events on the streams).
"""

from __future__ import annotations

from functools import partial
from urllib.parse import urlsplit

import httpx

from contracts.events import (
    BindRejected,
    PlanfixCommentAdded,
    PlanfixCommentPosted,
    TelegramMessageReceived,
)
from sandbox.fake_planfix import FakePlanfix
from sandbox.fake_telegram import FakeTelegram
from tests.e2e_bridge import ADMIN_ID, Bridge, bind_new_task, bridge_fixture, texts_sent, the_answer
from tests.support import eventually, link_test_admin, relayed_comments, stays

bridge = bridge_fixture("e2e")


# --- binding ----------------------------------------------------------------------------------


def test_task_with_a_title_creates_the_task_binds_the_group_and_confirms(
    bridge: Bridge, fake_telegram: FakeTelegram, fake_planfix: FakePlanfix, unique_chat_id: int
) -> None:
    number = bind_new_task(bridge, fake_telegram, unique_chat_id, "Fix the printer")

    task = fake_planfix.task(number)
    assert task is not None
    assert task.name == "Fix the printer"
    document = bridge.binding_document(unique_chat_id)
    assert document is not None
    assert document["task_number"] == number
    [confirmation] = texts_sent(fake_telegram, unique_chat_id)
    assert f"#{number}" in confirmation
    assert "Fix the printer" in confirmation


def test_task_with_a_number_binds_an_existing_task(
    bridge: Bridge, fake_telegram: FakeTelegram, fake_planfix: FakePlanfix, unique_chat_id: int
) -> None:
    number = fake_planfix.add_task("Printer on floor 3")
    fake_planfix.set_task_people(number, participants=[link_test_admin(fake_planfix)])
    fake_telegram.set_member_status(unique_chat_id, ADMIN_ID, "administrator")

    confirmation = the_answer(fake_telegram, unique_chat_id, f"/task {number}", what="confirmation")
    assert f"#{number}" in confirmation
    assert "Printer on floor 3" in confirmation
    document = bridge.binding_document(unique_chat_id)
    assert document is not None
    assert document["task_number"] == number


def test_task_with_a_missing_number_tells_the_group_why_and_stores_nothing(
    bridge: Bridge, fake_telegram: FakeTelegram, unique_chat_id: int
) -> None:
    fake_telegram.set_member_status(unique_chat_id, ADMIN_ID, "administrator")
    reason = the_answer(fake_telegram, unique_chat_id, "/task 999999", what="rejection")
    assert "999999" in reason
    assert "not found" in reason
    assert bridge.binding_document(unique_chat_id) is None
    rejected = [
        e for e in bridge.events("binding.>") if isinstance(e, BindRejected) and e.chat_id == unique_chat_id
    ]
    assert len(rejected) == 1


def test_task_the_token_cannot_see_is_refused_exactly_like_a_missing_one(
    bridge: Bridge, fake_telegram: FakeTelegram, fake_planfix: FakePlanfix, unique_chat_id: int
) -> None:
    hidden = fake_planfix.add_task("Salaries 2026")
    fake_planfix.deny_access(hidden)
    missing = 987654
    other_chat = unique_chat_id - 1
    for chat_id, number in ((unique_chat_id, hidden), (other_chat, missing)):
        fake_telegram.set_member_status(chat_id, ADMIN_ID, "administrator")
        fake_telegram.add_group_message(chat_id, f"/task {number}")

    [hidden_reply] = eventually(lambda: texts_sent(fake_telegram, unique_chat_id), what="hidden refused")
    [missing_reply] = eventually(lambda: texts_sent(fake_telegram, other_chat), what="missing refused")
    # Nothing tells the group whether the task exists: the same words, only the number differs.
    assert hidden_reply.replace(str(hidden), "N") == missing_reply.replace(str(missing), "N")
    assert "Salaries" not in hidden_reply
    assert bridge.binding_document(unique_chat_id) is None


def task_link(fake_planfix: FakePlanfix, number: int, tail: str = "") -> str:
    """The task's web link, as Planfix (here: the fake, on the account's host) shows it."""
    return fake_planfix.base_url.removesuffix("rest/") + f"task/{number}{tail}"


def test_task_with_the_link_of_a_task_binds_that_task_exactly_like_its_number(
    bridge: Bridge, fake_telegram: FakeTelegram, fake_planfix: FakePlanfix, unique_chat_id: int
) -> None:
    number = fake_planfix.add_task("Printer on floor 4")
    fake_planfix.set_task_people(number, participants=[link_test_admin(fake_planfix)])
    tasks_before = len(fake_planfix.tasks())
    fake_telegram.set_member_status(unique_chat_id, ADMIN_ID, "administrator")

    fake_telegram.add_group_message(
        unique_chat_id, f"/task {task_link(fake_planfix, number, '/?comment=12#c12')}"
    )

    [confirmation] = eventually(lambda: texts_sent(fake_telegram, unique_chat_id), what="confirmation")
    assert f"#{number}" in confirmation
    assert "Printer on floor 4" in confirmation
    document = bridge.binding_document(unique_chat_id)
    assert document is not None
    assert document["task_number"] == number
    assert len(fake_planfix.tasks()) == tasks_before


def test_task_with_any_other_link_is_refused_with_why_and_never_becomes_a_task(
    bridge: Bridge, fake_telegram: FakeTelegram, fake_planfix: FakePlanfix, unique_chat_id: int
) -> None:
    ours = fake_planfix.add_task("Salaries 2026")
    fake_planfix.set_task_people(ours, participants=[link_test_admin(fake_planfix)])
    account_host = urlsplit(fake_planfix.base_url).netloc
    refused = [
        ("https://evil.example/task/1", "is not a link to a Planfix task"),
        (f"https://someone-else.planfix.com/task/{ours}", "is to another Planfix account"),
        (task_link(fake_planfix, ours).replace(f"task/{ours}", "project/3"), "does not open a task"),
        # A stranger's trick: a browser opens the host after the "@", not the account's.
        (f"http://{account_host}@evil.example/task/{ours}", "is not a link to a Planfix task"),
    ]
    tasks_before = len(fake_planfix.tasks())
    chats = [unique_chat_id - index for index in range(len(refused))]
    for chat_id, (link, _) in zip(chats, refused, strict=True):
        fake_telegram.set_member_status(chat_id, ADMIN_ID, "administrator")
        fake_telegram.add_group_message(chat_id, f"/task {link}")

    for chat_id, (link, why) in zip(chats, refused, strict=True):
        [reason] = eventually(partial(texts_sent, fake_telegram, chat_id), what=why)
        assert reason.startswith("⚠️ Could not bind this group: that"), reason
        assert why in reason
        assert "Salaries" not in reason
        assert link not in reason
        assert bridge.binding_document(chat_id) is None
    # None of them created a task (named after the link or otherwise).
    assert len(fake_planfix.tasks()) == tasks_before


def test_status_where_planfix_s_own_bot_is_an_admin_says_every_message_would_reach_planfix_twice(
    bridge: Bridge, fake_telegram: FakeTelegram, unique_chat_id: int
) -> None:
    bind_new_task(bridge, fake_telegram, unique_chat_id, "Two bots")
    fake_telegram.add_other_bot(unique_chat_id, "planfix_bot")

    fake_telegram.add_group_message(unique_chat_id, "/status")

    [answer] = eventually(
        lambda: [text for text in texts_sent(fake_telegram, unique_chat_id) if text.startswith("🔗")],
        what="/status answered",
    )
    assert "@planfix_bot" in answer
    assert "every message written here reaches Planfix twice" in answer


# --- Telegram -> Planfix ------------------------------------------------------------------------


def test_a_message_in_a_bound_group_becomes_one_comment_naming_the_author_and_never_echoes(
    bridge: Bridge, fake_telegram: FakeTelegram, fake_planfix: FakePlanfix, unique_chat_id: int
) -> None:
    number = bind_new_task(bridge, fake_telegram, unique_chat_id, "Echo check")
    messages_before = len(texts_sent(fake_telegram, unique_chat_id))

    fake_telegram.add_group_message(
        unique_chat_id,
        "The printer says <PC LOAD LETTER> & stops",
        # A person of her own: the contact made for a Telegram user keeps its first name.
        user_id=700_000_000 + abs(unique_chat_id) % 1_000_000,
        first_name="Anna",
        last_name="Ivanova",
        username="anna_iv",
    )

    [comment] = eventually(lambda: relayed_comments(fake_planfix, number), what="comment posted")
    # Written as the author (their contact, PLANFIX_CONTACTS=create): Planfix names them.
    assert comment.owner_id.startswith("contact:")
    assert comment.owner_name == "Anna Ivanova"
    assert "Telegram · " in comment.description
    assert "&lt;PC LOAD LETTER&gt; &amp; stops" in comment.description
    # Planfix's scenario sends the bridge's own comment back; the bridge fetches it and stops there.
    eventually(
        lambda: [
            e
            for e in bridge.events("planfix.>")
            if isinstance(e, PlanfixCommentAdded) and e.comment_id == comment.id
        ],
        what="own comment came back by webhook",
    )
    stays(lambda: len(texts_sent(fake_telegram, unique_chat_id)) == messages_before, what="no echo")
    assert len(relayed_comments(fake_planfix, number)) == 1


def test_the_same_update_delivered_twice_is_still_one_comment(
    bridge: Bridge, fake_telegram: FakeTelegram, fake_planfix: FakePlanfix, unique_chat_id: int
) -> None:
    number = bind_new_task(bridge, fake_telegram, unique_chat_id, "Twice")

    update = fake_telegram.add_group_message(unique_chat_id, "only once please")
    fake_telegram.add_update(update)

    eventually(lambda: relayed_comments(fake_planfix, number), what="comment posted")
    stays(lambda: len(relayed_comments(fake_planfix, number)) == 1, what="exactly one comment")
    received = [
        e
        for e in bridge.events("telegram.>")
        if isinstance(e, TelegramMessageReceived) and e.chat_id == unique_chat_id
    ]
    assert len(received) == 1


def test_a_message_from_an_unbound_group_is_not_relayed(
    bridge: Bridge, fake_telegram: FakeTelegram, fake_planfix: FakePlanfix, unique_chat_id: int
) -> None:
    calls_before = len([call for call in fake_planfix.calls if "/comments/" in call.path])

    fake_telegram.add_group_message(unique_chat_id, "is anyone there?")

    eventually(
        lambda: [e for e in bridge.events("telegram.>") if getattr(e, "chat_id", None) == unique_chat_id],
        what="message received by the gateway",
    )
    stays(
        lambda: len([call for call in fake_planfix.calls if "/comments/" in call.path]) == calls_before,
        what="no comment posted",
    )


def test_a_message_written_right_after_task_waits_for_the_binding_and_arrives_once(
    bridge: Bridge, fake_telegram: FakeTelegram, fake_planfix: FakePlanfix, unique_chat_id: int
) -> None:
    fake_telegram.set_member_status(unique_chat_id, ADMIN_ID, "administrator")
    fake_telegram.add_group_message(unique_chat_id, "written before anyone asked for a task")
    eventually(
        lambda: [e for e in bridge.events(f"telegram.message.received.{unique_chat_id}")],
        what="the first message received",
    )
    # Planfix is slow to create the task: the binding lands seconds after the next message.
    fake_planfix.delay_next(3.0, times=4)

    fake_telegram.add_group_message(unique_chat_id, "/task Fix the printer")
    fake_telegram.add_group_message(unique_chat_id, "the printer jams on tray 2")

    [bound] = eventually(
        lambda: [e for e in bridge.events("binding.>") if getattr(e, "chat_id", 0) == unique_chat_id],
        timeout_s=30,
        what="the task bound",
    )
    [comment] = eventually(
        lambda: relayed_comments(fake_planfix, bound.task_number), timeout_s=30, what="the message carried"
    )
    assert "the printer jams on tray 2" in comment.description
    stays(lambda: len(relayed_comments(fake_planfix, bound.task_number)) == 1, what="carried once")
    assert "written before anyone asked" not in comment.description


# --- Planfix -> Telegram ------------------------------------------------------------------------


def test_a_comment_in_a_bound_task_becomes_one_message_naming_the_author(
    bridge: Bridge, fake_telegram: FakeTelegram, fake_planfix: FakePlanfix, unique_chat_id: int
) -> None:
    number = bind_new_task(bridge, fake_telegram, unique_chat_id, "From Planfix")
    before = len(texts_sent(fake_telegram, unique_chat_id))

    fake_planfix.add_employee_comment(
        number, "<p>Replaced the <b>toner</b>.</p>", author_name="Olga Smirnova"
    )

    eventually(lambda: len(texts_sent(fake_telegram, unique_chat_id)) == before + 1, what="message sent")
    text = texts_sent(fake_telegram, unique_chat_id)[-1]
    assert "Olga Smirnova" in text
    assert "Replaced the <b>toner</b>." in text
    stays(lambda: len(texts_sent(fake_telegram, unique_chat_id)) == before + 1, what="exactly one message")


def test_the_same_webhook_posted_twice_is_still_one_message(
    bridge: Bridge, fake_telegram: FakeTelegram, fake_planfix: FakePlanfix, unique_chat_id: int
) -> None:
    number = bind_new_task(bridge, fake_telegram, unique_chat_id, "Webhook twice")
    before = len(texts_sent(fake_telegram, unique_chat_id))

    comment_id = fake_planfix.add_employee_comment(number, "Done twice?")
    fake_planfix.post_webhook(number, comment_id)

    eventually(lambda: len(texts_sent(fake_telegram, unique_chat_id)) == before + 1, what="message sent")
    stays(lambda: len(texts_sent(fake_telegram, unique_chat_id)) == before + 1, what="exactly one message")


def test_the_webhook_refuses_a_wrong_secret_and_bad_bodies_and_keeps_serving(bridge: Bridge) -> None:
    wrong = bridge.webhook_url.rsplit("/", 1)[0] + "/not-the-secret"
    with httpx.Client(timeout=5) as client:
        assert client.post(wrong, json={"task": 1, "comment": 2}).status_code == 401
        assert (
            client.post(bridge.webhook_url, content=b'{"task": "4821", "comment": "no "quotes"}').status_code
            == 400
        )
        assert client.post(bridge.webhook_url, json={"task": 1}).status_code == 400
        assert client.get(bridge.webhook_url.split("/planfix/")[0] + "/healthz").status_code == 200


# --- durability -------------------------------------------------------------------------------


def test_restarting_the_relay_between_two_messages_loses_and_repeats_nothing(
    bridge: Bridge, fake_telegram: FakeTelegram, fake_planfix: FakePlanfix, unique_chat_id: int
) -> None:
    number = bind_new_task(bridge, fake_telegram, unique_chat_id, "Restart me")
    fake_telegram.add_group_message(unique_chat_id, "first, before the restart")
    eventually(lambda: len(relayed_comments(fake_planfix, number)) == 1, what="first comment")

    bridge.processes["relay"].stop()
    fake_telegram.add_group_message(unique_chat_id, "second, while the relay is down")
    eventually(
        lambda: [
            e
            for e in bridge.events("telegram.>")
            if isinstance(e, TelegramMessageReceived)
            and e.text.startswith("second")
            and e.chat_id == unique_chat_id
        ],
        what="second message stored in the stream",
    )
    bridge.processes["relay"].start()

    eventually(lambda: len(relayed_comments(fake_planfix, number)) == 2, timeout_s=30, what="second comment")
    stays(lambda: len(relayed_comments(fake_planfix, number)) == 2, what="no duplicates")
    first, second = relayed_comments(fake_planfix, number)
    assert "first, before the restart" in first.description
    assert "second, while the relay is down" in second.description
    posted = [
        e
        for e in bridge.events("effect.>")
        if isinstance(e, PlanfixCommentPosted) and e.task_number == number
    ]
    assert len(posted) == 2


# --- who may bind (issue 15) --------------------------------------------------------------------

STRANGER_ID = 7_715_001


def rejections(bridge: Bridge, chat_id: int) -> list[BindRejected]:
    return [e for e in bridge.events("binding.>") if isinstance(e, BindRejected) and e.chat_id == chat_id]


def test_a_stranger_admin_of_a_new_group_cannot_bind_an_existing_task_and_learns_how_to_link(
    bridge: Bridge, fake_telegram: FakeTelegram, fake_planfix: FakePlanfix, unique_chat_id: int
) -> None:
    number = fake_planfix.add_task("Contract with ACME")
    fake_planfix.set_task_people(number, participants=[link_test_admin(fake_planfix)])
    fake_telegram.set_member_status(unique_chat_id, STRANGER_ID, "creator")

    reply = the_answer(fake_telegram, unique_chat_id, f"/task {number}", what="refusal", user_id=STRANGER_ID)
    assert "not linked to a Planfix employee" in reply
    assert "Planfix → profile → Telegram" in reply
    assert "ACME" not in reply
    assert bridge.binding_document(unique_chat_id) is None
    [rejected] = rejections(bridge, unique_chat_id)
    assert rejected.refusal == "not_linked"
    # A second try within the cache period costs Planfix no second lookup of the stranger.
    lookups = len([c for c in fake_planfix.calls if c.path == "/rest/user/list"])
    fake_telegram.add_group_message(unique_chat_id, f"/task {number}", user_id=STRANGER_ID)
    eventually(lambda: len(rejections(bridge, unique_chat_id)) == 2, what="second refusal")
    assert len([c for c in fake_planfix.calls if c.path == "/rest/user/list"]) == lookups


def test_a_strangers_task_with_a_title_creates_no_task(
    bridge: Bridge, fake_telegram: FakeTelegram, fake_planfix: FakePlanfix, unique_chat_id: int
) -> None:
    tasks_before = len(fake_planfix.tasks())
    fake_telegram.set_member_status(unique_chat_id, STRANGER_ID + 1, "creator")

    reply = the_answer(
        fake_telegram, unique_chat_id, "/task Give me everything", what="refusal", user_id=STRANGER_ID + 1
    )
    assert "not linked" in reply
    assert len(fake_planfix.tasks()) == tasks_before
    assert bridge.binding_document(unique_chat_id) is None


def test_a_linked_participant_binds_and_the_bind_is_announced_in_the_task_but_not_echoed(
    bridge: Bridge, fake_telegram: FakeTelegram, fake_planfix: FakePlanfix, unique_chat_id: int
) -> None:
    maria_tg = STRANGER_ID + 2
    maria = fake_planfix.add_employee("Maria Lebedeva", telegram_id=maria_tg)
    number = fake_planfix.add_task("Office move")
    fake_planfix.set_task_people(number, auditors=[maria])
    fake_telegram.set_member_status(unique_chat_id, maria_tg, "administrator")

    confirmation = the_answer(
        fake_telegram,
        unique_chat_id,
        f"/task {number}",
        what="confirmation",
        user_id=maria_tg,
        chat_title="Movers",
    )
    assert "Office move" in confirmation
    [notice] = eventually(lambda: fake_planfix.comments(number), what="bind announced in the task")
    assert "Bound to Telegram group «Movers» by Maria Lebedeva" in notice.description
    linked = [e for e in bridge.events("people.>") if getattr(e, "telegram_user_id", None) == maria_tg]
    assert [e.planfix_person_id for e in linked] == [maria]
    # The notice is the bridge's own comment: it never comes back into the group.
    stays(lambda: len(texts_sent(fake_telegram, unique_chat_id)) == 1, for_s=2.0, what="no echo")

    fake_telegram.add_group_message(unique_chat_id, "/unbind", user_id=maria_tg)
    eventually(
        lambda: any(
            "Unbound from Telegram group «Movers» by Maria Lebedeva" in c.description
            for c in fake_planfix.comments(number)
        ),
        what="unbind announced in the task",
    )


def test_a_linked_employee_who_is_not_on_the_task_cannot_bind_it(
    bridge: Bridge, fake_telegram: FakeTelegram, fake_planfix: FakePlanfix, unique_chat_id: int
) -> None:
    oleg_tg = STRANGER_ID + 3
    fake_planfix.add_employee("Oleg Outsider", telegram_id=oleg_tg)
    number = fake_planfix.add_task("Salary review")
    fake_planfix.set_task_people(number, participants=[link_test_admin(fake_planfix)])
    fake_telegram.set_member_status(unique_chat_id, oleg_tg, "administrator")

    reply = the_answer(fake_telegram, unique_chat_id, f"/task {number}", what="refusal", user_id=oleg_tg)
    assert "not among the task" in reply
    assert bridge.binding_document(unique_chat_id) is None
    assert relayed_comments(fake_planfix, number) == fake_planfix.comments(number) == []


def test_a_second_group_cannot_bind_a_task_already_bound(
    bridge: Bridge, fake_telegram: FakeTelegram, fake_planfix: FakePlanfix, unique_chat_id: int
) -> None:
    number = bind_new_task(bridge, fake_telegram, unique_chat_id, "Only one group", fake_planfix)
    second = unique_chat_id - 1
    fake_telegram.set_member_status(second, ADMIN_ID, "administrator")

    fake_telegram.add_group_message(second, f"/task {number}")

    [reply] = eventually(lambda: texts_sent(fake_telegram, second), what="refusal")
    assert f"task #{number} is already bound to another Telegram group" in reply
    assert bridge.binding_document(second) is None
    [rejected] = rejections(bridge, second)
    assert rejected.refusal == "task_already_bound"
