"""Following a Planfix comment's edits and deletion in the groups that show it.

An edit changes the messages that carry the comment: its own messages (parts of a long text
edited in place, parts added or removed as the length changes), a file's caption (or, when the
new text no longer fits a caption, the caption becomes the author line and the text follows),
or its share of a combined message (rebuilt with the new text; if it no longer fits there, it
leaves and stands alone). A deletion removes them, edits a combined message down to the other
comments, and where Telegram no longer lets a bot delete (after 48 hours) marks them deleted.
"No such message" and "not modified" count as done: a retry after a partial edit is harmless.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import structlog
from aiogram import Bot
from aiogram.exceptions import TelegramBadRequest

from bridge_lib.i18n import N_, Translator, translator
from services.relay.to_telegram.courier import Courier, SentComment, SentComments, said
from services.relay.to_telegram.items import OutboxItem
from services.relay.to_telegram.task_texts import comment_files_added_text
from services.relay.to_telegram.telegram_text import (
    CAPTION_LIMIT,
    COMBINED_SEPARATOR,
    TEXT_LIMIT,
    fits,
    plain_text,
    split_html,
)

log = structlog.get_logger("relay.revisions")

# What a message too old to delete says instead (in the group's language).
DELETED_MARK = N_("🗑 <i>This comment was deleted in Planfix.</i>")


@dataclass(frozen=True, kw_only=True, eq=False)
class CommentRevisions:
    bot: Bot
    courier: Courier
    sent: SentComments
    texts: Callable[[int], Translator] = lambda chat_id: translator()

    async def edit(self, item: OutboxItem) -> list[int]:
        """Show the comment's new text where it was shown; the ids of the messages changed."""
        sent = await self.sent.get(item.comment_id or 0, item.chat_id, item.thread_id)
        if sent is None:
            log.info("edit_of_a_comment_never_shown_here_ignored")
            return []
        named = await self._name_added_files(item, sent)
        if sent.text == item.text:
            if named:
                await self.sent.save(sent)
            return named
        if sent.combined:
            changed = await self._edit_combined(item, sent)
        elif sent.caption_message_id is not None and not sent.text_message_ids:
            changed = await self._edit_caption(item, sent)
        else:
            changed = await self._edit_parts(item, sent)
        sent.text = item.text
        await self.sent.save(sent)
        return named + changed

    async def _name_added_files(self, item: OutboxItem, sent: SentComment) -> list[int]:
        """Files added to the comment in Planfix since it was shown: one reply naming them with a
        link to the task (where people open them); files already sent stay as they are."""
        if sent.file_ids is None or item.task_number is None:
            return []
        known = set(sent.file_ids)
        added = [file for file in item.files if file.id not in known]
        sent.file_ids = [file.id for file in item.files]
        if not added:
            return []
        shown_in = sent.text_message_ids or sent.file_message_ids
        first = shown_in[0] if shown_in else None
        item.reply_to_message_id = first
        text = comment_files_added_text(
            [file.name for file in added], self.courier.task_url(item.task_number), self.texts(item.chat_id)
        )
        return [await self.courier.send_text(item, text, reply=first is not None)]

    async def _edit_combined(self, item: OutboxItem, sent: SentComment) -> list[int]:
        message_id = sent.text_message_ids[0]
        combined = await self.sent.combined(item.chat_id, message_id)
        if combined is None:
            return []
        for part in combined.parts:
            if part.comment_id == item.comment_id:
                part.text = item.text
        joined = COMBINED_SEPARATOR.join(part.text for part in combined.parts)
        if fits(joined, TEXT_LIMIT):
            await self._edit_text(item.chat_id, message_id, joined)
            await self.sent.save_combined(combined)
            return [message_id]
        # No longer fits beside its neighbours: it leaves the shared message and stands alone.
        combined.parts = [part for part in combined.parts if part.comment_id != item.comment_id]
        await self._edit_text(
            item.chat_id, message_id, COMBINED_SEPARATOR.join(p.text for p in combined.parts)
        )
        await self.sent.save_combined(combined)
        sent.combined = False
        sent.text_message_ids = [
            await self.courier.send_text(item, part, reply=False) for part in split_html(item.text)
        ]
        return [message_id, *sent.text_message_ids]

    async def _edit_caption(self, item: OutboxItem, sent: SentComment) -> list[int]:
        assert sent.caption_message_id is not None
        if fits(item.text, CAPTION_LIMIT):
            await self._edit_caption_text(item.chat_id, sent.caption_message_id, item.text)
            return [sent.caption_message_id]
        await self._edit_caption_text(item.chat_id, sent.caption_message_id, sent.short_caption)
        sent.text_message_ids = [
            await self.courier.send_text(item, part, reply=False) for part in split_html(item.text)
        ]
        return [sent.caption_message_id, *sent.text_message_ids]

    async def _edit_parts(self, item: OutboxItem, sent: SentComment) -> list[int]:
        parts = split_html(item.text)
        old = list(sent.text_message_ids)
        changed: list[int] = []
        for index, part in enumerate(parts):
            if index < len(old):
                await self._edit_text(item.chat_id, old[index], part)
                changed.append(old[index])
            else:
                new_id = await self.courier.send_text(item, part, reply=False)
                sent.text_message_ids.append(new_id)
                await self.sent.save(sent)
                changed.append(new_id)
        for extra in old[len(parts) :]:
            await self._delete_or_mark(item.chat_id, extra, media=False)
            sent.text_message_ids.remove(extra)
            changed.append(extra)
        return changed

    async def _edit_text(self, chat_id: int, message_id: int, text: str) -> None:
        try:
            await self.courier.call(
                chat_id,
                1,
                lambda: self.bot.edit_message_text(text=text, chat_id=chat_id, message_id=message_id),
            )
        except TelegramBadRequest as error:
            if said(error, "can't parse entities"):
                await self.courier.call(
                    chat_id,
                    1,
                    lambda: self.bot.edit_message_text(
                        text=plain_text(text), chat_id=chat_id, message_id=message_id, parse_mode=None
                    ),
                )
            elif not said(error, "not modified", "message to edit not found"):
                raise

    async def _edit_caption_text(self, chat_id: int, message_id: int, caption: str) -> None:
        try:
            await self.courier.call(
                chat_id,
                1,
                lambda: self.bot.edit_message_caption(
                    chat_id=chat_id, message_id=message_id, caption=caption
                ),
            )
        except TelegramBadRequest as error:
            if not said(error, "not modified", "message to edit not found"):
                raise

    # --- deletions --------------------------------------------------------------------------------

    async def delete(self, item: OutboxItem) -> list[int]:
        """Remove what showed the comment; the ids of the messages removed or changed."""
        sent = await self.sent.get(item.comment_id or 0, item.chat_id, item.thread_id)
        if sent is None:
            log.info("deletion_of_a_comment_never_shown_here_ignored")
            return []
        changed: list[int] = []
        if sent.combined:
            changed += await self._leave_combined(item.chat_id, sent)
        else:
            for message_id in sent.text_message_ids:
                await self._delete_or_mark(item.chat_id, message_id, media=False)
                changed.append(message_id)
        for message_id in sent.file_message_ids:
            await self._delete_or_mark(item.chat_id, message_id, media=True)
            changed.append(message_id)
        await self.sent.forget(sent)
        return changed

    async def _leave_combined(self, chat_id: int, sent: SentComment) -> list[int]:
        message_id = sent.text_message_ids[0]
        combined = await self.sent.combined(chat_id, message_id)
        others = [p for p in combined.parts if p.comment_id != sent.comment_id] if combined else []
        if combined is None or not others:
            await self._delete_or_mark(chat_id, message_id, media=False)
            await self.sent.forget_combined(chat_id, message_id)
            return [message_id]
        combined.parts = others
        await self._edit_text(chat_id, message_id, COMBINED_SEPARATOR.join(p.text for p in others))
        await self.sent.save_combined(combined)
        return [message_id]

    async def _delete_or_mark(self, chat_id: int, message_id: int, *, media: bool) -> None:
        try:
            await self.courier.call(
                chat_id, 1, lambda: self.bot.delete_message(chat_id=chat_id, message_id=message_id)
            )
        except TelegramBadRequest as error:
            if said(error, "message to delete not found"):
                return
            if not said(error, "can't be deleted"):
                raise
            log.info("message_too_old_to_delete_marked_instead", message_id=message_id)
            mark = self.texts(chat_id).gettext(DELETED_MARK)
            if media:
                await self._edit_caption_text(chat_id, message_id, mark)
            else:
                await self._edit_text(chat_id, message_id, mark)
