"""HTML from the fakes made safe for the page: a few formatting tags kept, everything else text.

Comments in Planfix and the bot's messages are HTML that people's words went into, so the page
never shows them as they are: this keeps only harmless tags without attributes (links keep an
``http``, ``https`` or ``mailto`` address), drops scripts and styles with their content, and
escapes all text.
"""

from __future__ import annotations

from html import escape
from html.parser import HTMLParser

KEPT_TAGS = frozenset(
    {"b", "strong", "i", "em", "u", "ins", "s", "strike", "del", "code", "pre", "blockquote", "p", "br"}
    | {"ul", "ol", "li", "div"}
)
VOID_TAGS = frozenset({"br"})
DROPPED_WITH_CONTENT = frozenset({"script", "style", "iframe", "object", "template", "textarea"})
SAFE_SCHEMES = ("http://", "https://", "mailto:")


class _Cleaner(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self.open: list[str] = []
        self.skipping = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in DROPPED_WITH_CONTENT:
            self.skipping += 1
            return
        if self.skipping:
            return
        if tag in VOID_TAGS:
            self.out.append(f"<{tag}>")
        elif tag in KEPT_TAGS:
            self.out.append(f"<{tag}>")
            self.open.append(tag)
        elif tag == "a":
            href = dict(attrs).get("href") or ""
            if href.lower().startswith(SAFE_SCHEMES):
                self.out.append(
                    f'<a href="{escape(href, quote=True)}" target="_blank" rel="noopener noreferrer">'
                )
            else:
                self.out.append("<a>")
            self.open.append("a")
        elif tag == "tg-spoiler" or (tag == "span" and ("class", "tg-spoiler") in attrs):
            self.out.append('<span class="spoiler">')
            self.open.append("span")

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in VOID_TAGS and not self.skipping:
            self.out.append(f"<{tag}>")

    def handle_endtag(self, tag: str) -> None:
        if tag in DROPPED_WITH_CONTENT:
            self.skipping = max(0, self.skipping - 1)
            return
        if self.skipping:
            return
        wanted = "span" if tag == "tg-spoiler" else tag
        if wanted in self.open:
            # Close everything opened since, so the output stays balanced whatever came in.
            while self.open:
                closing = self.open.pop()
                self.out.append(f"</{closing}>")
                if closing == wanted:
                    break

    def handle_data(self, data: str) -> None:
        if not self.skipping:
            self.out.append(escape(data, quote=False))

    def result(self) -> str:
        self.close()
        return "".join(self.out) + "".join(f"</{tag}>" for tag in reversed(self.open))


def clean_html(html: str) -> str:
    cleaner = _Cleaner()
    cleaner.feed(html)
    return cleaner.result()


def text_to_html(text: str) -> str:
    """What a person typed, as the HTML a rich-text editor would save (Planfix's comment box)."""
    return "<br>".join(escape(line, quote=False) for line in text.split("\n"))
