"""Telegram -> Planfix: the HTML of a comment, built from one or more message blocks.

A block is one Telegram message: an author line with the time, what it forwards or answers,
the text with its formatting, what is not text (location, contact, poll, sticker, files not
attached), and a line of reactions. Blocks are kept in the ledger so that an edit or a reaction
rewrites one block and the comment is rebuilt from all of them.

Entity offsets count UTF-16 code units (https://core.telegram.org/api/entities), so the text is
cut in UTF-16; a badly overlapping pair of entities is closed and reopened so the HTML nests
properly, and every piece of text is escaped (``<script>`` stays text).
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from urllib.parse import quote
from zoneinfo import ZoneInfo

import msgspec
from babel.dates import format_time

from bridge_lib.i18n import N_, Translator
from contracts.events import TelegramAttachment, TelegramEntity, TelegramMessageReceived, TelegramUser

MB = 1024 * 1024
# Telegram content a comment cannot hold (see telegram_gateway.content.NAMED_CONTENT).
NOT_SHOWN = frozenset({"story", "game", "invoice", "paid_media", "giveaway", "giveaway_winners", "checklist"})
# What each is called in "A … was posted here" (in the group's language).
NOT_SHOWN_NAMES = {
    "story": N_("story"),
    "game": N_("game"),
    "invoice": N_("invoice"),
    "paid_media": N_("paid media"),
    "giveaway": N_("giveaway"),
    "giveaway_winners": N_("giveaway winners"),
    "checklist": N_("checklist"),
}
# The time on an author line, as a CLDR pattern per language (a translator may change it).
TIME_PATTERN = N_("HH:mm")


class Block(msgspec.Struct, kw_only=True):
    """One Telegram message inside a comment; ``body`` is what an edit replaces."""

    message_key: str
    message_id: int
    head: str
    body: str
    # The author's name, shown first on the head's line unless the comment is written as them
    # (its owner). Empty in blocks stored before owners: their head names the author itself.
    author: str = ""
    tail: str = ""
    edited: bool = False
    # Who reacted with what: "Anna (@anna)" -> ["👍"]; insertion order is display order.
    reactions: dict[str, list[str]] = {}
    # The message's files on the comment: Telegram's file_unique_id -> its label (an edit that
    # swaps one is told by it). Empty in blocks stored before edits could swap files.
    files: dict[str, str] = {}


def author_html(sender: TelegramUser, t: Translator) -> str:
    name = f"<b>{html.escape(sender.full_name)}</b>"
    if sender.username:
        name += f" (@{html.escape(sender.username)})"
    if sender.is_channel:
        name += t.gettext(" [channel]")
    elif sender.is_bot:
        name += t.gettext(" [bot]")
    return name


def author_time(message: TelegramMessageReceived, zone: ZoneInfo, t: Translator) -> str:
    """The message's time on its author line, in the group's language's format."""
    return format_time(message.sent_at.astimezone(zone), t.gettext(TIME_PATTERN), locale=t.language)


def head_html(
    message: TelegramMessageReceived, zone: ZoneInfo, t: Translator, *, with_author: bool = True
) -> str:
    when = author_time(message, zone, t)
    author = f"{author_html(message.sender, t)} · " if with_author else ""
    lines = [author + t.gettext("Telegram · {time}").format(time=when)]
    if message.forwarded_from:
        lines.append(
            "↪ <i>{}</i>".format(
                t.gettext("Forwarded from {origin}").format(origin=html.escape(message.forwarded_from))
            )
        )
    head = f"<p>{'<br>'.join(lines)}</p>"
    if message.reply_to is not None:
        quote = message.reply_to
        who = f"<b>{html.escape(quote.author)}</b>"
        if quote.url:  # a Planfix comment: the quote opens it
            who = f'<a href="{html.escape(quote.url)}">{who}</a>'
        head += f"<blockquote>{who}: {html.escape(quote.first_line)}</blockquote>"
    return head


def body_html(text: str, entities: Sequence[TelegramEntity]) -> str:
    if not text:
        return ""
    return f"<p>{entities_to_html(text, entities)}</p>"


