"""Carrying one outbox item to Telegram: the API calls it takes, in order, each in its turn.

Every call goes through ``call``: wait for the group's and the bot's pace, renew this replica's
lease on the group, call, then start the group's next interval (on a 429, hold the group for
exactly ``retry_after``). A send: files first (captioned with the text when it fits 1024 units,
else with the author line, the text following), then the text in parts of at most 4096 units;
each finished step is recorded, so a retry resumes after it. What Telegram cannot parse goes
again as plain text. Edits and deletions of what was sent are in ``revisions.py``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import anyio
import structlog
from aiogram import Bot
from aiogram.exceptions import TelegramBadRequest, TelegramRetryAfter
from aiogram.types import (
    FSInputFile,
    InputMediaAudio,
    InputMediaDocument,
    InputMediaLivePhoto,
    InputMediaPhoto,
    InputMediaVideo,
    Message,
    ReplyParameters,
)

from bridge_lib.i18n import Translator, translator
from bridge_lib.lease import LeaseLost, Leases
from bridge_lib.planfix import FileNotFound, FileTooLargeToDownload, PlanfixClient
from contracts.events import PlanfixFile, TelegramMessageKind
from services.relay.to_telegram.media import (
    MAX_UPLOAD_BYTES,
    MediaFile,
    MediaKind,
    as_documents,
    media_groups,
    too_large,
    too_large_note,
)
from services.relay.to_telegram.outbox import Outbox, OutboxItem
from services.relay.to_telegram.pacing import TelegramPace, group_lease_key
from services.relay.to_telegram.sent_comments import CombinedMessage, CombinedPart, SentComment, SentComments
from services.relay.to_telegram.telegram_text import (
    CAPTION_LIMIT,
    COMBINED_SEPARATOR,
    fits,
    plain_text,
    split_html,
)

log = structlog.get_logger("relay.courier")
T = TypeVar("T")
# Kinds Telegram may refuse where it still takes the same bytes as a document.
_REFUSABLE_KINDS = (MediaKind.PHOTO, MediaKind.VIDEO, MediaKind.VOICE)
AnyInputMedia = InputMediaAudio | InputMediaDocument | InputMediaLivePhoto | InputMediaPhoto | InputMediaVideo


@dataclass(frozen=True)
class Step:
    """One Telegram call of a send: a text part, or files with an optional caption."""

    text: str
    media: tuple[MediaFile, ...] = ()
    caption_is_text: bool = False


def said(error: TelegramBadRequest, *fragments: str) -> bool:
    """Whether Telegram's error text mentions any of ``fragments`` (its only detail)."""
    message = error.message.lower()
    return any(fragment in message for fragment in fragments)


