"""What text looks like on the other side."""

from __future__ import annotations

import pytest

from services.relay.effects import quoted_comment
from services.relay.to_telegram.from_planfix_html import planfix_html_to_telegram
from services.relay.to_telegram.telegram_text import TEXT_LIMIT as TELEGRAM_TEXT_LIMIT
from services.relay.to_telegram.telegram_text import split_html as split_for_telegram


def test_planfix_html_keeps_what_telegram_supports_and_drops_the_rest() -> None:
    converted = planfix_html_to_telegram(
        '<p>Hello <strong>team</strong>,<br>see <a href="https://x.example/a?b=1&amp;c=2">this</a></p>'
        '<span style="color:red">red</span><ul><li>one</li><li>two</li></ul><img src="x.png">'
    )
    assert converted == (
        'Hello <b>team</b>,\nsee <a href="https://x.example/a?b=1&amp;c=2">this</a>\nred• one\n• two'
    )


def test_unbalanced_planfix_html_still_nests_properly() -> None:
    assert planfix_html_to_telegram("<b>bold <i>both</b> after") == "<b>bold <i>both</i></b> after"
    assert planfix_html_to_telegram("<i>never closed") == "<i>never closed</i>"
    assert planfix_html_to_telegram("1 &lt; 2 &amp; 3") == "1 &lt; 2 &amp; 3"


def test_javascript_links_are_dropped() -> None:
    assert planfix_html_to_telegram('<a href="javascript:alert(1)">x</a>') == "x"


def test_a_long_message_is_split_in_order_without_loss() -> None:
    lines = [f"line {n} " + "word " * 30 for n in range(300)]
    text = "\n".join(lines)
    parts = split_for_telegram(text)
    assert len(parts) > 1
    assert all(len(part) <= TELEGRAM_TEXT_LIMIT for part in parts)
    assert "\n".join(parts).split() == text.split()


@pytest.mark.parametrize(
    ("message", "quoted"),
    [
        (
            "<b>Olga Smirnova</b> · Planfix:\nToner is <b>ordered</b>\nFriday",
            ("Olga Smirnova", "Toner is ordered"),
        ),
        ("<b>Olga</b> (@olga) · Planfix:\n\n  Tom &amp; Jerry", ("Olga (@olga)", "Tom & Jerry")),
        ("<b>Olga Smirnova</b> · Planfix", ("Olga Smirnova", "")),  # files only
    ],
)
def test_a_reply_quotes_the_comments_author_and_first_line_not_the_bots_author_line(
    message: str, quoted: tuple[str, str]
) -> None:
    assert quoted_comment(message) == quoted
