"""Group -> task, end to end: every kind of message, files, albums, edits, reactions, replies,
formatting and forum topics, through the four services as processes, real NATS and store, the
real aiogram and httpx clients, and the fake Telegram and Planfix servers.

Each test asserts what reaches the fake Planfix (comments, their files and updates) and, where
it matters, the calls that reached the fake Telegram (getFile, downloads).
"""

from __future__ import annotations

import uuid
from typing import Any

from contracts.events import planfix_source_object_id, telegram_message_key
from sandbox.fake_planfix import FakeComment, FakePlanfix
from sandbox.fake_telegram import FakeTelegram
from tests.conftest import BOT_TOKEN
from tests.e2e_bridge import ADMIN_ID, Bridge, bind_new_task
from tests.support import eventually, relayed_comments, stays
from tests.test_bridge_end_to_end import bridge

__all__ = ["bridge"]  # the module-scoped bridge fixture: one for this module

MB = 1024 * 1024
PNG = b"\x89PNG\r\n\x1a\n" + b"picture-bytes"


def comments_of(fake_planfix: FakePlanfix, number: int, count: int) -> list[FakeComment]:
    def enough() -> list[FakeComment]:
        found = relayed_comments(fake_planfix, number)
        return found if len(found) >= count else []

    return eventually(enough, timeout_s=20, what=f"{count} comment(s) in task {number}")


def updated_comment(fake_planfix: FakePlanfix, comment_id: int, updates: int) -> FakeComment:
    def done() -> FakeComment | None:
        comment = fake_planfix.comment(comment_id)
        return comment if comment is not None and comment.updates >= updates else None

    comment = eventually(done, what=f"comment {comment_id} updated {updates} time(s)")
    assert comment is not None
    return comment


def photo(fake_telegram: FakeTelegram, data: bytes = PNG) -> list[dict[str, Any]]:
    big = fake_telegram.add_file(data)
    small = fake_telegram.add_file(b"thumb")
    return [{**small, "width": 90, "height": 90}, {**big, "width": 1280, "height": 960}]


def all_text(fake_planfix: FakePlanfix, number: int) -> str:
    return "\n".join(comment.description for comment in relayed_comments(fake_planfix, number))


def test_a_photo_with_a_formatted_caption_becomes_a_comment_with_the_file_attached(
    bridge: Bridge, fake_telegram: FakeTelegram, fake_planfix: FakePlanfix, unique_chat_id: int
) -> None:
    number = bind_new_task(bridge, fake_telegram, unique_chat_id, "Photos")
    sizes = photo(fake_telegram)
    caption = "Jam in 😀 tray <script>x</script> see docs"
    fake_telegram.add_group_message(
        unique_chat_id,
        None,
        extra={
            "photo": sizes,
            "caption": caption,
            # "tray" after an emoji: offsets count UTF-16 units (the emoji is two).
            "caption_entities": [
                {"type": "bold", "offset": 10, "length": 4},
                {"type": "text_link", "offset": 38, "length": 4, "url": "https://docs.example/a?b=1&c=2"},
            ],
        },
    )

    [comment] = comments_of(fake_planfix, number, 1)

    assert "Jam in 😀 <b>tray</b> &lt;script&gt;x&lt;/script&gt; see" in comment.description
    assert '<a href="https://docs.example/a?b=1&amp;c=2">docs</a>' in comment.description
    [file_id] = comment.files
    stored = fake_planfix.file(file_id)
    assert stored is not None
    assert stored.data == PNG  # the largest size, as bytes: no Telegram URL ever reaches Planfix
    assert sizes[1]["file_id"] in fake_telegram.downloads()
    assert sizes[0]["file_id"] not in fake_telegram.downloads()


