"""Task -> group, commands and the group's life-cycle, end to end: the four services as
processes on real NATS and the real store, the real aiogram and httpx clients, and the fake
Telegram (which enforces the group pace and Telegram's limits) and fake Planfix servers.

Each test reads as the feature: given what people do in Planfix or Telegram, expect what the
group sees (``FakeTelegram.chat_messages``: the bot's messages as they stand after edits and
deletions) and the calls that reached the fakes.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

from contracts.events import (
    TelegramDeliveryFailed,
    TelegramMessageKind,
    TelegramMessageReceived,
    TelegramMessageSent,
)
from sandbox.fake_planfix import FakePlanfix
from sandbox.fake_telegram import FakeTelegram
from tests.e2e_bridge import ADMIN_ID, Bridge, bind_new_task, bridge_fixture
from tests.support import eventually, relayed_comments, stays

MEMBER_ID = 777  # someone in the group who is not an admin


# Two refusals set a message aside (the default is 8, with backoff): keeps that test short.
bridge = bridge_fixture("outbound", extra_env={"RELAY_SEND_MAX_ATTEMPTS": "2"})


def shown(fake_telegram: FakeTelegram, chat_id: int) -> list[str]:
    return [message["text"] for message in fake_telegram.chat_messages(chat_id)]


def wait_shown(
    fake_telegram: FakeTelegram, chat_id: int, fragment: str, *, timeout_s: float = 30
) -> dict[str, Any]:
    """The bot's message in the chat that contains ``fragment`` (waiting for it)."""
    found = eventually(
        lambda: [m for m in fake_telegram.chat_messages(chat_id) if fragment in m["text"]],
        timeout_s=timeout_s,
        what=f"a message with {fragment!r}",
    )
    return found[0]


def comment_effects(bridge: Bridge, chat_id: int) -> list[TelegramMessageSent]:
    """The effects of the comments sent into the group (one per Telegram message)."""
    return [
        e
        for e in bridge.events("effect.telegram.message_sent.>")
        if isinstance(e, TelegramMessageSent)
        and e.chat_id == chat_id
        and e.kind is TelegramMessageKind.PLANFIX_COMMENT
    ]


def calls_to(fake_telegram: FakeTelegram, method: str, chat_id: int) -> list[Any]:
    return [c for c in fake_telegram.calls if c.method == method and c.params.get("chat_id") == chat_id]


# --- long comments, flood limits, bursts ----------------------------------------------------------


def test_a_10000_character_comment_arrives_as_three_messages_intact_and_in_order(
    bridge: Bridge, fake_telegram: FakeTelegram, fake_planfix: FakePlanfix, unique_chat_id: int
) -> None:
    number = bind_new_task(bridge, fake_telegram, unique_chat_id, "Long read")
    lines = [f"Step {n:03d}: check the drum unit & clean the rollers" for n in range(200)]
    text = "\n".join(lines)
    assert len(text) == 9_999
    body = (
        "<p>"
        + "<br>".join(line.replace("drum", "<b>drum</b>").replace("&", "&amp;") for line in lines)
        + "</p>"
    )

    fake_planfix.add_employee_comment(number, body, author_name="Olga Smirnova")

    eventually(lambda: len(shown(fake_telegram, unique_chat_id)) == 4, what="confirmation + 3 parts")
    parts = shown(fake_telegram, unique_chat_id)[1:]
    assert parts[0].startswith("Olga Smirnova · Planfix:\nStep 000")
    # Cut at line ends: joined again with the line breaks dropped at the cuts, nothing is missing.
    assert "\n".join(parts) == "Olga Smirnova · Planfix:\n" + text
    sent = [c.params["text"] for c in calls_to(fake_telegram, "sendMessage", unique_chat_id)][1:]
    assert all("<b>drum</b>" in part for part in sent)  # formatting kept in every part
    stays(lambda: len(shown(fake_telegram, unique_chat_id)) == 4, for_s=1.0, what="nothing more")


