"""A reply to a message the bot posted for a Planfix comment quotes that comment.

The gateway sees only the bot's message ("Olga Smirnova · Planfix: ..."), so its quote would
name the bot and the author line. The relay knows which comment that message shows (what the
Planfix -> Telegram wing recorded, read through ``effects.BridgedComments``) and quotes the
comment's author and first line instead, linked to the comment in Planfix
(``.../task/<N>?comment=<id>``).
"""

from __future__ import annotations

import msgspec
import structlog

from bridge_lib.task_links import comment_page
from contracts.events import TelegramMessageReceived
from services.relay.directory import BindingDirectory
from services.relay.effects import BridgedComments, ShownComment, quoted_comment

log = structlog.get_logger("relay.replies")

# As the gateway cuts a quote's first line.
QUOTE_CHARS = 120


class QuotedComments:
    def __init__(self, sent: BridgedComments, directory: BindingDirectory, planfix_web_url: str) -> None:
        self._sent = sent
        self._directory = directory
        self._web_url = planfix_web_url

    async def requote(self, message: TelegramMessageReceived) -> TelegramMessageReceived:
        """The message with its quote naming the Planfix comment it answers, if it answers one."""
        quote = message.reply_to
        if quote is None or not quote.by_this_bot:
            return message
        try:
            shown = await self._sent.shown_by(message.chat_id, quote.message_id)
            bound = await self._directory.task_for(message.chat_id, message.thread_id) if shown else None
        except Exception as error:  # the store away: the gateway's quote is still a quote
            log.warning("quoted_comment_not_looked_up", error=f"{type(error).__name__}: {error}")
            return message
        if not shown:
            return message  # a notice or an answer of the bot, not a comment
        comment = _answered(shown, quote.first_line)
        author, first_line = quoted_comment(comment.text)
        if len(first_line) > QUOTE_CHARS:
            first_line = first_line[: QUOTE_CHARS - 1].rstrip() + "…"
        url = comment_page(self._web_url, bound.task_number, comment.comment_id) if bound else None
        better = msgspec.structs.replace(quote, author=author, first_line=first_line or "[files]", url=url)
        return msgspec.structs.replace(message, reply_to=better)


def _answered(shown: list[ShownComment], quoted_text: str) -> ShownComment:
    """Of the comments one message shows (combined), the one whose text the person quoted;
    the first when they quoted none of them in particular."""
    for comment in shown:
        _, first_line = quoted_comment(comment.text)
        if quoted_text and first_line and quoted_text.rstrip("…") in first_line:
            return comment
    return shown[0]