def test_documents_locations_contacts_polls_stickers_forwards_and_replies_all_arrive(
    bridge: Bridge, fake_telegram: FakeTelegram, fake_planfix: FakePlanfix, unique_chat_id: int
) -> None:
    number = bind_new_task(bridge, fake_telegram, unique_chat_id, "Kinds")
    document = fake_telegram.add_file(b"log line\n")
    sticker = fake_telegram.add_file(b"RIFF-webp")
    asked = fake_telegram.add_group_message(
        unique_chat_id, "Who has the key?\nsecond line", first_name="Anna"
    )
    sent: list[dict[str, Any]] = [
        {
            "document": {**document, "file_name": "server.log", "mime_type": "text/plain"},
            "caption": "the log",
        },
        {"location": {"latitude": 55.75, "longitude": 37.61}},
        {"contact": {"phone_number": "+7 900 000", "first_name": "Petr", "last_name": "Sidorov"}},
        {
            "poll": {
                "id": "p1", "question": "Lunch?", "total_voter_count": 0, "is_closed": False,
                "is_anonymous": True, "type": "regular", "allows_multiple_answers": False,
                "allows_revoting": False, "members_only": False,
                "options": [
                    {"persistent_id": "1", "text": "Pizza", "voter_count": 0},
                    {"persistent_id": "2", "text": "Soup", "voter_count": 0},
                ],
            }
        },
        {
            "sticker": {
                **sticker, "type": "regular", "width": 512, "height": 512,
                "is_animated": False, "is_video": False, "emoji": "👍", "set_name": "OfficeCats",
            }
        },
        {
            "text": "Deploy at 5",
            "forward_origin": {
                "type": "channel", "date": 1, "message_id": 9,
                "chat": {"id": -1009, "type": "channel", "title": "Ops news", "username": "opsnews"},
            },
        },
        {"text": "I have it", "reply_to_message": asked["message"]},
    ]  # fmt: skip
    for fields in sent:
        fake_telegram.add_group_message(unique_chat_id, None, extra=fields)

    def everything_arrived() -> bool:
        text = all_text(fake_planfix, number)
        return "I have it" in text and "Lunch?" in text

    eventually(everything_arrived, timeout_s=20, what="every message in Planfix")
    text = all_text(fake_planfix, number)
    assert "the log" in text
    assert "📍 Location" in text
    assert "55.75, 37.61" in text
    assert "Contact: Petr Sidorov, +7 900 000" in text
    assert "Poll: <b>Lunch?</b><br>• Pizza<br>• Soup" in text
    assert "Sticker 👍 (OfficeCats)" in text
    assert "Forwarded from channel Ops news (@opsnews)" in text
    assert "<blockquote><b>Anna Petrov (@ivan_p)</b>: Who has the key?</blockquote>" in text
    attached = [fake_planfix.file(f) for c in relayed_comments(fake_planfix, number) for f in c.files]
    assert sorted((f.name, f.data) for f in attached if f) == [
        ("server.log", b"log line\n"),
        (f"sticker_{asked['message']['message_id'] + 5}.webp", b"RIFF-webp"),
    ]


def test_a_reply_to_a_bridged_planfix_comment_quotes_that_comment_and_links_to_it(
    bridge: Bridge, fake_telegram: FakeTelegram, fake_planfix: FakePlanfix, unique_chat_id: int
) -> None:
    number = bind_new_task(bridge, fake_telegram, unique_chat_id, "Replies to Planfix")
    comment_id = fake_planfix.add_employee_comment(
        number, "<p>Toner is <b>ordered</b></p><p>It comes on Friday</p>", author_name="Olga Smirnova"
    )
    shown = eventually(
        lambda: [m for m in fake_telegram.chat_messages(unique_chat_id) if "Toner is ordered" in m["text"]],
        what="the comment shown in the group",
    )[0]
    bot_id = int(BOT_TOKEN.split(":")[0])
    answered = {
        "message_id": shown["message_id"],
        "from": {"id": bot_id, "is_bot": True, "first_name": "Bridge", "username": "bridge_bot"},
        "chat": {"id": unique_chat_id, "type": "supergroup", "title": "Support group"},
        "date": 1700000000,
        "text": shown["text"],
    }

    fake_telegram.add_group_message(
        unique_chat_id, "Thanks! Which tray?", extra={"reply_to_message": answered}
    )

    [reply] = eventually(
        lambda: [c for c in relayed_comments(fake_planfix, number) if "Which tray?" in c.description],
        what="the reply in Planfix",
    )
    quote = reply.description.split("<blockquote>", 1)[1].split("</blockquote>", 1)[0]
    assert "<b>Olga Smirnova</b>" in quote
    assert quote.endswith(": Toner is ordered")
    assert f'/task/{number}?comment={comment_id}"' in quote
    assert "Planfix:" not in quote
    assert "Bridge" not in quote