def test_a_429_is_waited_out_exactly_and_the_message_arrives_once(
    bridge: Bridge, fake_telegram: FakeTelegram, fake_planfix: FakePlanfix, unique_chat_id: int
) -> None:
    number = bind_new_task(bridge, fake_telegram, unique_chat_id, "Flood wait")
    fake_telegram.fail_next("sendMessage", error_code=429, retry_after=2)

    fake_planfix.add_employee_comment(number, "<p>after the flood wait</p>")

    wait_shown(fake_telegram, unique_chat_id, "after the flood wait")
    attempts = [
        c for c in calls_to(fake_telegram, "sendMessage", unique_chat_id) if "flood" in c.params["text"]
    ]
    refused, accepted = attempts
    assert (refused.error_code, accepted.error_code) == (429, None)
    assert accepted.at - refused.at >= 2  # not before retry_after
    stays(
        lambda: len([t for t in shown(fake_telegram, unique_chat_id) if "flood" in t]) == 1,
        for_s=1.0,
        what="delivered once",
    )


def test_a_burst_of_200_comments_arrives_complete_in_order_combined_and_without_a_429(
    bridge: Bridge, fake_telegram: FakeTelegram, fake_planfix: FakePlanfix, unique_chat_id: int
) -> None:
    number = bind_new_task(bridge, fake_telegram, unique_chat_id, "Burst")
    texts = [f"Burst comment {n:03d}: floor {n % 7} printer needs toner" for n in range(200)]

    for text in texts:
        fake_planfix.add_employee_comment(number, f"<p>{text}</p>", author_name="Olga Smirnova")

    eventually(
        lambda: "Burst comment 199" in "".join(shown(fake_telegram, unique_chat_id)),
        timeout_s=120,
        what="the last comment",
    )
    messages = shown(fake_telegram, unique_chat_id)[1:]
    carried = "\n".join(messages)
    positions = [carried.find(text) for text in texts]
    assert all(position >= 0 for position in positions), "every comment arrived"
    assert positions == sorted(positions), "in the order they were written"
    assert carried.count("Olga Smirnova · Planfix:") == 200, "each keeps its author line"
    # How many depends on how fast the comments come in (a loaded machine fetches them slower);
    # at 20 messages per window, 200 comments only fit by being combined.
    assert len(messages) <= 100, f"combined into fewer messages, not {len(messages)}"
    assert fake_telegram.flood_refusals(unique_chat_id) == 0
    assert all(c.error_code is None for c in calls_to(fake_telegram, "sendMessage", unique_chat_id))
    # One effect per message sent, naming every comment the message shows.
    burst = {
        m["message_id"] for m in fake_telegram.chat_messages(unique_chat_id) if "Burst comment" in m["text"]
    }

    def effects_of_the_burst() -> list[TelegramMessageSent]:
        found = [e for e in comment_effects(bridge, unique_chat_id) if set(e.message_ids) <= burst]
        return found if {i for e in found for i in e.message_ids} == burst else []

    effects = eventually(effects_of_the_burst, what="the burst's effects")
    assert len(effects) == len(burst)
    named = [c for e in effects for c in [e.comment_id, *(shown.comment_id for shown in e.also_shows)]]
    assert len(named) == len(set(named)) == 200


def test_a_message_telegram_refuses_for_good_is_set_aside_visibly_and_the_next_still_arrives(
    bridge: Bridge, fake_telegram: FakeTelegram, fake_planfix: FakePlanfix, unique_chat_id: int
) -> None:
    number = bind_new_task(bridge, fake_telegram, unique_chat_id, "Refused")
    fake_telegram.fail_next(
        "sendMessage", error_code=400, description="Bad Request: CHAT_WRITE_FORBIDDEN", times=2
    )

    refused = fake_planfix.add_employee_comment(number, "<p>refused twice</p>")
    # Once refused, it is retried alone (a refused text is never combined with the next one).
    eventually(
        lambda: [c for c in calls_to(fake_telegram, "sendMessage", unique_chat_id) if c.error_code == 400]
    )
    fake_planfix.add_employee_comment(number, "<p>the next one</p>")

    wait_shown(fake_telegram, unique_chat_id, "the next one")
    [failed] = eventually(
        lambda: [
            e
            for e in bridge.events("effect.>")
            if isinstance(e, TelegramDeliveryFailed) and e.chat_id == unique_chat_id
        ],
        what="the dead letter",
    )
    assert failed.comment_id == refused
    assert "CHAT_WRITE_FORBIDDEN" in failed.reason
    assert not any("refused twice" in t for t in shown(fake_telegram, unique_chat_id))


