"""Carrying an outbox item to Telegram: the calls it takes, each in the group's turn, and the
record of which messages show the comment.

Every call goes through ``Courier.call``: wait for the group's and the bot's pace, renew this
replica's lease on the group, call, then start the group's next interval (a 429 holds the group
for exactly ``retry_after``). A send: files first (captioned with the text when it fits 1024
units, else with the author line, the text following), then the text in parts of at most 4096
units; each finished step is recorded, so a retry resumes after it. Edits and deletions of what
was sent: ``revisions.py``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

import anyio
import msgspec
import structlog
from aiogram import Bot
from aiogram.exceptions import TelegramBadRequest, TelegramRetryAfter
from aiogram.methods import SendMessage
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
from motor.motor_asyncio import AsyncIOMotorDatabase
from pymongo import ReplaceOne

from bridge_lib.i18n import Translator, translator
from bridge_lib.kvstore import compare_and_set, read_entry
from bridge_lib.lease import LeaseLost, Leases
from bridge_lib.planfix import FileNotFound, FileTooLargeToDownload, PlanfixClient
from bridge_lib.telegram import sent_message_id
from contracts.events import PlanfixFile, TelegramMessageKind
from services.relay.effects import SENT_COMMENTS
from services.relay.to_telegram.items import OutboxItem
from services.relay.to_telegram.media import (
    MAX_UPLOAD_BYTES,
    MediaFile,
    MediaKind,
    as_documents,
    media_groups,
    too_large,
    too_large_note,
)
from services.relay.to_telegram.telegram_text import (
    CAPTION_LIMIT,
    COMBINED_SEPARATOR,
    fits,
    plain_text,
    split_html,
)

log = structlog.get_logger("relay.courier")

# --- Telegram's pace, shared by the relay's replicas ---------------------------------------

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]
# Re-read the shared state at least this often while waiting (another replica may change it).
_MAX_NAP_S = 5.0
# Intervals below this are not paced (a KV round trip takes about as long).
NEGLIGIBLE_INTERVAL_S = 0.001
# A bot reservation is a fraction of a second ahead of its writer's clock (an album's parts at
# 30 a second): further ahead, the writer's clock runs ahead of ours, and waiting for it would
# hold every group that long at every send. Such a slot counts as free (Telegram's 429 still
# guards the limit).
_BOT_SLOT_MAX_AHEAD_S = 2.0


def group_lease_key(chat_id: int) -> str:
    """One sender per group keeps its messages in order and lets it combine what waits."""
    return f"owner.{chat_id}"


class TelegramPace:
    """Telegram's pace, shared by the relay's replicas through the ``telegram_pace`` bucket:
    ``chat.<id>`` and ``bot``, the Unix time of the next allowed send. Telegram allows a group
    about 20 messages a minute and a bot about 30 a second. Only the group's lease holder writes
    ``chat.<id>``, so it reads the key only on taking the group over (``forget``)."""

    def __init__(
        self,
        kv: Any,
        *,
        group_limit: int,
        group_window_s: float,
        bot_per_second: float,
        clock: Clock = time.time,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self._kv = kv
        self.group_interval_s = group_window_s / group_limit
        self._bot_interval_s = 1.0 / bot_per_second
        self._clock = clock
        self._sleep = sleep
        # chat id -> next allowed send, as this replica last wrote or read it (see ``forget``).
        self._next_at: dict[int, float] = {}

    def forget(self, chat_id: int) -> None:
        """This replica took the group over (or let it go): read its pace from the bucket again."""
        self._next_at.pop(chat_id, None)

    async def wait_for_group(self, chat_id: int) -> None:
        """Return when the group may get its next message."""
        while True:
            next_at = self._next_at.get(chat_id)
            if next_at is None:
                value, _ = await read_entry(self._kv, f"chat.{chat_id}")
                next_at = self._next_at[chat_id] = float(value) if value else 0.0
            wait = next_at - self._clock()
            if wait <= 0:
                return
            await self._sleep(min(wait, _MAX_NAP_S))
            self.forget(chat_id)  # a long wait: look again (a 429 may have moved it)

    async def take_bot_slots(self, messages: int = 1) -> None:
        """Reserve ``messages`` of the bot's sends (waiting for them when the bot is busy)."""
        if self._bot_interval_s < NEGLIGIBLE_INTERVAL_S:
            return
        while True:
            value, revision = await read_entry(self._kv, "bot")
            now = self._clock()
            next_at = float(value) if value else 0.0
            if next_at > now + _BOT_SLOT_MAX_AHEAD_S:
                next_at = now  # written by a clock ahead of ours: see _BOT_SLOT_MAX_AHEAD_S
            if next_at > now:
                await self._sleep(min(next_at - now, _MAX_NAP_S))
                continue
            reserved = str(now + messages * self._bot_interval_s).encode()
            if await compare_and_set(self._kv, "bot", reserved, revision) is not None:
                return

    async def group_sent(self, chat_id: int, messages: int = 1) -> None:
        """Telegram answered a send of ``messages`` messages: the group's next turn starts now."""
        if self.group_interval_s < NEGLIGIBLE_INTERVAL_S and self._next_at.get(chat_id, 0.0) <= 0.0:
            return  # no pace, and no hold (429) recorded: nothing to write
        await self._set_next(chat_id, self._clock() + messages * self.group_interval_s)

    async def hold_group(self, chat_id: int, seconds: float) -> None:
        """Telegram said to wait ``seconds`` (429 retry_after): nothing goes to the group before."""
        await self._set_next(chat_id, self._clock() + seconds)

    async def _set_next(self, chat_id: int, next_at: float) -> None:
        # Kept here first: it holds for this replica even when the bucket cannot be written.
        self._next_at[chat_id] = next_at
        await self._kv.put(f"chat.{chat_id}", str(next_at).encode())


