"""One-time codes that link a Telegram user to the Planfix employee who writes the code as a
comment (``/link``): made, recognised in a comment, and stored only as a digest.

A code is ``TGLINK-XXXXX-XXXXX``: 50 random bits in Crockford's base 32 (no I, L, O or U, so it
survives being read aloud or retyped). It lives minutes and is used once; the binder keeps its
SHA-256 only, and nothing logs it. The relay does not carry a comment holding a code into a group.
"""

from __future__ import annotations

import hashlib
import html
import re
import secrets

PREFIX = "TGLINK"
_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_GROUP = 5
# Read case-insensitively, and with the letters people mistype for digits.
_CODE = re.compile(rf"\b{PREFIX}-([0-9A-Z]{{{_GROUP}}})-([0-9A-Z]{{{_GROUP}}})\b", re.IGNORECASE)
_TAG = re.compile(r"<[^>]{0,2000}>")
_CONFUSABLE = str.maketrans({"I": "1", "L": "1", "O": "0"})


def new_code() -> str:
    chars = "".join(secrets.choice(_ALPHABET) for _ in range(2 * _GROUP))
    return f"{PREFIX}-{chars[:_GROUP]}-{chars[_GROUP:]}"


def digest(code: str) -> str:
    """What is stored for a code: its SHA-256, of the canonical form."""
    return hashlib.sha256(canonical(code).encode()).hexdigest()


def canonical(code: str) -> str:
    return code.strip().upper().translate(_CONFUSABLE).replace(PREFIX.translate(_CONFUSABLE), PREFIX)


def may_hold_code(raw: bytes) -> bool:
    """Whether a stored comment's bytes could hold a code: False for almost every comment."""
    return PREFIX.lower().encode() in raw.lower()


def code_in(text_html: str) -> str | None:
    """The first link code in a comment's text (HTML), canonical; None when there is none."""
    if PREFIX.lower() not in text_html.lower():
        return None  # the cheap test first: almost no comment holds a code
    text = html.unescape(_TAG.sub(" ", text_html))
    found = _CODE.search(text)
    return canonical(f"{PREFIX}-{found[1]}-{found[2]}") if found else None


def is_only_a_code(text_html: str) -> bool:
    """Whether a comment says nothing but a code (so it is not worth carrying anywhere)."""
    if code_in(text_html) is None:
        return False
    text = html.unescape(_TAG.sub(" ", text_html))
    return not _CODE.sub(" ", text).strip(" \n\t.,:;!")