def tail_html(message: TelegramMessageReceived, file_notes: Sequence[str], t: Translator) -> str:
    lines: list[str] = []
    if message.location is not None:
        place = message.location
        link = f"https://www.openstreetmap.org/?mlat={place.latitude}&mlon={place.longitude}"
        what = html.escape(" — ".join(p for p in (place.title, place.address) if p)) or t.gettext("Location")
        lines.append(f'📍 {what}: <a href="{html.escape(link)}">{place.latitude}, {place.longitude}</a>')
    if message.contact is not None:
        contact = message.contact
        lines.append(
            t.gettext("👤 Contact: {name}, {phone}").format(
                name=html.escape(contact.full_name), phone=html.escape(contact.phone_number)
            )
        )
    if message.poll is not None:
        poll = message.poll
        kind = t.gettext("Quiz") if poll.is_quiz else t.gettext("Poll")
        options = "".join(f"<br>• {html.escape(option)}" for option in poll.options)
        lines.append(f"📊 {kind}: <b>{html.escape(poll.question)}</b>{options}")
    for attachment in message.attachments:
        if attachment.kind == "sticker":
            set_name = f" ({html.escape(attachment.set_name)})" if attachment.set_name else ""
            sticker = t.gettext("Sticker {emoji}").format(emoji=html.escape(attachment.emoji or ""))
            lines.append(f"{sticker}{set_name}".rstrip())
    if message.content_type in NOT_SHOWN:
        kind = t.gettext(NOT_SHOWN_NAMES[message.content_type])
        lines.append(
            t.gettext(
                "⚠️ A {kind} was posted here; it cannot be shown in Planfix, open it in Telegram."
            ).format(kind=html.escape(kind))
        )
    lines.extend(file_notes)
    return f"<p>{'<br>'.join(lines)}</p>" if lines else ""


def reactions_html(reactions: dict[str, list[str]], t: Translator) -> str:
    shown = [f"{''.join(emojis)} {html.escape(who)}" for who, emojis in reactions.items() if emojis]
    if not shown:
        return ""
    return "<p><i>{}</i></p>".format(t.gettext("Reactions: {reactions}").format(reactions=", ".join(shown)))


def block_html(block: Block, t: Translator, *, named: bool = True) -> str:
    """``named``: the author's name is shown (False: the comment is written as its author)."""
    head = block.head
    if block.author and named:
        head = head.replace("<p>", f"<p>{block.author} · ", 1)
    if block.edited:
        head = head.replace("</p>", " · <i>{}</i></p>".format(t.gettext("edited")), 1)
    return head + block.body + block.tail + reactions_html(block.reactions, t)


def combined_header(count: int, t: Translator) -> str:
    """The first line of a comment that combines several Telegram messages."""
    return "<p><i>{}</i></p>".format(
        t.ngettext("{count} message from Telegram", "{count} messages from Telegram", count).format(
            count=count
        )
    )


def comment_html(blocks: Sequence[Block], t: Translator, *, named: bool = True) -> str:
    # A rule between the messages of a combined comment keeps each one readable on its own.
    body = "<hr>".join(block_html(block, t, named=named) for block in blocks)
    return combined_header(len(blocks), t) + body if len(blocks) > 1 else body


def build_block(
    message: TelegramMessageReceived, zone: ZoneInfo, file_notes: Sequence[str], t: Translator
) -> Block:
    return Block(
        message_key=message.source_key,
        message_id=message.message_id,
        head=head_html(message, zone, t, with_author=False),
        author=author_html(message.sender, t),
        body=body_html(message.text, message.entities),
        tail=tail_html(message, file_notes, t),
        files={a.file_unique_id: file_label(a) for a in message.attachments if a.is_image},
    )


def replaced_note(replaced: Sequence[str], added: Sequence[str], t: Translator) -> str:
    """An edit in Telegram swapped the message's file: the new one is attached beside the old."""
    new = ", ".join(added)
    if not replaced:
        return t.gettext("📎 {new} attached by an edit in Telegram.").format(new=new)
    return t.gettext("📎 {new} replaced {old} (edited in Telegram; the old file stays attached).").format(
        new=new, old=", ".join(replaced)
    )


def with_tail_lines(tail: str, lines: Sequence[str]) -> str:
    """A block's tail with more lines at its end."""
    if not lines:
        return tail
    if tail.endswith("</p>"):
        return f"{tail[: -len('</p>')]}<br>{'<br>'.join(lines)}</p>"
    return f"{tail}<p>{'<br>'.join(lines)}</p>"


def size_text(size: int) -> str:
    return f"{size / MB:.1f} MB" if size >= MB else f"{max(1, size // 1024)} KB"


def file_label(attachment: TelegramAttachment) -> str:
    name = html.escape(attachment.file_name or attachment.kind)
    return f"{name} ({size_text(attachment.file_size)})" if attachment.file_size else name


def too_big_for_telegram_note(attachment: TelegramAttachment, t: Translator) -> str:
    return t.gettext(
        "📎 {file} was not attached: Telegram lets bots download files of at "
        "most 20 MB. Open it in the Telegram group."
    ).format(file=file_label(attachment))


def too_big_for_planfix_note(attachment: TelegramAttachment, t: Translator) -> str:
    return t.gettext("📎 {file} was not attached: it is larger than the Planfix plan allows.").format(
        file=file_label(attachment)
    )


def unavailable_note(attachment: TelegramAttachment, t: Translator) -> str:
    return t.gettext("📎 {file} could not be fetched from Telegram. Open it in the Telegram group.").format(
        file=file_label(attachment)
    )


# --- text with entities -> HTML ---------------------------------------------------------------

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