def test_a_file_over_20_mb_is_named_with_its_size_and_nothing_is_dropped(
    bridge: Bridge, fake_telegram: FakeTelegram, fake_planfix: FakePlanfix, unique_chat_id: int
) -> None:
    number = bind_new_task(bridge, fake_telegram, unique_chat_id, "Big files")
    announced = fake_telegram.add_file(b"x", declared_size=25 * MB)
    unannounced = fake_telegram.add_file(b"y", declared_size=30 * MB)
    fake_telegram.add_group_message(
        unique_chat_id,
        None,
        extra={"document": {**announced, "file_name": "backup.zip"}, "caption": "backup"},
    )
    # Telegram did not say the size here: getFile answers "file is too big".
    unsized = {"file_id": unannounced["file_id"], "file_unique_id": unannounced["file_unique_id"]}
    fake_telegram.add_group_message(
        unique_chat_id, None, extra={"video": {**unsized, "width": 1, "height": 1, "duration": 1}}
    )

    eventually(lambda: "video_" in all_text(fake_planfix, number), timeout_s=20, what="both notes")
    text = all_text(fake_planfix, number)
    assert "backup.zip (25.0 MB) was not attached: Telegram lets bots download files of at most 20 MB" in text
    assert "backup" in text
    assert (
        "was not attached: Telegram lets bots download files of at most 20 MB" in text.split("backup.zip")[-1]
    )
    assert all(comment.files == () for comment in relayed_comments(fake_planfix, number))
    get_file = [c for c in fake_telegram.calls if c.method == "getFile"]
    assert [c.params["file_id"] for c in get_file if c.error_code == 400] == [unannounced["file_id"]]
    assert announced["file_id"] not in [c.params["file_id"] for c in get_file]


def test_an_album_becomes_one_comment_with_all_its_files_and_a_late_part_joins_it(
    bridge: Bridge, fake_telegram: FakeTelegram, fake_planfix: FakePlanfix, unique_chat_id: int
) -> None:
    number = bind_new_task(bridge, fake_telegram, unique_chat_id, "Album")
    parts = [photo(fake_telegram, PNG + bytes([i])) for i in range(3)]
    for index, sizes in enumerate(parts):
        fields: dict[str, Any] = {"photo": sizes, "media_group_id": "13579"}
        if index == 0:
            fields["caption"] = "Three views of the jam"
        fake_telegram.add_group_message(unique_chat_id, None, extra=fields)

    [comment] = comments_of(fake_planfix, number, 1)
    assert "Three views of the jam" in comment.description
    assert [fake_planfix.file(f).data for f in comment.files] == [PNG + bytes([i]) for i in range(3)]  # type: ignore[union-attr]

    fake_telegram.add_group_message(
        unique_chat_id, None, extra={"photo": photo(fake_telegram, PNG + b"late"), "media_group_id": "13579"}
    )

    eventually(
        lambda: len(relayed_comments(fake_planfix, number)[0].files) == 4,
        timeout_s=20,
        what="late part in the comment",
    )
    stays(lambda: len(relayed_comments(fake_planfix, number)) == 1, for_s=1.0, what="still one comment")


def test_an_edit_updates_the_comment_it_became_and_an_unknown_edit_is_ignored(
    bridge: Bridge, fake_telegram: FakeTelegram, fake_planfix: FakePlanfix, unique_chat_id: int
) -> None:
    number = bind_new_task(bridge, fake_telegram, unique_chat_id, "Edits")
    before_binding = fake_telegram.add_group_message(unique_chat_id - 1, "in another, unbound group")
    original = fake_telegram.add_group_message(unique_chat_id, "The printer is brokn")
    [comment] = comments_of(fake_planfix, number, 1)

    fake_telegram.edit_group_message(
        original, "The printer is broken", entities=[{"type": "italic", "offset": 15, "length": 6}]
    )
    fake_telegram.edit_group_message(before_binding, "edited where nobody listens")

    updated = updated_comment(fake_planfix, comment.id, 1)
    assert "The printer is <i>broken</i>" in updated.description
    assert "edited" in updated.description
    stays(lambda: len(relayed_comments(fake_planfix, number)) == 1, for_s=1.0, what="no new comment")
    eventually(
        lambda: "edit_of_unknown_message_ignored" in bridge.processes["relay"].log_text(),
        what="the unknown edit logged",
    )