# --- files ------------------------------------------------------------------------------------------


def test_planfix_files_arrive_by_kind_grouped_and_a_too_large_one_as_a_link(
    bridge: Bridge, fake_telegram: FakeTelegram, fake_planfix: FakePlanfix, unique_chat_id: int
) -> None:
    number = bind_new_task(bridge, fake_telegram, unique_chat_id, "Files")
    printer = fake_planfix.add_file("printer.jpg", b"\xff\xd8 printer photo" * 50)
    toner = fake_planfix.add_file("toner.png", b"\x89PNG toner photo" * 50)
    invoice = fake_planfix.add_file("invoice.pdf", b"%PDF-1.4 invoice")
    recording = fake_planfix.add_file("recording.mp4", b"not really 60 MB", size=60 * 1024 * 1024)

    fake_planfix.add_employee_comment(
        number, "<p>Photos and the invoice</p>", files=(printer, toner, invoice, recording)
    )

    wait_shown(fake_telegram, unique_chat_id, "Photos and the invoice")
    eventually(lambda: len(fake_telegram.chat_messages(unique_chat_id)) == 4, what="album + document")
    album_1, album_2, document = fake_telegram.chat_messages(unique_chat_id)[1:]
    assert (album_1["type"], album_1["file_name"], album_2["type"], album_2["file_name"]) == (
        "photo",
        "printer.jpg",
        "photo",
        "toner.png",
    )
    assert album_1["media_group_id"] == album_2["media_group_id"] is not None
    assert "Photos and the invoice" in album_1["text"]
    assert "recording.mp4" in album_1["text"]
    assert "open it in the task" in album_1["text"]
    assert (
        f'/task/{number}"'
        in calls_to(fake_telegram, "sendMediaGroup", unique_chat_id)[0].params["media"][0]["caption"]
    )
    assert (document["type"], document["file_name"], document["file_size"]) == ("document", "invoice.pdf", 16)
    assert calls_to(fake_telegram, "sendVideo", unique_chat_id) == []


def test_a_caption_over_1024_goes_after_its_files_as_text(
    bridge: Bridge, fake_telegram: FakeTelegram, fake_planfix: FakePlanfix, unique_chat_id: int
) -> None:
    number = bind_new_task(bridge, fake_telegram, unique_chat_id, "Long caption")
    report = fake_planfix.add_file("report.docx", b"PK report")
    song = fake_planfix.add_file("jingle.mp3", b"ID3 jingle")
    long_text = "The report explains the outage in detail. " * 40  # ~1700 characters

    fake_planfix.add_employee_comment(
        number, f"<p>{long_text}</p>", files=(report, song), author_name="Olga Smirnova"
    )

    eventually(lambda: len(fake_telegram.chat_messages(unique_chat_id)) == 4, what="document, audio, text")
    document, audio, text = fake_telegram.chat_messages(unique_chat_id)[1:]
    assert (document["type"], document["file_name"], document["text"]) == (
        "document",
        "report.docx",
        "Olga Smirnova · Planfix",
    )
    assert (audio["type"], audio["file_name"]) == ("audio", "jingle.mp3")
    assert text["type"] == "text"
    assert long_text.strip() in text["text"]


def test_a_captioned_comment_whose_files_are_all_gone_still_arrives_as_text(
    bridge: Bridge, fake_telegram: FakeTelegram, fake_planfix: FakePlanfix, unique_chat_id: int
) -> None:
    number = bind_new_task(bridge, fake_telegram, unique_chat_id, "Vanished files")
    photo = fake_planfix.add_file("gone.jpg", b"\xff\xd8 soon deleted")
    comment = fake_planfix.add_employee_comment(
        number, "<p>See the attached photo</p>", files=(photo,), fire_webhook=False
    )
    fake_planfix.delete_file(photo)  # deleted in Planfix before the bridge fetched it

    fake_planfix.post_webhook(number, comment)

    message = wait_shown(fake_telegram, unique_chat_id, "See the attached photo")
    assert message["type"] == "text"
    assert calls_to(fake_telegram, "sendPhoto", unique_chat_id) == []
    # Recorded as a text message: an edit of the comment edits it.
    fake_planfix.edit_comment(comment, "<p>See the attached photo, now gone</p>")
    eventually(lambda: "now gone" in shown(fake_telegram, unique_chat_id)[-1], what="edited as text")


