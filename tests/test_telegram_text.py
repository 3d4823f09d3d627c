"""Telegram HTML measured, split and combined the way Telegram counts it (UTF-16, after parsing)."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from services.relay.to_telegram.telegram_text import (
    CAPTION_LIMIT,
    TEXT_LIMIT,
    combine,
    first_combined,
    fits,
    plain_text,
    split_html,
    utf16_len,
    visible_length,
)


def words_of(parts: list[str]) -> list[str]:
    return " ".join(plain_text(part) for part in parts).split()


def assert_valid_html(part: str) -> None:
    """Every tag opened is closed, in order (what Telegram's parser insists on)."""
    stack: list[str] = []
    for closing, name in re.findall(r"<(/?)([a-z-]+)[^>]*>", part):
        if closing:
            assert stack, part[:200]
            assert stack[-1] == name, part[:200]
            stack.pop()
        else:
            stack.append(name)
    assert stack == []


def test_length_is_counted_in_utf16_units_after_parsing() -> None:
    assert visible_length("<b>a</b> &lt;b&gt;") == len("a <b>")
    assert utf16_len("😀") == 2
    assert visible_length("😀" * 2048) == TEXT_LIMIT
    assert not fits("😀" * 2049, TEXT_LIMIT)


def test_a_10000_character_comment_becomes_three_parts_in_order_with_nothing_lost() -> None:
    text = "\n".join(f"Line {n}: " + "the toner is replaced " * 4 for n in range(105))
    assert 9_500 < len(text) < 10_500

    parts = split_html(text)

    assert len(parts) == 3
    assert all(visible_length(part) <= TEXT_LIMIT for part in parts)
    assert "\n".join(parts) == text  # each cut dropped exactly one line break
    assert parts[0].startswith("Line 0:")


def test_a_cut_prefers_a_paragraph_then_a_line_then_a_word() -> None:
    paragraph = "word " * 500  # 2500 characters
    text = paragraph + "\n\n" + paragraph + "\n" + paragraph
    parts = split_html(text)
    assert parts[0] == paragraph
    single_line = "word " * 2000
    cut = split_html(single_line.strip())
    assert all(part.startswith("word") and part.endswith("word") for part in cut)


def test_formatting_is_closed_and_reopened_across_a_cut() -> None:
    text = "<b>" + "bold words " * 600 + "</b>" + ' and <a href="https://x.example/?a=1&amp;b=2">a link</a>'

    parts = split_html(text)

    assert len(parts) == 2
    for part in parts:
        assert_valid_html(part)
        assert visible_length(part) <= TEXT_LIMIT
    assert parts[0].startswith("<b>")
    assert parts[0].endswith("</b>")
    assert parts[1].startswith("<b>")
    assert '<a href="https://x.example/?a=1&amp;b=2">a link</a>' in parts[1]
    assert words_of(parts) == plain_text(text).split()


def test_a_cut_falls_outside_formatting_when_it_can() -> None:
    text = "plain " * 400 + "\n" + "<code>" + "x = 1; " * 500 + "</code>"
    parts = split_html(text)
    assert parts[0] == "plain " * 400
    assert "<code>" not in parts[0]
    assert parts[1].startswith("<code>")


def test_text_without_any_boundary_is_cut_at_the_limit_and_never_inside_an_escape_or_emoji() -> None:
    text = "&amp;" * 5000 + "😀" * 10
    parts = split_html(text)
    assert [visible_length(part) for part in parts] == [4096, 5000 - 4096 + 20]
    assert "".join(plain_text(part) for part in parts) == "&" * 5000 + "😀" * 10
    assert not any(part.endswith("&amp") for part in parts)


def test_short_text_is_one_part_and_blank_text_none() -> None:
    assert split_html("<b>hi</b>") == ["<b>hi</b>"]
    assert split_html("  \n ") == []


@pytest.mark.parametrize(("length", "expected"), [(CAPTION_LIMIT, True), (CAPTION_LIMIT + 1, False)])
def test_a_caption_fits_up_to_1024_units(length: int, expected: bool) -> None:
    assert fits("<i>" + "c" * length + "</i>", CAPTION_LIMIT) is expected


def test_consecutive_texts_are_combined_up_to_the_limit() -> None:
    texts = ["a" * 1000, "b" * 1000, "c" * 2000, "d" * 100, "e" * 5000, "f"]
    # 1000 + 2 + 1000 + 2 + 2000 = 4004 units; the blank line between two texts counts.
    assert combine(texts) == [[0, 1, 2], [3], [4], [5]]
    assert combine(["x"] * 3) == [[0, 1, 2]]
    for start in range(len(texts)):  # the first message is combine's first group
        assert first_combined(texts[start:]) == len(combine(texts[start:])[0])
    assert first_combined([]) == 0


def test_the_first_message_measures_one_text_past_it_not_the_whole_backlog() -> None:
    measured: list[str] = []

    def backlog() -> Iterator[str]:
        for n in range(300):
            measured.append(f"comment {n}")
            yield "c" * 1000

    assert first_combined(backlog()) == 4  # 4 × 1000 + 3 blank lines = 4006 units
    assert len(measured) == 5
