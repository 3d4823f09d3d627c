"""Planfix HTML -> Telegram HTML, and a comment's text as it appears in a group.

Telegram's HTML parse mode accepts only a few tags (b, i, u, s, code, pre, a, blockquote,
tg-spoiler); anything else makes ``sendMessage`` fail, so Planfix HTML is rebuilt from a
whitelist: known tags are mapped, unknown ones dropped with their text kept, and every piece of
text is escaped again.
"""

from __future__ import annotations

import html
import re
from html.parser import HTMLParser

from bridge_lib.i18n import Translator, translator
from contracts.events import PlanfixCommentAdded, PlanfixCommentUpdated

_INLINE_TAGS = {
    "b": "b", "strong": "b", "i": "i", "em": "i", "u": "u", "ins": "u",
    "s": "s", "strike": "s", "del": "s", "code": "code", "pre": "pre", "blockquote": "blockquote",
}  # fmt: skip
_BLOCK_TAGS = {"p", "div", "li", "ul", "ol", "h1", "h2", "h3", "h4", "h5", "h6", "tr", "table"}


def comment_author_line(
    comment: PlanfixCommentAdded | PlanfixCommentUpdated,
    telegram_username: str | None = None,
    t: Translator | None = None,
) -> str:
    """Who wrote a comment, as the first line of its message (and the caption of its files);
    ``telegram_username``: the author's, when they are linked to a Telegram person."""
    texts = t or translator()
    name = f"<b>{html.escape(comment.author.name or 'Planfix')}</b>"
    if telegram_username:
        name += f" (@{html.escape(telegram_username.lstrip('@'))})"
    return texts.gettext("{author} · Planfix").format(author=name)


def telegram_comment_text(
    comment: PlanfixCommentAdded | PlanfixCommentUpdated,
    telegram_username: str | None = None,
    t: Translator | None = None,
) -> str:
    body = planfix_html_to_telegram(comment.text_html)
    author = comment_author_line(comment, telegram_username, t)
    return f"{author}:\n{body}" if body else author


class _TelegramHtmlBuilder(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.open_tags: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "br":
            self.parts.append("\n")
        elif tag == "li":
            self.parts.append("• ")
        elif tag == "a":
            href = dict(attrs).get("href") or ""
            if href.startswith(("http://", "https://", "tg://", "mailto:")):
                self._open("a", f'<a href="{html.escape(href)}">')
        elif tag in _INLINE_TAGS:
            mapped = _INLINE_TAGS[tag]
            self._open(mapped, f"<{mapped}>")

    def handle_endtag(self, tag: str) -> None:
        if tag in _BLOCK_TAGS:
            self.parts.append("\n")
        mapped = "a" if tag == "a" else _INLINE_TAGS.get(tag)
        if mapped and mapped in self.open_tags:
            # Close everything opened inside it too, so the output always nests properly.
            while self.open_tags:
                closing = self.open_tags.pop()
                self.parts.append(f"</{closing}>")
                if closing == mapped:
                    break

    def handle_data(self, data: str) -> None:
        self.parts.append(html.escape(data, quote=False))

    def _open(self, name: str, markup: str) -> None:
        self.open_tags.append(name)
        self.parts.append(markup)

    def result(self) -> str:
        self.close()
        closing = "".join(f"</{name}>" for name in reversed(self.open_tags))
        return "".join(self.parts) + closing


def planfix_html_to_telegram(source: str) -> str:
    builder = _TelegramHtmlBuilder()
    builder.feed(source)
    text = builder.result()
    return re.sub(r"\n{3,}", "\n\n", text).strip()
