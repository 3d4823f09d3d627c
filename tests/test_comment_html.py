"""What a Telegram message looks like as a Planfix comment: formatting, authors, blocks."""

from __future__ import annotations

from zoneinfo import ZoneInfo

import pytest

from bridge_lib.i18n import translator
from contracts.events import (
    TelegramAttachment,
    TelegramEntity,
    TelegramMessageReceived,
    TelegramQuote,
    TelegramUser,
    utc_now,
)
from services.relay.to_planfix.from_telegram_html import (
    build_block,
    comment_html,
    entities_to_html,
    too_big_for_telegram_note,
)

EN = translator("en")


def entity(kind: str, offset: int, length: int, **extra: str) -> TelegramEntity:
    return TelegramEntity(type=kind, offset=offset, length=length, **extra)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "entities", "expected"),
    [
        ("plain <b>not bold</b> & co", [], "plain &lt;b&gt;not bold&lt;/b&gt; &amp; co"),
        ("bold italic", [entity("bold", 0, 4), entity("italic", 5, 6)], "<b>bold</b> <i>italic</i>"),
        ("u s", [entity("underline", 0, 1), entity("strikethrough", 2, 1)], "<u>u</u> <s>s</s>"),
        ("x = 1", [entity("code", 0, 5)], "<code>x = 1</code>"),
        (
            "a\nb",
            [entity("pre", 0, 3, language="python")],
            '<pre><code class="language-python">a\nb</code></pre>',
        ),
        ("see example.org", [entity("url", 4, 11)], 'see <a href="https://example.org">example.org</a>'),
        ("docs", [entity("text_link", 0, 4, url="https://d.example/?a=1&b=2")], '<a href="https://d.example/?a=1&amp;b=2">docs</a>'),
        ("bad", [entity("text_link", 0, 3, url="javascript:alert(1)")], "bad"),
        ("hi @anna_iv", [entity("mention", 3, 8)], 'hi <a href="https://t.me/anna_iv">@anna_iv</a>'),
        ("secret", [entity("spoiler", 0, 6)], '<span style="background-color:#444;color:#444">secret</span>'),
        ("quoted\nline", [entity("blockquote", 0, 11)], "<blockquote>quoted<br>line</blockquote>"),
        # Offsets count UTF-16 units: each of these emoji is two.
        ("😀😀 bold", [entity("bold", 5, 4)], "😀😀 <b>bold</b>"),
        ("bold link", [entity("bold", 0, 9), entity("text_link", 5, 4, url="https://l.example")], '<b>bold <a href="https://l.example">link</a></b>'),
        # Overlapping, not nested: closed and reopened so the HTML nests.
        ("abcdef", [entity("bold", 0, 4), entity("italic", 2, 4)], "<b>ab<i>cd</i></b><i>ef</i>"),
        ("#tag /cmd", [entity("hashtag", 0, 4), entity("bot_command", 5, 4)], "#tag /cmd"),
    ],
)  # fmt: skip
def test_entities_become_html_and_text_is_escaped(
    text: str, entities: list[TelegramEntity], expected: str
) -> None:
    assert entities_to_html(text, entities) == expected


def message(**fields: object) -> TelegramMessageReceived:
    base: dict[str, object] = {
        "event_id": "e",
        "occurred_at": utc_now(),
        "correlation_id": "c",
        "causation_id": "u",
        "chat_id": -1,
        "message_id": 7,
        "sender": TelegramUser(id=1, full_name="Ivan <Petrov>", username="ivan_p"),
        "text": "hello",
        "sent_at": utc_now(),
    }
    return TelegramMessageReceived(**{**base, **fields})  # type: ignore[arg-type]


def test_a_block_names_the_author_and_what_it_answers() -> None:
    block = build_block(
        message(reply_to=TelegramQuote(message_id=3, author="Anna (@anna)", first_line="Is it <fixed>?")),
        ZoneInfo("UTC"),
        [],
        EN,
    )
    html = comment_html([block], EN)
    assert "<b>Ivan &lt;Petrov&gt;</b> (@ivan_p) · Telegram ·" in html
    assert "<blockquote><b>Anna (@anna)</b>: Is it &lt;fixed&gt;?</blockquote>" in html
    assert "<p>hello</p>" in html


def test_channels_and_bots_are_marked() -> None:
    channel = TelegramUser(id=-5, full_name="News", is_channel=True)
    bot = TelegramUser(id=5, full_name="CI", username="ci_bot", is_bot=True)
    assert "<b>News</b> [channel]" in comment_html(
        [build_block(message(sender=channel), ZoneInfo("UTC"), [], EN)], EN
    )
    assert "<b>CI</b> (@ci_bot) [bot]" in comment_html(
        [build_block(message(sender=bot), ZoneInfo("UTC"), [], EN)], EN
    )


def test_combined_messages_keep_their_own_author_lines_and_reactions() -> None:
    first = build_block(message(message_id=1, text="one"), ZoneInfo("UTC"), [], EN)
    second = build_block(
        message(message_id=2, text="two", sender=TelegramUser(id=2, full_name="Anna")),
        ZoneInfo("UTC"),
        [],
        EN,
    )
    second.reactions = {"Oleg": ["👍", "🔥"]}
    html = comment_html([first, second], EN)
    assert html.count("· Telegram ·") == 2
    assert html.index("one") < html.index("two")
    assert html.endswith("<p><i>Reactions: 👍🔥 Oleg</i></p>")


def test_a_file_too_big_to_download_is_named_with_its_size() -> None:
    big = TelegramAttachment(
        kind="document", file_id="f", file_unique_id="u", file_name="a<b>.zip", file_size=25 * 2**20
    )
    assert too_big_for_telegram_note(big, EN).startswith("📎 a&lt;b&gt;.zip (25.0 MB) was not attached")


def test_content_a_comment_cannot_hold_is_named_not_dropped() -> None:
    html = comment_html(
        [build_block(message(text="", content_type="paid_media"), ZoneInfo("UTC"), [], EN)], EN
    )
    assert "A paid media was posted here; it cannot be shown in Planfix, open it in Telegram." in html
