"""Telegram -> Planfix: group messages become comments in the bound task; edits and reactions
rewrite the comment they became.

Work arrives in batches (``inbound_consumer``): whatever waited in the stream when the previous
batch was done. Consecutive messages for one task in a batch become **one** comment, each with
its author line and time: when Planfix is slow (it allows about one request per second per
account), the backlog is combined instead of waiting in line, and when it is not, a batch holds
one message and each message gets its own comment. An album's parts arrive together (the
consumer waits a short window for the rest) and so share one comment; a part that comes later
still is added to the album's comment (files and caption), never dropped.

Each comment is planned before it is posted (``inbound_store``: blocks, files, the run key its
``sourceObjectId`` UUID derives from) and completed after; a redelivered batch first resumes what was
planned, looking the comment up by ``sourceObjectId`` if the process died mid-post.

Files: bytes are downloaded through the Bot API (``getFile``) and uploaded to Planfix with
multipart; a Telegram file URL carries the bot token and never goes to Planfix. A file over the
Bot API's 20 MB download limit, or over the Planfix plan's limit, becomes a line in the comment
naming it and its size.
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

import structlog
from aiogram import Bot
from aiogram.exceptions import (
    TelegramBadRequest,
    TelegramNetworkError,
    TelegramRetryAfter,
    TelegramServerError,
)

from bridge_lib.eventbus import (
    EventPublisher,
    PermanentFailure,
    TransientFailure,
    current_delivery,
    forcing_effects,
)
from bridge_lib.planfix import (
    CommentNotFound,
    FileTooLarge,
    PlanfixAuthError,
    PlanfixClient,
    PlanfixRejected,
    PlanfixUnavailable,
    Recipients,
)
from contracts import subjects
from contracts.events import (
    PlanfixCommentPosted,
    PlanfixCommentRewritten,
    TelegramAttachment,
    TelegramMessageEdited,
    TelegramMessageReceived,
    TelegramReactionChanged,
    envelope_after,
    planfix_source_object_id,
)
from services.relay.comment_html import (
    Block,
    body_html,
    build_block,
    comment_html,
    too_big_for_planfix_note,
    too_big_for_telegram_note,
    unavailable_note,
)
from services.relay.directory import BindingDirectory
from services.relay.effects import EffectStore, publish_effect
from services.relay.inbound_store import InboundStore, StoredComment, album_key

log = structlog.get_logger("relay.to_planfix")

# Bots may download at most this much through the Bot API's getFile.
TELEGRAM_DOWNLOAD_LIMIT = 20 * 1024 * 1024
# How far back to look for a comment lost in a crash (pages of 100).
_RECOVERY_PAGES = 5
# After this many deliveries a file that cannot be downloaded is named in the comment instead.
_FILE_ATTEMPTS = 5
# Effect records of the relay from before batching, one per message it carried (their key is
# this and the message's source key); this relay writes none.
_CARRIED_ONE_BY_ONE = "planfix-comment:"

InboundEvent = TelegramMessageReceived | TelegramMessageEdited | TelegramReactionChanged


@dataclass
class Unit:
    """A piece of a batch that succeeds or fails as a whole: one comment to post, or the
    updates of one comment, or events that need nothing (unbound group, unknown message)."""

    events: list[InboundEvent]
    task_number: int | None = None
    messages: list[TelegramMessageReceived] = field(default_factory=list)
    updates: list[TelegramMessageEdited | TelegramReactionChanged] = field(default_factory=list)


@dataclass(frozen=True)
class CombineLimits:
    max_messages: int = 50
    max_chars: int = 50_000


class ToPlanfix:
    def __init__(
        self,
        *,
        directory: BindingDirectory,
        effects: EffectStore,
        store: InboundStore,
        planfix: PlanfixClient,
        bot: Bot,
        publisher: EventPublisher,
        planfix_source_id: str,
        zone: ZoneInfo,
        recipients: Recipients | None = None,
        limits: CombineLimits = CombineLimits(),
    ) -> None:
        self._directory = directory
        self._effects = effects
        self._store = store
        self._planfix = planfix
        self._bot = bot
        self._publisher = publisher
        self._source_id = planfix_source_id
        self._zone = zone
        self._recipients = recipients
        self._limits = limits
        # Whether records of the one-at-a-time relay (before batching) may exist; until
        # ``look_for_records_before_batching`` says there are none, every message is checked.
        self._records_before_batching = True

    async def look_for_records_before_batching(self) -> None:
        """Once the old relay's consumer is gone (``inbound_consumer``), no such record can be
        added: when there is none, the per-comment check of them (a store query) is skipped."""
        self._records_before_batching = await self._effects.any_key_starting(_CARRIED_ONE_BY_ONE)
        if self._records_before_batching:
            log.info("records_of_the_one_by_one_relay_found", what_now="each message is checked against them")

    # --- planning a batch -------------------------------------------------------------------

    async def units(self, events: Sequence[InboundEvent]) -> list[Unit]:
        """Split a batch into units, messages first (per task, in order), then updates."""
        by_task: dict[int, list[TelegramMessageReceived]] = {}
        order: list[int] = []
        idle: list[InboundEvent] = []
        updates: list[TelegramMessageEdited | TelegramReactionChanged] = []
        for event in events:
            if not isinstance(event, TelegramMessageReceived):
                updates.append(event)
                continue
            bound = await self._directory.task_for(event.chat_id, event.thread_id)
            if bound is None:
                log.info("unbound_group_not_relayed", chat_id=event.chat_id, message_id=event.message_id)
                idle.append(event)
                continue
            if bound.task_number not in by_task:
                order.append(bound.task_number)
            by_task.setdefault(bound.task_number, []).append(event)
        units = [Unit(events=idle)] if idle else []
        for task_number in order:
            for chunk in self._chunks(by_task[task_number]):
                units.append(Unit(events=list(chunk), task_number=task_number, messages=list(chunk)))
        units.extend(await self._update_units(updates))
        return units

    def _chunks(self, messages: list[TelegramMessageReceived]) -> list[list[TelegramMessageReceived]]:
        chunks: list[list[TelegramMessageReceived]] = []
        current: list[TelegramMessageReceived] = []
        chars = 0
        for message in messages:
            size = len(message.text) + 300
            full = len(current) >= self._limits.max_messages or chars + size > self._limits.max_chars
            same_album = (
                bool(current)
                and message.media_group_id is not None
                and (current[-1].media_group_id == message.media_group_id)
            )
            if current and full and not same_album:
                # Never cut an album in two: a full comment still takes the album's last parts.
                chunks.append(current)
                current, chars = [], 0
            current.append(message)
            chars += size
        if current:
            chunks.append(current)
        return chunks

    async def _update_units(
        self, updates: list[TelegramMessageEdited | TelegramReactionChanged]
    ) -> list[Unit]:
        # Resolved when carried, after this batch's messages were planned: an edit may follow
        # its message within one batch.
        return [Unit(events=list(updates), updates=list(updates))] if updates else []

    # --- carrying a unit --------------------------------------------------------------------

    async def carry(self, unit: Unit, *, redelivered: bool, attempts: int) -> None:
        try:
            if unit.messages and unit.task_number is not None:
                await self._carry_messages(unit.task_number, unit.messages, redelivered, attempts)
            elif unit.updates:
                await self._apply_all_updates(unit.updates)
        except (PlanfixUnavailable, PlanfixAuthError) as error:
            # An auth error is an operator's fix (a new token); keep the messages until then.
            raise TransientFailure(str(error)) from error
        except PlanfixRejected as error:
            raise PermanentFailure(f"Planfix refused: {error}") from error

    async def _carry_messages(
        self, task_number: int, messages: list[TelegramMessageReceived], redelivered: bool, attempts: int
    ) -> None:
        structlog.contextvars.bind_contextvars(task_number=task_number, chat_id=messages[0].chat_id)
        fresh: list[TelegramMessageReceived] = []
        forced = forcing_effects()
        # The records of all the unit's messages in one round trip, not two per message. Nothing
        # in the loop below links or records another message of the unit, so reading them first
        # sees what reading each in turn would.
        keys = [message.source_key for message in messages]
        runs: dict[str, str] = {}
        carried_before: dict[str, dict[str, Any]] = {}
        if not forced and self._records_before_batching:
            runs, carried_before = await asyncio.gather(
                self._store.runs_of(keys),
                self._effects.get_many([f"{_CARRIED_ONE_BY_ONE}{key}" for key in keys]),
            )
        elif not forced:
            runs = await self._store.runs_of(keys)
        for message in messages:
            if forced:
                # An operator's forced replay: a new comment, whatever the records say.
                fresh.append(message)
                continue
            run_key = runs.get(message.source_key)
            if run_key is not None:
                # Planned before (a redelivery): finish that comment as it was planned.
                await self._finish(run_key, message, redelivered=True)
                continue
            if f"{_CARRIED_ONE_BY_ONE}{message.source_key}" in carried_before:
                # Carried one by one by a relay from before batching; its record stands.
                log.info("message_carried_before", message_id=message.message_id)
                continue
            album = await self._album_comment(message)
            if album is not None:
                await self._add_late_album_part(album, message, attempts)
                continue
            fresh.append(message)
        while fresh:
            planned, resumed, links = await self._plan(task_number, fresh, attempts)
            # ``resumed``: an intent an earlier try left; it may have been posted already.
            await self._finish(
                planned.run_key, fresh[0], redelivered=redelivered or resumed, planned=planned, links=links
            )
            # An intent left by a crash may hold fewer of these messages: the rest go next.
            fresh = [m for m in fresh if m.source_key not in planned.message_keys]

    async def _album_comment(self, message: TelegramMessageReceived) -> StoredComment | None:
        if message.media_group_id is None:
            return None
        run_key = await self._store.run_of(album_key(message.chat_id, message.media_group_id))
        return await self._store.load(run_key) if run_key else None

    async def _plan(
        self, task_number: int, messages: list[TelegramMessageReceived], attempts: int
    ) -> tuple[StoredComment, bool, list[str]]:
        """The stored intent, whether it is an earlier one, and the keys to link to it once posted."""
        run_key = messages[0].source_key
        delivery = current_delivery()
        if delivery is not None and delivery.force_effects:
            run_key = f"{run_key}:forced:{delivery.replay_id or delivery.stream_seq}"
        blocks: list[Block] = []
        file_ids: list[int] = []
        for message in messages:
            uploaded, notes = await self._files(message, run_key, attempts)
            file_ids.extend(uploaded)
            blocks.append(build_block(message, self._zone, notes))
        albums = {m.media_group_id for m in messages if m.media_group_id}
        planned = StoredComment(
            run_key=run_key,
            task_number=task_number,
            chat_id=messages[0].chat_id,
            blocks=blocks,
            file_ids=file_ids,
            media_group_id=next(iter(albums)) if len(albums) == 1 else None,
        )
        stored, resumed = await self._store.plan(planned)
        links = stored.link_keys + [album_key(planned.chat_id, a) for a in albums - {planned.media_group_id}]
        return stored, resumed, links

    async def _finish(
        self,
        run_key: str,
        cause: TelegramMessageReceived,
        *,
        redelivered: bool,
        planned: StoredComment | None = None,
        links: Sequence[str] = (),
    ) -> None:
        # ``planned``: what ``InboundStore.plan`` just stored (or the earlier intent it found);
        # reading it back would only repeat it, one store round trip per comment. ``links``:
        # the message (and album) keys that lead to it, written after the post with its id, so
        # nothing but the intent stands between a message and its comment. Until they are
        # written, a retry finds the intent again through its run key (``InboundStore.plan``).
        comment = planned if planned is not None else await self._store.load(run_key)
        if comment is None:
            raise TransientFailure(f"planned comment {run_key} not found in the store")
        records: list[Awaitable[None]] = []
        if comment.comment_id is None:
            comment.comment_id = await self._post(comment, redelivered=redelivered)
            # Written side by side, in one round trip: each is idempotent, and if one fails the
            # unit is tried again, finding the comment by ``sourceObjectId`` if ``save`` was lost.
            records = [
                self._store.save(comment),
                self._effects.remember_own_comment(
                    comment.comment_id,
                    task_number=comment.task_number,
                    source_object_id=planfix_source_object_id(run_key),
                ),
            ]
            log.info(
                "comment_posted",
                comment_id=comment.comment_id,
                messages=len(comment.blocks),
                files=len(comment.file_ids),
            )
        if links:
            records.append(self._store.link_all(links, run_key))
        effect_key = f"planfix-comment:{run_key}"
        published = publish_effect(
            self._publisher,
            PlanfixCommentPosted(
                **envelope_after(cause, effect_key),
                task_number=comment.task_number,
                comment_id=comment.comment_id,
                source_object_id=planfix_source_object_id(run_key),
                chat_id=comment.chat_id,
                message_id=comment.blocks[0].message_id,
                message_ids=[block.message_id for block in comment.blocks],
                file_ids=comment.file_ids,
            ),
            subject=subjects.planfix_comment_posted(comment.task_number),
            effect_key=effect_key,
        )
        await asyncio.gather(*records, published)

    async def _post(self, comment: StoredComment, *, redelivered: bool) -> int:
        if redelivered:
            found = await self._find_comment(comment.task_number, comment.run_key)
            if found is not None:
                log.info("comment_found_after_crash", comment_id=found)
                return found
        return await self._planfix.add_comment(
            task_number=comment.task_number,
            description_html=comment_html(comment.blocks),
            source_id=self._source_id,
            source_object_id=planfix_source_object_id(comment.run_key),
            file_ids=comment.file_ids,
            recipients=self._recipients,
        )

    async def _find_comment(self, task_number: int, run_key: str) -> int | None:
        """The comment posted for ``run_key`` before a crash, if Planfix has it. Read newest
        first: a comment just posted is on the first page however long the task is."""
        wanted = {planfix_source_object_id(run_key), run_key}  # run_key: written before UUIDs
        for page in range(_RECOVERY_PAGES):
            comments = await self._planfix.list_comments(
                task_number, source_id=self._source_id, offset=page * 100, page_size=100, newest_first=True
            )
            for comment in comments:
                if comment.source_object_id in wanted:
                    return comment.id
            if len(comments) < 100:
                break
        return None

    async def _add_late_album_part(
        self, album: StoredComment, message: TelegramMessageReceived, attempts: int
    ) -> None:
        """A part that arrived after its album's comment was planned: add its files (and its
        caption, if it has one) to that comment."""
        uploaded, notes = await self._files(message, album.run_key, attempts)
        block = build_block(message, self._zone, notes)
        if (block.body or block.tail) and album.block_for(message.source_key) is None:
            album.blocks.append(block)
        album.file_ids.extend(f for f in uploaded if f not in album.file_ids)
        # Linked last: a redelivery of a part not linked yet adds it again (files are reused).
        if album.comment_id is None:
            await self._store.save(album)
            await self._store.link(message.source_key, album.run_key)
            await self._finish(album.run_key, message, redelivered=True)
            return
        await self._rewrite(album, files_changed=True)
        await self._store.save(album)
        await self._store.link(message.source_key, album.run_key)
        await self._publish_update(album, message.message_id, "album_part", message)
        log.info("late_album_part_added", comment_id=album.comment_id, files=len(album.file_ids))

    # --- files ------------------------------------------------------------------------------

    async def _files(
        self, message: TelegramMessageReceived, run_key: str, attempts: int
    ) -> tuple[list[int], list[str]]:
        file_ids: list[int] = []
        notes: list[str] = []
        for attachment in message.attachments:
            if not attachment.is_image:
                continue  # an animated sticker: its emoji and set are in the text
            effect_key = f"planfix-file:{run_key}:{attachment.file_unique_id}"
            record = await self._effects.get(effect_key)
            if record is not None:
                if record.get("file_id") is not None:
                    file_ids.append(int(record["file_id"]))
                else:
                    notes.append(str(record["note"]))
                continue
            file_id, note = await self._upload(attachment, attempts)
            await self._effects.record(effect_key, file_id=file_id, note=note)
            if file_id is not None:
                file_ids.append(file_id)
            if note is not None:
                notes.append(note)
        return file_ids, notes

    async def _upload(self, attachment: TelegramAttachment, attempts: int) -> tuple[int | None, str | None]:
        if attachment.file_size is not None and attachment.file_size > TELEGRAM_DOWNLOAD_LIMIT:
            log.info("file_too_big_for_telegram", kind=attachment.kind, size=attachment.file_size)
            return None, too_big_for_telegram_note(attachment)
        try:
            data = await self._download(attachment)
        except TelegramBadRequest as error:
            if "too big" in str(error).lower():
                return None, too_big_for_telegram_note(attachment)
            log.warning("file_not_downloadable", kind=attachment.kind, error=str(error))
            return None, unavailable_note(attachment)
        except (TelegramNetworkError, TelegramServerError, TelegramRetryAfter, OSError) as error:
            if attempts >= _FILE_ATTEMPTS:
                log.warning("file_download_gave_up", kind=attachment.kind, error=type(error).__name__)
                return None, unavailable_note(attachment)
            raise TransientFailure(f"Telegram file download failed: {type(error).__name__}") from error
        try:
            file_id = await self._planfix.upload_file(
                name=attachment.file_name or attachment.kind, data=data, content_type=attachment.mime_type
            )
        except FileTooLarge:
            log.info("file_too_big_for_planfix", kind=attachment.kind, size=len(data))
            return None, too_big_for_planfix_note(attachment)
        log.info("file_uploaded", kind=attachment.kind, size=len(data), file_id=file_id)
        return file_id, None

    async def _download(self, attachment: TelegramAttachment) -> bytes:
        telegram_file = await self._bot.get_file(attachment.file_id)
        if telegram_file.file_path is None:
            raise TelegramBadRequest(method=None, message="file has no path")  # type: ignore[arg-type]
        buffer = io.BytesIO()
        await self._bot.download_file(telegram_file.file_path, destination=buffer)
        return buffer.getvalue()

    # --- edits and reactions ----------------------------------------------------------------

    async def _apply_all_updates(
        self, updates: list[TelegramMessageEdited | TelegramReactionChanged]
    ) -> None:
        """Group edits and reactions by the comment they change: one rewrite per comment."""
        by_run: dict[str, list[TelegramMessageEdited | TelegramReactionChanged]] = {}
        for update in updates:
            run_key = await self._store.run_of(update.message_key)
            if run_key is None:
                what = "edit" if isinstance(update, TelegramMessageEdited) else "reaction"
                # Written before the group was bound, or never carried: nothing to change.
                log.info(
                    f"{what}_of_unknown_message_ignored", chat_id=update.chat_id, message_id=update.message_id
                )
                continue
            by_run.setdefault(run_key, []).append(update)
        for run_key, changes in by_run.items():
            await self._apply_updates(run_key, changes)

    async def _apply_updates(
        self, run_key: str, updates: list[TelegramMessageEdited | TelegramReactionChanged]
    ) -> None:
        comment = await self._store.load(run_key)
        if comment is None:
            return
        structlog.contextvars.bind_contextvars(task_number=comment.task_number, comment_id=comment.comment_id)
        changed = False
        for update in updates:
            block = comment.block_for(update.message_key)
            if block is None:
                continue  # an album part without a block of its own: nothing shown to change
            if isinstance(update, TelegramMessageEdited):
                body = body_html(update.text, update.entities)
                changed |= body != block.body or not block.edited
                block.body, block.edited = body, True
            else:
                emojis = [reaction.emoji for reaction in update.reactions]
                if block.reactions.get(update.actor.display, []) != emojis:
                    changed = True
                    block.reactions = {**block.reactions, update.actor.display: emojis}
                    if not emojis:
                        block.reactions.pop(update.actor.display)
        if not changed:
            log.info("comment_unchanged")
            return
        if comment.comment_id is None:
            await self._store.save(comment)  # not posted yet: it will be posted as it is now
            return
        await self._rewrite(comment, files_changed=False)
        await self._store.save(comment)
        last = updates[-1]
        reason = "edit" if isinstance(last, TelegramMessageEdited) else "reaction"
        await self._publish_update(comment, last.message_id, reason, last)
        log.info("comment_updated", reason=reason, updates=len(updates))

    async def _rewrite(self, comment: StoredComment, *, files_changed: bool) -> None:
        assert comment.comment_id is not None
        try:
            await self._planfix.update_comment(
                task_number=comment.task_number,
                comment_id=comment.comment_id,
                description_html=comment_html(comment.blocks),
                file_ids=comment.file_ids if files_changed else None,
            )
        except CommentNotFound:
            # Deleted in Planfix: there is nothing left to update.
            log.info("updated_comment_was_deleted", comment_id=comment.comment_id)

    async def _publish_update(
        self,
        comment: StoredComment,
        message_id: int,
        reason: str,
        cause: TelegramMessageReceived | TelegramMessageEdited | TelegramReactionChanged,
    ) -> None:
        assert comment.comment_id is not None
        effect_key = f"planfix-comment-update:{cause.event_id}"
        await publish_effect(
            self._publisher,
            PlanfixCommentRewritten(
                **envelope_after(cause, effect_key),
                task_number=comment.task_number,
                comment_id=comment.comment_id,
                chat_id=comment.chat_id,
                message_id=message_id,
                reason=reason,
            ),
            subject=subjects.planfix_comment_rewritten(comment.task_number),
            effect_key=effect_key,
        )