# --- which Telegram messages show which comment --------------------------------------------


class SentComment(msgspec.Struct, kw_only=True):
    comment_id: int
    chat_id: int
    thread_id: int | None = None
    text: str = ""
    short_caption: str = ""
    # The messages carrying the text, in order; one message shared with other comments when
    # ``combined`` (see ``CombinedMessage``).
    text_message_ids: list[int] = msgspec.field(default_factory=list)
    combined: bool = False
    # The text went as the caption of this file message instead.
    caption_message_id: int | None = None
    file_message_ids: list[int] = msgspec.field(default_factory=list)
    # The Planfix files the comment had when shown (None: shown before they were recorded); a
    # file added in Planfix later is named in the group with a link (``revisions``).
    file_ids: list[int] | None = None


class CombinedPart(msgspec.Struct, kw_only=True):
    comment_id: int
    text: str


class CombinedMessage(msgspec.Struct, kw_only=True):
    chat_id: int
    message_id: int
    parts: list[CombinedPart]


def _sent_id(comment_id: int, chat_id: int, thread_id: int | None) -> str:
    return f"{comment_id}:{chat_id}:{thread_id or 0}"


class SentComments:
    """``telegram_sent_comments``: per comment and group, the text as last shown and the messages
    that carry it. ``telegram_combined_messages``: the comments a combined message carries, in
    order, so one can be edited or removed while the others stay."""

    def __init__(self, database: AsyncIOMotorDatabase[Any]) -> None:
        self._sent = database[SENT_COMMENTS]
        self._combined = database["telegram_combined_messages"]

    async def get(self, comment_id: int, chat_id: int, thread_id: int | None) -> SentComment | None:
        document = await self._sent.find_one({"_id": _sent_id(comment_id, chat_id, thread_id)}, {"_id": 0})
        return msgspec.convert(document, SentComment, strict=False) if document else None

    async def save(self, sent: SentComment) -> None:
        await self.save_all([sent])

    async def save_all(self, sent: list[SentComment]) -> None:
        """One round trip for the comments of a combined message."""
        replacements = []
        for one in sent:
            key = _sent_id(one.comment_id, one.chat_id, one.thread_id)
            # _id in the document too: nx-27017 does not take it from the filter on an upsert.
            replacements.append(
                ReplaceOne({"_id": key}, {"_id": key, **msgspec.to_builtins(one)}, upsert=True)
            )
        await self._sent.bulk_write(replacements, ordered=False)

    async def forget(self, sent: SentComment) -> None:
        await self._sent.delete_one({"_id": _sent_id(sent.comment_id, sent.chat_id, sent.thread_id)})

    async def combined(self, chat_id: int, message_id: int) -> CombinedMessage | None:
        document = await self._combined.find_one({"_id": f"{chat_id}:{message_id}"}, {"_id": 0})
        return msgspec.convert(document, CombinedMessage, strict=False) if document else None

    async def save_combined(self, message: CombinedMessage) -> None:
        key = f"{message.chat_id}:{message.message_id}"
        await self._combined.replace_one(
            {"_id": key}, {"_id": key, **msgspec.to_builtins(message)}, upsert=True
        )

    async def forget_combined(self, chat_id: int, message_id: int) -> None:
        await self._combined.delete_one({"_id": f"{chat_id}:{message_id}"})


