"""Link codes: made, found in a comment however Planfix wraps it, and stored as a digest only."""

from __future__ import annotations

import msgspec
import pytest

from bridge_lib import link_codes


def test_a_new_code_is_found_in_its_own_text() -> None:
    code = link_codes.new_code()
    assert link_codes.code_in(code) == code
    assert len({link_codes.new_code() for _ in range(200)}) == 200


@pytest.mark.parametrize(
    ("text_html", "found"),
    [
        ("TGLINK-ABCDE-12345", "TGLINK-ABCDE-12345"),
        ("<p>tglink-abcde-12345</p>", "TGLINK-ABCDE-12345"),
        ("<p>my code: <b>TGLINK-ABCDE-12345</b>, thanks</p>", "TGLINK-ABCDE-12345"),
        ("TGLINK-ABCDE-1234O", "TGLINK-ABCDE-12340"),  # O typed for zero
        ("TGLINK-ABCDE-1234", None),
        ("XTGLINK-ABCDE-12345", None),
        ("<p>an ordinary comment</p>", None),
        ("", None),
    ],
)
def test_a_code_is_read_from_a_comment(text_html: str, found: str | None) -> None:
    assert link_codes.code_in(text_html) == found
    # The binder reads a stored comment only when its bytes may hold a code: never one missed.
    stored = msgspec.json.encode({"text_html": text_html})
    assert link_codes.may_hold_code(stored) or found is None


@pytest.mark.parametrize(
    ("text_html", "only"),
    [
        ("<p>TGLINK-ABCDE-12345</p>", True),
        ("TGLINK-ABCDE-12345.", True),
        ("<p>TGLINK-ABCDE-12345 and the printer is broken</p>", False),
        ("<p>no code</p>", False),
    ],
)
def test_a_comment_that_is_only_a_code(text_html: str, only: bool) -> None:
    assert link_codes.is_only_a_code(text_html) is only


def test_the_digest_is_the_same_for_the_ways_a_code_is_written() -> None:
    assert link_codes.digest("tglink-abcde-12345") == link_codes.digest("TGLINK-ABCDE-12345")
    assert link_codes.digest("TGLINK-ABCDE-1234O") == link_codes.digest("TGLINK-ABCDE-12340")
    assert "ABCDE" not in link_codes.digest("TGLINK-ABCDE-12345")


def test_a_stored_comment_without_a_code_is_not_read() -> None:
    assert not link_codes.may_hold_code(msgspec.json.encode({"text_html": "<p>an ordinary comment</p>"}))