def test_a_voice_message_from_planfix_arrives_as_a_voice_message(
    bridge: Bridge, fake_telegram: FakeTelegram, fake_planfix: FakePlanfix, unique_chat_id: int
) -> None:
    number = bind_new_task(bridge, fake_telegram, unique_chat_id, "Voice")
    note = fake_planfix.add_file("voice-note.ogg", b"OggS voice bytes")
    other = fake_planfix.add_file("reply.oga", b"OggS second voice")

    fake_planfix.add_employee_comment(number, "<p>Listen to this</p>", files=(note, other))

    eventually(lambda: len(fake_telegram.chat_messages(unique_chat_id)) == 3, what="two voice messages")
    first, second = fake_telegram.chat_messages(unique_chat_id)[1:]
    assert (first["type"], first["file_name"], second["type"], second["file_name"]) == (
        "voice",
        "voice-note.ogg",
        "voice",
        "reply.oga",
    )
    assert "Listen to this" in first["text"]
    assert calls_to(fake_telegram, "sendDocument", unique_chat_id) == []
    assert len(calls_to(fake_telegram, "sendVoice", unique_chat_id)) == 2


# --- edits and deletions ------------------------------------------------------------------------------


def test_an_edited_comment_edits_its_message_and_a_deleted_one_removes_it(
    bridge: Bridge, fake_telegram: FakeTelegram, fake_planfix: FakePlanfix, unique_chat_id: int
) -> None:
    number = bind_new_task(bridge, fake_telegram, unique_chat_id, "Edits")
    fake_planfix.add_employee_comment(number, "<p>this one stays</p>")
    wait_shown(fake_telegram, unique_chat_id, "this one stays")
    changing = fake_planfix.add_employee_comment(number, "<p>first version</p>")
    original = wait_shown(fake_telegram, unique_chat_id, "first version")

    fake_planfix.edit_comment(changing, "<p>second <b>version</b></p>")

    edited = wait_shown(fake_telegram, unique_chat_id, "second version")
    assert edited["message_id"] == original["message_id"]
    assert edited["edited"] is True
    assert (
        calls_to(fake_telegram, "editMessageText", unique_chat_id)[-1]
        .params["text"]
        .endswith("second <b>version</b>")
    )

    fake_planfix.delete_comment(changing)

    eventually(
        lambda: not [t for t in shown(fake_telegram, unique_chat_id) if "version" in t], what="deleted"
    )
    assert any("this one stays" in t for t in shown(fake_telegram, unique_chat_id))
    assert [c.params["message_id"] for c in calls_to(fake_telegram, "deleteMessage", unique_chat_id)] == [
        original["message_id"]
    ]


def test_comments_sharing_a_combined_message_are_edited_and_deleted_within_it(
    bridge: Bridge, fake_telegram: FakeTelegram, fake_planfix: FakePlanfix, unique_chat_id: int
) -> None:
    number = bind_new_task(bridge, fake_telegram, unique_chat_id, "Combined edits")
    # A 429 holds the group for two seconds: the three comments wait together and go as one.
    fake_telegram.fail_next("sendMessage", error_code=429, retry_after=2)
    first, second, _third = (
        fake_planfix.add_employee_comment(number, f"<p>{word} comment</p>")
        for word in ("first", "second", "third")
    )
    combined = wait_shown(fake_telegram, unique_chat_id, "third comment")
    assert ["first comment" in combined["text"], "second comment" in combined["text"]] == [True, True]

    fake_planfix.edit_comment(second, "<p>second comment, corrected</p>")
    wait_shown(fake_telegram, unique_chat_id, "second comment, corrected")
    fake_planfix.delete_comment(first)

    eventually(
        lambda: "first comment" not in fake_telegram.chat_messages(unique_chat_id)[-1]["text"],
        what="first removed",
    )
    [message] = fake_telegram.chat_messages(unique_chat_id)[1:]
    assert message["message_id"] == combined["message_id"]
    assert message["text"] == (
        "Olga Smirnova · Planfix:\nsecond comment, corrected\n\nOlga Smirnova · Planfix:\nthird comment"
    )
    assert calls_to(fake_telegram, "deleteMessage", unique_chat_id) == []