# --- the courier ------------------------------------------------------------------------------

T = TypeVar("T")
# Kinds Telegram may refuse where it still takes the same bytes as a document.
_REFUSABLE_KINDS = (MediaKind.PHOTO, MediaKind.VIDEO, MediaKind.VOICE)
AnyInputMedia = InputMediaAudio | InputMediaDocument | InputMediaLivePhoto | InputMediaPhoto | InputMediaVideo


class StepLog(Protocol):
    """Where each finished step of an item is recorded (the outbox), so a retry resumes after it."""

    async def step_done(self, key: str, step: int, message_ids: list[int]) -> None: ...


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


@dataclass(frozen=True, kw_only=True, eq=False)
class Courier:
    bot: Bot
    planfix: PlanfixClient
    outbox: StepLog
    sent: SentComments
    pace: TelegramPace
    leases: Leases
    task_url: Callable[[int], str]
    # The group's language, for the notes the courier adds (a file too large to send).
    texts: Callable[[int], Translator] = lambda chat_id: translator()
    scratch_dir: Path | None = None

    # --- the group: this replica's to send to, in its turn ------------------------------------

    def holds(self, chat_id: int) -> bool:
        return self.leases.holds(group_lease_key(chat_id))

    async def take_group(self, chat_id: int) -> bool:
        """Take (or keep) the group's lease; False while another replica holds it."""
        taking_over = not self.holds(chat_id)
        if not await self.leases.acquire(group_lease_key(chat_id)):
            return False
        if taking_over:
            self.pace.forget(chat_id)  # another replica may have sent meanwhile
        return True

    async def release_group(self, chat_id: int) -> None:
        await self.leases.release(group_lease_key(chat_id))
        self.pace.forget(chat_id)

    async def release_all(self) -> None:
        await self.leases.release_all()

    async def wait_for_turn(self, chat_id: int) -> None:
        """Return when the group may get its next message."""
        await self.pace.wait_for_group(chat_id)

    async def call(self, chat_id: int, messages: int, call: Callable[[], Awaitable[T]]) -> T:
        """One Bot API call of ``messages`` messages, in the group's turn."""
        await self.wait_for_turn(chat_id)
        await self.pace.take_bot_slots(messages)
        # Right before the call, after the waits for the pace: the group's lease (renewed here)
        # must not run out between this check and the record of what was sent, or another
        # replica would take the group over and send the same item again.
        if not await self.leases.acquire(group_lease_key(chat_id)):
            raise LeaseLost(f"group {chat_id} is sent to by another relay replica now")
        try:
            result = await call()
        except TelegramRetryAfter as error:
            await self.pace.hold_group(chat_id, float(error.retry_after))
            raise
        except Exception:
            await self.pace.group_sent(chat_id, messages)
            raise
        try:
            await self.pace.group_sent(chat_id, messages)
        except Exception as error:
            # The message is out: failing here would have it sent again. The pace holds in this
            # replica; another one taking the group over meanwhile may send early (a 429 then).
            log.warning("group_pace_not_shared", error=f"{type(error).__name__}: {error}")
        return result

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
                    await self.outbox.step_done(item.key, index, done[index])
        if item.kind is TelegramMessageKind.PLANFIX_COMMENT and item.comment_id is not None:
            await self.sent.save(self._record(item, steps, done, as_text))
        return [message_id for index in sorted(done) for message_id in done[index]]

    async def send_combined(self, items: list[OutboxItem]) -> int:
        """Several consecutive comments as one message, each keeping its author line."""
        first = items[0]
        message_id = await self.send_text(
            first, COMBINED_SEPARATOR.join(item.text for item in items), reply=False
        )
        parts = [CombinedPart(comment_id=item.comment_id or 0, text=item.text) for item in items]
        await self.sent.save_combined(
            CombinedMessage(chat_id=first.chat_id, message_id=message_id, parts=parts)
        )
        await self.sent.save_all(
            [
                SentComment(
                    comment_id=item.comment_id or 0,
                    chat_id=item.chat_id,
                    thread_id=item.thread_id,
                    text=item.text,
                    text_message_ids=[message_id],
                    combined=True,
                )
                for item in items
            ]
        )
        return message_id

    async def _plan(self, item: OutboxItem) -> list[Step]:
        if not item.files:
            return [Step(part) for part in split_html(item.text)]
        files = [await self._with_size(file) for file in item.files]
        notes = [
            too_large_note(file, self.task_url(item.task_number or 0), self.texts(item.chat_id))
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
            info = await self.planfix.get_file(file.id)
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

        def send(body: str, parse_mode: Any, thread: int | None) -> Callable[[], Awaitable[int]]:
            method = SendMessage(
                chat_id=item.chat_id,
                text=body,
                parse_mode=parse_mode,
                message_thread_id=thread,
                reply_parameters=ReplyParameters(message_id=reply_to, allow_sending_without_reply=True)
                if reply_to
                else None,
            )
            return lambda: sent_message_id(self.bot, method)

        try:
            return await self.call(item.chat_id, 1, send(text, "HTML", thread_id))
        except TelegramBadRequest as error:
            if said(error, "can't parse entities"):
                log.warning("html_refused_sent_as_plain_text", error=error.message)
                return await self.call(item.chat_id, 1, send(plain_text(text), None, thread_id))
            if said(error, "thread not found") and thread_id is not None:
                log.warning("forum_topic_gone_sent_to_general", thread_id=thread_id)
                return await self.call(item.chat_id, 1, send(text, "HTML", None))
            raise

    async def _send_media(self, item: OutboxItem, caption: str, media: list[MediaFile]) -> list[int]:
        async with anyio.TemporaryDirectory(
            dir=str(self.scratch_dir) if self.scratch_dir else None
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
                lambda: self.bot.send_media_group(
                    chat_id=item.chat_id, media=group, message_thread_id=item.thread_id
                ),
            )
            return [message.message_id for message in messages]

    async def _download(self, file: PlanfixFile, path: Path) -> bool:
        try:
            await self.planfix.download_file(file.id, path, max_bytes=MAX_UPLOAD_BYTES)
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
            return lambda: self.bot.send_photo(photo=upload, **common)
        if kind is MediaKind.VIDEO:
            return lambda: self.bot.send_video(video=upload, **common)
        if kind is MediaKind.AUDIO:
            return lambda: self.bot.send_audio(audio=upload, **common)
        if kind is MediaKind.VOICE:
            return lambda: self.bot.send_voice(voice=upload, **common)
        return lambda: self.bot.send_document(document=upload, **common)


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
