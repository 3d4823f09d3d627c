"""Telegram text with formatting entities -> HTML for a Planfix comment.

Entity offsets and lengths count UTF-16 code units (https://core.telegram.org/api/entities),
so the text is cut in UTF-16 and every piece is decoded back before escaping. Entities may nest
(bold inside a link); a badly overlapping pair is closed and reopened so that the HTML always
nests properly. Everything that is text is HTML-escaped: ``<script>`` stays text.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from urllib.parse import quote

from contracts.events import TelegramEntity

_SIMPLE_TAGS = {
    "bold": ("<b>", "</b>"),
    "italic": ("<i>", "</i>"),
    "underline": ("<u>", "</u>"),
    "strikethrough": ("<s>", "</s>"),
    "code": ("<code>", "</code>"),
    "blockquote": ("<blockquote>", "</blockquote>"),
    "expandable_blockquote": ("<blockquote>", "</blockquote>"),
    # Planfix has no spoiler; dark text on a dark background hides it until selected.
    "spoiler": ('<span style="background-color:#444;color:#444">', "</span>"),
}
_SAFE_SCHEMES = ("http://", "https://", "tg://", "mailto:", "tel:")


def _utf16(text: str) -> bytes:
    return text.encode("utf-16-le")


def _piece(encoded: bytes, start: int, end: int) -> str:
    return encoded[start * 2 : end * 2].decode("utf-16-le", errors="replace")


def _tags(entity: TelegramEntity, covered: str) -> tuple[str, str] | None:
    kind = entity.type
    if kind in _SIMPLE_TAGS:
        return _SIMPLE_TAGS[kind]
    if kind == "pre":
        language = f' class="language-{html.escape(entity.language)}"' if entity.language else ""
        return f"<pre><code{language}>", "</code></pre>"
    if kind == "text_link" and entity.url and entity.url.startswith(_SAFE_SCHEMES):
        return f'<a href="{html.escape(entity.url)}">', "</a>"
    if kind == "url":
        href = covered if covered.startswith(_SAFE_SCHEMES) else f"https://{covered}"
        return f'<a href="{html.escape(href)}">', "</a>"
    if kind == "email":
        return f'<a href="mailto:{html.escape(covered)}">', "</a>"
    if kind == "mention":
        return f'<a href="https://t.me/{quote(covered.lstrip("@"))}">', "</a>"
    if kind == "text_mention":
        return "<b>", "</b>"  # a person without a username: no public link exists
    return None  # hashtag, cashtag, bot_command, phone_number, custom_emoji...: plain text


def _text_html(piece: str, in_pre: bool) -> str:
    escaped = html.escape(piece, quote=False)
    return escaped if in_pre else escaped.replace("\n", "<br>")


def entities_to_html(text: str, entities: Sequence[TelegramEntity]) -> str:
    encoded = _utf16(text)
    size = len(encoded) // 2
    spans: list[tuple[int, int, str, str, bool]] = []
    for entity in entities:
        start, end = max(0, entity.offset), min(size, entity.offset + entity.length)
        if start >= end:
            continue
        tags = _tags(entity, _piece(encoded, start, end))
        if tags is not None:
            spans.append((start, end, tags[0], tags[1], entity.type == "pre"))
    # Outer first: earlier start, then longer.
    spans.sort(key=lambda span: (span[0], -span[1]))
    boundaries = sorted({0, size, *(s[0] for s in spans), *(s[1] for s in spans)})
    out: list[str] = []
    open_spans: list[tuple[int, int, str, str, bool]] = []
    for index, position in enumerate(boundaries):
        # Close what ends here (and, to keep nesting proper, what was opened inside it).
        if any(span[1] == position for span in open_spans):
            reopen: list[tuple[int, int, str, str, bool]] = []
            while any(span[1] == position for span in open_spans):
                span = open_spans.pop()
                out.append(span[3])
                if span[1] != position:
                    reopen.append(span)
            for span in reversed(reopen):
                out.append(span[2])
                open_spans.append(span)
        for span in spans:
            if span[0] == position:
                out.append(span[2])
                open_spans.append(span)
        if index + 1 < len(boundaries):
            in_pre = any(span[4] for span in open_spans)
            out.append(_text_html(_piece(encoded, position, boundaries[index + 1]), in_pre))
    for span in reversed(open_spans):
        out.append(span[3])
    return "".join(out)