def test_a_photo_swapped_by_an_edit_joins_the_comment_and_names_the_old_one_as_replaced(
    bridge: Bridge, fake_telegram: FakeTelegram, fake_planfix: FakePlanfix, unique_chat_id: int
) -> None:
    number = bind_new_task(bridge, fake_telegram, unique_chat_id, "Swapped media")
    original = fake_telegram.add_group_message(
        unique_chat_id, None, extra={"photo": photo(fake_telegram, PNG + b"first"), "caption": "The jam"}
    )
    [comment] = comments_of(fake_planfix, number, 1)
    [first_file] = comment.files
    report = fake_telegram.add_file(b"%PDF-1.4 the service report")

    # Someone swaps the photo for the service report, and says so in the caption.
    fake_telegram.edit_group_message(
        original,
        "The jam, see the report",
        media={"document": {**report, "file_name": "report.pdf", "mime_type": "application/pdf"}},
    )

    updated = updated_comment(fake_planfix, comment.id, 1)
    assert "The jam, see the report" in updated.description
    assert updated.files[0] == first_file
    [new_file] = updated.files[1:]
    assert fake_planfix.file(new_file).data == b"%PDF-1.4 the service report"  # type: ignore[union-attr]
    message_id = original["message"]["message_id"]
    assert f"report.pdf (1 KB) replaced photo_{message_id}.jpg" in updated.description
    stays(lambda: len(relayed_comments(fake_planfix, number)) == 1, for_s=1.0, what="no new comment")


def test_reactions_show_as_one_line_on_the_comment_updated_in_place(
    bridge: Bridge, fake_telegram: FakeTelegram, fake_planfix: FakePlanfix, unique_chat_id: int
) -> None:
    number = bind_new_task(bridge, fake_telegram, unique_chat_id, "Reactions")
    message = fake_telegram.add_group_message(unique_chat_id, "Fixed it")
    [comment] = comments_of(fake_planfix, number, 1)
    message_id = message["message"]["message_id"]

    fake_telegram.add_reaction(unique_chat_id, message_id, ["👍"])
    eventually(
        lambda: "Reactions: 👍 Anna (@anna_iv)" in (fake_planfix.comment(comment.id) or comment).description,
        what="first reaction shown",
    )
    fake_telegram.add_reaction(
        unique_chat_id, message_id, ["🔥"], user_id=503, first_name="Oleg", username=None
    )
    fake_telegram.add_reaction(unique_chat_id, message_id, [])  # Anna takes hers back

    eventually(
        lambda: "Reactions: 🔥 Oleg</i>" in (fake_planfix.comment(comment.id) or comment).description,
        what="reactions updated in place",
    )
    assert len(relayed_comments(fake_planfix, number)) == 1


def test_each_forum_topic_binds_its_own_task_and_talks_only_to_it(
    bridge: Bridge, fake_telegram: FakeTelegram, fake_planfix: FakePlanfix, unique_chat_id: int
) -> None:
    fake_telegram.set_member_status(unique_chat_id, ADMIN_ID, "administrator")  # only admins bind
    fake_telegram.add_group_message(unique_chat_id, "/task Printers", thread_id=5)
    fake_telegram.add_group_message(unique_chat_id, "/task Network", thread_id=7)

    def both_bound() -> list[dict[str, Any]]:
        sent = fake_telegram.sent_messages(unique_chat_id)
        return sent if len(sent) == 2 else []

    confirmations = eventually(both_bound, what="both topics bound")
    assert {m["message_thread_id"] for m in confirmations} == {5, 7}
    tasks = {m["message_thread_id"]: int(str(m["text"]).split("#")[1].split("<")[0]) for m in confirmations}

    fake_telegram.add_group_message(unique_chat_id, "toner low", thread_id=5)
    fake_telegram.add_group_message(unique_chat_id, "wifi down", thread_id=7)

    [printers] = comments_of(fake_planfix, tasks[5], 1)
    [network] = comments_of(fake_planfix, tasks[7], 1)
    assert "toner low" in printers.description
    assert "wifi" not in printers.description
    assert "wifi down" in network.description
    assert "toner" not in network.description
    fake_planfix.add_employee_comment(tasks[5], "Toner ordered")
    answer = eventually(
        lambda: [m for m in fake_telegram.sent_messages(unique_chat_id) if "Toner ordered" in str(m["text"])],
        what="the task's comment in its topic",
    )
    assert answer[0]["message_thread_id"] == 5


def test_authors_are_named_and_channels_and_bots_are_marked(
    bridge: Bridge, fake_telegram: FakeTelegram, fake_planfix: FakePlanfix, unique_chat_id: int
) -> None:
    number = bind_new_task(bridge, fake_telegram, unique_chat_id, "Authors")
    channel = {"id": unique_chat_id - 5, "type": "channel", "title": "Linked news", "username": "linked"}
    fake_telegram.add_group_message(unique_chat_id, "from the channel", sender_chat=channel)
    bot = {"id": 42, "is_bot": True, "first_name": "CI Bot", "username": "ci_bot"}
    fake_telegram.add_group_message(unique_chat_id, None, extra={"from": bot, "text": "build green"})

    eventually(lambda: "build green" in all_text(fake_planfix, number), what="both messages")
    text = all_text(fake_planfix, number)
    assert "<b>Linked news</b> (@linked) [channel]" in text
    assert "<b>CI Bot</b> (@ci_bot) [bot]" in text