# --- commands ------------------------------------------------------------------------------------------


def test_status_names_the_bound_task_with_a_link_and_help_lists_the_commands(
    bridge: Bridge, fake_telegram: FakeTelegram, unique_chat_id: int
) -> None:
    number = bind_new_task(bridge, fake_telegram, unique_chat_id, "Status check")

    question = fake_telegram.add_group_message(
        unique_chat_id, "/status@planfix_bridge_bot", user_id=MEMBER_ID
    )
    fake_telegram.add_group_message(unique_chat_id, "/help", user_id=MEMBER_ID)

    answer = wait_shown(fake_telegram, unique_chat_id, "is bound to Planfix task")
    assert f"#{number}" in answer["text"]
    assert "Status check" in answer["text"]
    assert answer["reply_to_message_id"] == question["message"]["message_id"]
    assert f'/task/{number}">#{number}</a>' in answer["html"]
    help_answer = wait_shown(fake_telegram, unique_chat_id, "/help — this list")
    for command in ("/task", "/status", "/unbind"):
        assert command in help_answer["text"]


def test_only_admins_may_bind_or_unbind_and_others_are_told_politely(
    bridge: Bridge, fake_telegram: FakeTelegram, fake_planfix: FakePlanfix, unique_chat_id: int
) -> None:
    fake_telegram.add_group_message(unique_chat_id, "/task Not mine to create", user_id=MEMBER_ID)
    refusal = wait_shown(fake_telegram, unique_chat_id, "only the group's admins")
    assert "bind" in refusal["text"]
    assert bridge.binding_document(unique_chat_id) is None
    assert not any(
        c.path == "/rest/task/" and isinstance(c.json, dict) and c.json.get("name") == "Not mine to create"
        for c in fake_planfix.calls
    )

    number = bind_new_task(bridge, fake_telegram, unique_chat_id, "Admins only")
    fake_telegram.add_group_message(unique_chat_id, "/unbind", user_id=MEMBER_ID)
    eventually(
        lambda: len([t for t in shown(fake_telegram, unique_chat_id) if "only the group's admins" in t]) == 2
    )
    assert bridge.binding_document(unique_chat_id) is not None

    fake_telegram.add_group_message(unique_chat_id, "/unbind", user_id=ADMIN_ID)

    wait_shown(fake_telegram, unique_chat_id, f"no longer bound to Planfix task #{number}")
    assert bridge.binding_document(unique_chat_id) is None
    fake_planfix.add_employee_comment(number, "<p>nobody listens now</p>")
    fake_telegram.add_group_message(unique_chat_id, "/status")
    wait_shown(fake_telegram, unique_chat_id, "is not bound to a Planfix task")
    assert not any("nobody listens" in t for t in shown(fake_telegram, unique_chat_id))


# --- the group's life-cycle -----------------------------------------------------------------------------


def test_a_group_without_a_binding_is_greeted_when_the_bot_is_added(
    bridge: Bridge, fake_telegram: FakeTelegram, unique_chat_id: int
) -> None:
    fake_telegram.set_bot_membership(unique_chat_id, "member", old_status="left")

    greeting = wait_shown(fake_telegram, unique_chat_id, "Hello")
    assert "/task" in greeting["text"]