class Courier:
    def __init__(
        self,
        *,
        bot: Bot,
        planfix: PlanfixClient,
        outbox: Outbox,
        sent: SentComments,
        pace: TelegramPace,
        leases: Leases,
        task_url: Callable[[int], str],
        texts: Callable[[int], Translator] = lambda chat_id: translator(),
        scratch_dir: Path | None = None,
    ) -> None:
        self._bot = bot
        self._planfix = planfix
        self._outbox = outbox
        self._sent = sent
        self._pace = pace
        self._leases = leases
        self._task_url = task_url
        # The group's language, for the notes the courier adds (a file too large to send).
        self._texts = texts
        self._scratch_dir = scratch_dir

    def task_url(self, task_number: int) -> str:
        return self._task_url(task_number)

    # --- sends --------------------------------------------------------------------------------

    async def send(self, item: OutboxItem) -> list[int]:
        """Every step not done yet; ``item.progress`` then holds them all, for ``Outbox.finish``."""
        steps = await self._plan(item)
        done = {int(step): ids for step, ids in item.progress.items()}
        as_text: set[int] = set()  # steps whose files were all gone: their caption went as text
        for index, step in enumerate(steps):
            if index not in done:
                done[index], went_as_text = await self._run_step(item, step, first=index == 0)
                if went_as_text:
                    as_text.add(index)
                item.progress[str(index)] = done[index]
                if index < len(steps) - 1:
                    # The last step is recorded by finishing the item, right after this.
                    await self._outbox.step_done(item.key, index, done[index])
        if item.kind is TelegramMessageKind.PLANFIX_COMMENT and item.comment_id is not None:
            await self._sent.save(self._record(item, steps, done, as_text))
        return [message_id for index in sorted(done) for message_id in done[index]]

    async def send_combined(self, items: list[OutboxItem]) -> int:
        """Several consecutive comments as one message, each keeping its author line."""
        first = items[0]
        message_id = await self.send_text(
            first, COMBINED_SEPARATOR.join(item.text for item in items), reply=False
        )
        parts = [CombinedPart(comment_id=item.comment_id or 0, text=item.text) for item in items]
        await self._sent.save_combined(
            CombinedMessage(chat_id=first.chat_id, message_id=message_id, parts=parts)
        )
        for item in items:
            await self._sent.save(
                SentComment(
                    comment_id=item.comment_id or 0,
                    chat_id=item.chat_id,
                    thread_id=item.thread_id,
                    text=item.text,
                    text_message_ids=[message_id],
                    combined=True,
                )
            )
        return message_id

    async def _plan(self, item: OutboxItem) -> list[Step]:
        files = [await self._with_size(file) for file in item.files]
        notes = [
            too_large_note(file, self._task_url(item.task_number or 0), self._texts(item.chat_id))
            for file in files
            if too_large(file)
        ]
        text = "\n".join(part for part in (item.text, *notes) if part)
        groups = media_groups([file for file in files if not too_large(file)])
        if not groups:
            return [Step(part) for part in split_html(text)]
        if fits(text, CAPTION_LIMIT):
            captioned = Step(text, tuple(groups[0]), caption_is_text=True)
            return [captioned, *(Step("", tuple(group)) for group in groups[1:])]
        return [
            Step(item.short_caption, tuple(groups[0])),
            *(Step("", tuple(group)) for group in groups[1:]),
            *(Step(part) for part in split_html(text)),
        ]

    async def _with_size(self, file: PlanfixFile) -> PlanfixFile:
        if file.size is not None:
            return file
        try:
            info = await self._planfix.get_file(file.id)
        except FileNotFound:
            return file
        return PlanfixFile(id=file.id, name=file.name or info.name, size=info.size)

    def _record(
        self, item: OutboxItem, steps: list[Step], done: dict[int, list[int]], as_text: set[int]
    ) -> SentComment:
        sent = SentComment(
            comment_id=item.comment_id or 0,
            chat_id=item.chat_id,
            thread_id=item.thread_id,
            text=item.text,
            short_caption=item.short_caption,
            file_ids=[file.id for file in item.files],
        )
        for index, step in enumerate(steps):
            ids = done.get(index, [])
            if not step.media or index in as_text:
                sent.text_message_ids.extend(ids)
                continue
            sent.file_message_ids.extend(ids)
            if step.caption_is_text and ids:
                sent.caption_message_id = ids[0]
        return sent

    async def _run_step(self, item: OutboxItem, step: Step, *, first: bool) -> tuple[list[int], bool]:
        """The step's message ids, and whether a caption went as text (its files all gone)."""
        if not step.media:
            return [await self.send_text(item, step.text, reply=first)], False
        try:
            sent = await self._send_media(item, step.text, list(step.media))
        except TelegramBadRequest as error:
            if not any(media.kind in _REFUSABLE_KINDS for media in step.media):
                raise
            # e.g. PHOTO_INVALID_DIMENSIONS, VOICE_MESSAGES_FORBIDDEN: Telegram still takes the
            # same bytes as a document.
            log.warning("media_refused_sending_as_documents", error=error.message)
            sent = await self._send_media(item, step.text, as_documents(list(step.media)))
        if not sent and step.caption_is_text and step.text:
            # Every file of the step is gone from Planfix: the text it was to carry still goes.
            log.warning("files_gone_caption_sent_as_text", comment_id=item.comment_id)
            return [await self.send_text(item, step.text, reply=first)], True
        return sent, False

    async def send_text(self, item: OutboxItem, text: str, *, reply: bool) -> int:
        reply_to = item.reply_to_message_id if reply else None
        thread_id = item.thread_id

        def send(body: str, parse_mode: Any, thread: int | None) -> Callable[[], Awaitable[Message]]:
            return lambda: self._bot.send_message(
                chat_id=item.chat_id,
                text=body,
                parse_mode=parse_mode,
                message_thread_id=thread,
                reply_parameters=ReplyParameters(message_id=reply_to, allow_sending_without_reply=True)
                if reply_to
                else None,
            )

        try:
            message = await self.call(item.chat_id, 1, send(text, "HTML", thread_id))
        except TelegramBadRequest as error:
            if said(error, "can't parse entities"):
                log.warning("html_refused_sent_as_plain_text", error=error.message)
                message = await self.call(item.chat_id, 1, send(plain_text(text), None, thread_id))
            elif said(error, "thread not found") and thread_id is not None:
                log.warning("forum_topic_gone_sent_to_general", thread_id=thread_id)
                message = await self.call(item.chat_id, 1, send(text, "HTML", None))
            else:
                raise
        return message.message_id

    async def _send_media(self, item: OutboxItem, caption: str, media: list[MediaFile]) -> list[int]:
        async with anyio.TemporaryDirectory(
            dir=str(self._scratch_dir) if self._scratch_dir else None
        ) as scratch:
            present: list[tuple[MediaFile, FSInputFile]] = []
            for index, entry in enumerate(media):
                path = Path(scratch) / str(index)
                if await self._download(entry.file, path):
                    present.append(
                        (entry, FSInputFile(path, filename=entry.file.name or f"file-{entry.file.id}"))
                    )
            if not present:
                return []
            if len(present) == 1:
                ((entry, upload),) = present
                message = await self.call(item.chat_id, 1, self._single(item, entry.kind, upload, caption))
                return [message.message_id]
            group: list[AnyInputMedia] = [
                _input_media(entry.kind, upload, caption if index == 0 else None)
                for index, (entry, upload) in enumerate(present)
            ]
            messages = await self.call(
                item.chat_id,
                len(group),
                lambda: self._bot.send_media_group(
                    chat_id=item.chat_id, media=group, message_thread_id=item.thread_id
                ),
            )
            return [message.message_id for message in messages]

    async def _download(self, file: PlanfixFile, path: Path) -> bool:
        try:
            await self._planfix.download_file(file.id, path, max_bytes=MAX_UPLOAD_BYTES)
        except FileNotFound:
            log.warning("planfix_file_gone_skipped", file_id=file.id)
            return False
        except FileTooLargeToDownload:
            log.error("planfix_file_over_upload_limit_skipped", file_id=file.id, size=file.size)
            return False
        return True

    def _single(
        self, item: OutboxItem, kind: MediaKind, upload: FSInputFile, caption: str
    ) -> Callable[[], Awaitable[Message]]:
        common: dict[str, Any] = {
            "chat_id": item.chat_id,
            "caption": caption or None,
            "message_thread_id": item.thread_id,
        }
        if kind is MediaKind.PHOTO:
            return lambda: self._bot.send_photo(photo=upload, **common)
        if kind is MediaKind.VIDEO:
            return lambda: self._bot.send_video(video=upload, **common)
        if kind is MediaKind.AUDIO:
            return lambda: self._bot.send_audio(audio=upload, **common)
        if kind is MediaKind.VOICE:
            return lambda: self._bot.send_voice(voice=upload, **common)
        return lambda: self._bot.send_document(document=upload, **common)

    # --- every call ---------------------------------------------------------------------------

    async def call(self, chat_id: int, messages: int, call: Callable[[], Awaitable[T]]) -> T:
        await self._pace.wait_for_group(chat_id)
        await self._pace.take_bot_slots(messages)
        # Right before the call, after the waits for the pace: the group's lease (renewed here)
        # must not run out between this check and the record of what was sent, or another
        # replica would take the group over and send the same item again.
        if not await self._leases.acquire(group_lease_key(chat_id)):
            raise LeaseLost(f"group {chat_id} is sent to by another relay replica now")
        try:
            result = await call()
        except TelegramRetryAfter as error:
            await self._pace.hold_group(chat_id, float(error.retry_after))
            raise
        except Exception:
            await self._pace.group_sent(chat_id, messages)
            raise
        await self._pace.group_sent(chat_id, messages)
        return result


def _input_media(
    kind: MediaKind, upload: FSInputFile, caption: str | None
) -> InputMediaPhoto | InputMediaVideo | InputMediaAudio | InputMediaDocument:
    caption = caption or None
    if kind is MediaKind.PHOTO:
        return InputMediaPhoto(media=upload, caption=caption)
    if kind is MediaKind.VIDEO:
        return InputMediaVideo(media=upload, caption=caption)
    if kind is MediaKind.AUDIO:
        return InputMediaAudio(media=upload, caption=caption)
    return InputMediaDocument(media=upload, caption=caption)