def test_a_comment_notified_three_times_is_one_message_and_own_comments_never_come_back(
    bridge: Bridge, fake_telegram: FakeTelegram, fake_planfix: FakePlanfix, unique_chat_id: int
) -> None:
    number = bind_new_task(bridge, fake_telegram, unique_chat_id, "Three notices")
    fake_telegram.add_group_message(unique_chat_id, "from the group")
    [own] = comments_of(fake_planfix, number, 1)
    fake_planfix.post_webhook(number, own.id)  # the bridge's own comment, notified again
    before = len(fake_telegram.sent_messages(unique_chat_id))

    comment_id = fake_planfix.add_employee_comment(number, "Noted, thanks")
    fake_planfix.post_webhook(number, comment_id)
    fake_planfix.post_webhook(number, comment_id)

    eventually(
        lambda: len(fake_telegram.sent_messages(unique_chat_id)) == before + 1,
        what="one message in the group",
    )
    stays(
        lambda: len(fake_telegram.sent_messages(unique_chat_id)) == before + 1,
        for_s=1.5,
        what="exactly one message, no echo",
    )
    assert "Noted, thanks" in str(fake_telegram.sent_messages(unique_chat_id)[-1]["text"])


def test_a_file_planfix_refuses_as_too_large_is_named_in_the_comment(
    bridge: Bridge, fake_telegram: FakeTelegram, fake_planfix: FakePlanfix, unique_chat_id: int
) -> None:
    number = bind_new_task(bridge, fake_telegram, unique_chat_id, "Plan limit")
    scan = fake_telegram.add_file(b"s" * 4096)
    limit = fake_planfix.max_file_size
    fake_planfix.max_file_size = 1024  # a small plan: Planfix answers code 7002
    try:
        fake_telegram.add_group_message(
            unique_chat_id, None, extra={"document": {**scan, "file_name": "scan.pdf"}, "caption": "the scan"}
        )
        [comment] = comments_of(fake_planfix, number, 1)
    finally:
        fake_planfix.max_file_size = limit

    assert (
        "scan.pdf (4 KB) was not attached: it is larger than the Planfix plan allows" in comment.description
    )
    assert "the scan" in comment.description
    assert comment.files == ()


def test_while_planfix_is_down_messages_and_edits_wait_and_arrive_once_in_order(
    bridge: Bridge, fake_telegram: FakeTelegram, fake_planfix: FakePlanfix, unique_chat_id: int
) -> None:
    number = bind_new_task(bridge, fake_telegram, unique_chat_id, "Outage", fake_planfix)
    fake_planfix.set_unavailable(True)
    try:
        first = fake_telegram.add_group_message(unique_chat_id, "first during the outage")
        fake_telegram.add_group_message(unique_chat_id, "second during the outage")
        fake_telegram.edit_group_message(first, "first during the outage, edited")
        eventually(
            lambda: any(
                c.path.endswith(f"/task/{number}/comments/") and c.status == 503 for c in fake_planfix.calls
            ),
            what="a refused post",
        )
    finally:
        fake_planfix.set_unavailable(False)

    eventually(
        lambda: "first during the outage, edited" in all_text(fake_planfix, number),
        timeout_s=40,
        what="both messages and the edit after the outage",
    )
    text = all_text(fake_planfix, number)
    assert text.count("during the outage") == 2
    assert text.index("first during") < text.index("second during")


def test_a_group_text_becomes_exactly_one_comment_with_a_uuid_source_object_id(
    bridge: Bridge, fake_telegram: FakeTelegram, fake_planfix: FakePlanfix, unique_chat_id: int
) -> None:
    # The fake refuses a sourceObjectId that is not a UUID (code 30), as the spec types it.
    number = bind_new_task(bridge, fake_telegram, unique_chat_id, "Spec comments")
    update = fake_telegram.add_group_message(unique_chat_id, "The printer jams on tray 2")

    [comment] = comments_of(fake_planfix, number, 1)
    stays(lambda: len(relayed_comments(fake_planfix, number)) == 1, for_s=1.0, what="exactly one comment")
    assert "The printer jams on tray 2" in comment.description
    message_id = update["message"]["message_id"]
    expected = planfix_source_object_id(telegram_message_key(unique_chat_id, message_id))
    assert comment.source_object_id == str(uuid.UUID(expected))