def test_removing_the_bot_suspends_the_binding_and_re_adding_resumes_it_with_what_was_missed(
    bridge: Bridge, fake_telegram: FakeTelegram, fake_planfix: FakePlanfix, unique_chat_id: int
) -> None:
    number = bind_new_task(bridge, fake_telegram, unique_chat_id, "Kicked")
    fake_telegram.set_bot_membership(unique_chat_id, "kicked")
    # bool(): the store may hand a boolean back as 1.
    eventually(
        lambda: bool((bridge.binding_document(unique_chat_id) or {}).get("suspended")), what="suspended"
    )

    fake_planfix.add_employee_comment(number, "<p>written while the bot was away</p>")
    stays(lambda: len(shown(fake_telegram, unique_chat_id)) == 1, for_s=2.0, what="nothing sent meanwhile")
    assert calls_to(fake_telegram, "sendMessage", unique_chat_id)[-1].error_code is None  # no 403 provoked

    fake_telegram.set_bot_membership(unique_chat_id, "member")

    wait_shown(fake_telegram, unique_chat_id, "written while the bot was away")
    wait_shown(fake_telegram, unique_chat_id, "Welcome back")
    assert not (bridge.binding_document(unique_chat_id) or {}).get("suspended")
    assert not any("Hello" in t for t in shown(fake_telegram, unique_chat_id))  # no greeting: it is bound


def test_a_group_upgraded_to_a_supergroup_keeps_its_binding_and_loses_nothing(
    bridge: Bridge, fake_telegram: FakeTelegram, fake_planfix: FakePlanfix, unique_chat_id: int
) -> None:
    old_group = -(abs(unique_chat_id) % 10_000_000_000)  # a basic group: no -100 prefix
    number = bind_new_task(bridge, fake_telegram, old_group, "Upgrade")
    # The gateway is down while Telegram upgrades the group: the relay learns it from Telegram's
    # 400 with migrate_to_chat_id on its next send, the gateway from the service messages later.
    bridge.processes["telegram_gateway"].stop()
    new_group = fake_telegram.migrate_to_supergroup(old_group)

    fake_planfix.add_employee_comment(number, "<p>written during the upgrade</p>")

    wait_shown(fake_telegram, new_group, "written during the upgrade")
    assert calls_to(fake_telegram, "sendMessage", old_group)[-1].error_code == 400
    eventually(lambda: (bridge.binding_document(new_group) or {}).get("task_number") == number, what="moved")
    assert bridge.binding_document(old_group) is None

    bridge.processes["telegram_gateway"].start()
    fake_telegram.add_group_message(new_group, "written in the supergroup")

    eventually(
        lambda: [
            c for c in relayed_comments(fake_planfix, number) if "written in the supergroup" in c.description
        ],
        timeout_s=40,
        what="the supergroup's message as a comment",
    )
    fake_planfix.add_employee_comment(number, "<p>answered after the upgrade</p>")
    wait_shown(fake_telegram, new_group, "answered after the upgrade")


def test_an_anonymous_admin_is_told_once_how_to_switch_anonymity_off(
    bridge: Bridge, fake_telegram: FakeTelegram, unique_chat_id: int
) -> None:
    bind_new_task(bridge, fake_telegram, unique_chat_id, "Anonymous")
    group = {"id": unique_chat_id, "type": "supergroup", "title": "Support group"}

    first = fake_telegram.add_group_message(unique_chat_id, "posted as the group", sender_chat=group)
    fake_telegram.add_group_message(unique_chat_id, "and again", sender_chat=group)
    marker = fake_telegram.add_group_message(unique_chat_id, "a normal message")

    guidance = wait_shown(fake_telegram, unique_chat_id, "Remain anonymous")
    assert guidance["reply_to_message_id"] == first["message"]["message_id"]
    eventually(
        lambda: [
            e
            for e in bridge.events("telegram.>")
            if isinstance(e, TelegramMessageReceived) and e.message_id == marker["message"]["message_id"]
        ],
        what="the later message handled",
    )
    fake_telegram.add_group_message(unique_chat_id, "a third time", sender_chat=group)
    stays(
        lambda: len([t for t in shown(fake_telegram, unique_chat_id) if "Remain anonymous" in t]) == 1,
        for_s=2.0,
        what="told once",
    )
    received = [
        e
        for e in bridge.events("telegram.>")
        if isinstance(e, TelegramMessageReceived) and e.chat_id == unique_chat_id
    ]
    assert [e.text for e in received] == ["a normal message"]
    assert re.search(r"anonym", guidance["text"], re.IGNORECASE)


