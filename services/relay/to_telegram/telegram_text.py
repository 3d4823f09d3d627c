"""Measuring, splitting and combining Telegram HTML the way Telegram counts it.

Telegram limits a message to 4096 and a caption to 1024 characters *after entity parsing*,
counted in UTF-16 code units: the tags do not count, ``&lt;`` counts as one, an emoji outside
the Basic Multilingual Plane counts as two. A part cut from a longer message must stay valid
HTML, so the splitter works on the text with the formatting attached to each character: it
cuts on a paragraph, line or word boundary (outside formatting when it can), closes the tags
open at the cut and opens them again at the start of the next part. Nothing is dropped but
the one separator character at each cut.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from html.parser import HTMLParser

TEXT_LIMIT = 4096
CAPTION_LIMIT = 1024
# Separator between comments combined into one message.
COMBINED_SEPARATOR = "\n\n"


@dataclass(frozen=True)
class _Tag:
    name: str
    markup: str  # the opening tag as written, attributes included


@dataclass(frozen=True)
class _Run:
    text: str
    tags: tuple[_Tag, ...]


class _RunParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.runs: list[_Run] = []
        self._open: list[_Tag] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        rendered = "".join(f' {name}="{html.escape(value or "")}"' for name, value in attrs)
        self._open.append(_Tag(tag, f"<{tag}{rendered}>"))

    def handle_endtag(self, tag: str) -> None:
        for index in range(len(self._open) - 1, -1, -1):
            if self._open[index].name == tag:
                del self._open[index:]
                return

    def handle_data(self, data: str) -> None:
        if data:
            self.runs.append(_Run(data, tuple(self._open)))


def _runs(text_html: str) -> list[_Run]:
    parser = _RunParser()
    parser.feed(text_html)
    parser.close()
    return parser.runs


def utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def plain_text(text_html: str) -> str:
    """The text Telegram shows for this HTML (what its length limits apply to)."""
    return "".join(run.text for run in _runs(text_html))


def visible_length(text_html: str) -> int:
    return utf16_len(plain_text(text_html))


def fits(text_html: str, limit: int) -> bool:
    return visible_length(text_html) <= limit


def render(runs: list[_Run]) -> str:
    """HTML for a list of runs, opening and closing tags only where the formatting changes."""
    out: list[str] = []
    current: tuple[_Tag, ...] = ()
    for run in runs:
        keep = 0
        while keep < min(len(current), len(run.tags)) and current[keep] == run.tags[keep]:
            keep += 1
        out.extend(f"</{tag.name}>" for tag in reversed(current[keep:]))
        out.extend(tag.markup for tag in run.tags[keep:])
        out.append(html.escape(run.text, quote=False))
        current = run.tags
    out.extend(f"</{tag.name}>" for tag in reversed(current))
    return "".join(out)


def split_html(text_html: str, limit: int = TEXT_LIMIT) -> list[str]:
    """Parts of at most ``limit`` visible UTF-16 units each, in order, each valid HTML on its own."""
    if fits(text_html, limit):
        return [text_html] if plain_text(text_html).strip() else []
    chars: list[tuple[str, tuple[_Tag, ...]]] = [(c, run.tags) for run in _runs(text_html) for c in run.text]
    # offsets[i]: UTF-16 units before character i.
    offsets = [0]
    for char, _ in chars:
        offsets.append(offsets[-1] + (2 if ord(char) > 0xFFFF else 1))
    parts: list[str] = []
    start = 0
    while start < len(chars):
        end = _last_end_within(offsets, start, limit)
        if end == len(chars):
            cut, resume = end, end
        else:
            cut, resume = _best_cut(chars, offsets, start, end, limit)
        part = _render_slice(chars[start:cut])
        if plain_text(part).strip():
            parts.append(part)
        start = resume
    return parts


def _last_end_within(offsets: list[int], start: int, limit: int) -> int:
    """The largest ``end`` such that characters [start, end) take at most ``limit`` units."""
    low, high = start, len(offsets) - 1
    while low < high:
        middle = (low + high + 1) // 2
        if offsets[middle] - offsets[start] <= limit:
            low = middle
        else:
            high = middle - 1
    return max(low, start + 1)


def _best_cut(
    chars: list[tuple[str, tuple[_Tag, ...]]], offsets: list[int], start: int, end: int, limit: int
) -> tuple[int, int]:
    """Where to end this part and where the next begins (after the separator at the cut)."""
    # A cut at index i ends the part before chars[i]; chars[i] is the separator and is dropped.
    # Preferred: paragraph, line, word boundaries outside formatting, then the same inside it;
    # each only when the part is at least half full, so a stray early break does not waste a
    # message. Last resort: the limit itself.
    min_units = offsets[start] + limit // 2
    kinds = ("\n\n", "\n", " ")
    for outside in (True, False):
        for kind in kinds:
            for index in range(min(end, len(chars) - 1), start, -1):
                if offsets[index] < min_units:
                    break
                if outside and chars[index][1]:
                    continue
                if "".join(c for c, _ in chars[index : index + len(kind)]) == kind:
                    return index, index + len(kind)
    return end, end


def _render_slice(chars: list[tuple[str, tuple[_Tag, ...]]]) -> str:
    runs: list[_Run] = []
    for char, tags in chars:
        if runs and runs[-1].tags == tags:
            runs[-1] = _Run(runs[-1].text + char, tags)
        else:
            runs.append(_Run(char, tags))
    return render(runs)


def combine(texts: Iterable[str], limit: int = TEXT_LIMIT) -> list[list[int]]:
    """Group consecutive texts (by index) so each group, joined by a blank line, fits ``limit``.

    A text too long to share a message stays alone (it is split on its own when sent).
    """
    return list(_combined(texts, limit))


def first_combined(texts: Iterable[str], limit: int = TEXT_LIMIT) -> int:
    """How many texts at the head share the first message (``combine``'s first group), measuring
    one text past it: a group's backlog may hold hundreds, and each is parsed to be measured."""
    return len(next(_combined(texts, limit), []))


def _combined(texts: Iterable[str], limit: int) -> Iterator[list[int]]:
    group: list[int] = []
    used = 0
    separator = utf16_len(COMBINED_SEPARATOR)
    for index, text in enumerate(texts):
        length = visible_length(text)
        if group and used + separator + length <= limit:
            group.append(index)
            used += separator + length
        else:
            if group:
                yield group
            group, used = [index], length
    if group:
        yield group