def test_an_anonymous_admin_is_told_again_after_a_quiet_day_and_their_commands_are_answered(
    bridge: Bridge, fake_telegram: FakeTelegram, unique_chat_id: int
) -> None:
    number = bind_new_task(bridge, fake_telegram, unique_chat_id, "Anonymous again")
    group = {"id": unique_chat_id, "type": "supergroup", "title": "Support group"}

    def guidance_count() -> int:
        return len([t for t in shown(fake_telegram, unique_chat_id) if "at most once a day" in t])

    fake_telegram.add_group_message(unique_chat_id, "posted as the group", sender_chat=group)
    eventually(lambda: guidance_count() == 1, what="guidance")
    # A day goes by: the guidance went out 25 hours ago.
    eventually(
        lambda: bridge.update_documents(
            "telegram_outbox_finished",
            {"chat_id": unique_chat_id, "kind": "anonymous_admin_guidance"},
            {"$set": {"enqueued_at": datetime.now(UTC) - timedelta(hours=25)}},
        ),
        what="the guidance recorded as sent",
    )

    fake_telegram.add_group_message(unique_chat_id, "posted as the group the next day", sender_chat=group)
    eventually(lambda: guidance_count() == 2, what="guidance again after a quiet day")
    fake_telegram.add_group_message(unique_chat_id, "and once more the same day", sender_chat=group)

    task = fake_telegram.add_group_message(unique_chat_id, "/task Another task", sender_chat=group)
    answer = wait_shown(fake_telegram, unique_chat_id, "cannot act on this /task")
    assert answer["reply_to_message_id"] == task["message"]["message_id"]
    assert "Remain anonymous" in answer["text"]
    fake_telegram.add_group_message(unique_chat_id, "/unbind", sender_chat=group)
    wait_shown(fake_telegram, unique_chat_id, "cannot act on this /unbind")
    fake_telegram.add_group_message(unique_chat_id, "/status", sender_chat=group)
    status = wait_shown(fake_telegram, unique_chat_id, "not passed on to Planfix;")
    assert f"#{number}" in status["text"]
    stays(lambda: guidance_count() == 2, what="not told a third time within the day")
    requests = [e for e in bridge.events(f"telegram.bind.requested.{unique_chat_id}")]
    assert len(requests) == 1  # only the admin's own /task: nothing anonymous reached the binder


def test_a_comment_with_a_pdf_and_a_photo_arrives_with_the_same_bytes_fetched_without_the_token(
    bridge: Bridge, fake_telegram: FakeTelegram, fake_planfix: FakePlanfix, unique_chat_id: int
) -> None:
    # Planfix answers each download with a 302 to its storage (the spec); the bytes are fetched
    # there without the bearer token, and the comment's text travels with them.
    fake_telegram.keep_sent_files = True
    try:
        number = bind_new_task(bridge, fake_telegram, unique_chat_id, "Spec downloads")
        photo_bytes = b"\xff\xd8\xff\xe0 JPEG printer tray " * 40
        pdf_bytes = b"%PDF-1.7\n" + bytes(range(256)) * 8
        photo = fake_planfix.add_file("tray.jpg", photo_bytes)
        pdf = fake_planfix.add_file("act.pdf", pdf_bytes)
        storage_before = len(fake_planfix.storage_calls)

        fake_planfix.add_employee_comment(number, "<p>The act and the tray</p>", files=(photo, pdf))

        wait_shown(fake_telegram, unique_chat_id, "The act and the tray")
        eventually(
            lambda: sum(1 for m in fake_telegram.chat_messages(unique_chat_id) if m["file_id"]) == 2,
            what="the photo and the PDF in the group",
        )
        sent = {m["file_name"]: m for m in fake_telegram.chat_messages(unique_chat_id) if m["file_id"]}
        assert fake_telegram.file_bytes(sent["tray.jpg"]["file_id"]) == photo_bytes
        assert fake_telegram.file_bytes(sent["act.pdf"]["file_id"]) == pdf_bytes
        assert any("The act and the tray" in m["text"] for m in sent.values())
        assert len(fake_planfix.storage_calls) - storage_before >= 2
        assert fake_planfix.storage_requests_with_authorization() == []
    finally:
        fake_telegram.keep_sent_files = False
