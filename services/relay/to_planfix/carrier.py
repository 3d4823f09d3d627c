"""Telegram -> Planfix: carrying the steps ``plan.plan_batch`` decided, against the ledger,
Planfix and Telegram.

A comment is planned in the ledger before it is posted and completed after; a step tried again
first resumes what was planned, looking the comment up by ``sourceObjectId`` if the answer to
the post was lost. ``leads`` is what the batch knows leads where (the ledger's answer when the
batch was planned, plus what its steps carried since).
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

import msgspec
import structlog

from bridge_lib.eventbus import (
    EventPublisher,
    PermanentFailure,
    TransientFailure,
    current_delivery,
    forcing_effects,
)
from bridge_lib.i18n import Translator, translator
from bridge_lib.planfix import (
    CommentNotFound,
    OwnerRefused,
    PlanfixAuthError,
    PlanfixClient,
    PlanfixComment,
    PlanfixNoAnswer,
    PlanfixRejected,
    PlanfixUnavailable,
)
from contracts import subjects
from contracts.events import (
    PlanfixCommentPosted,
    PlanfixCommentRewritten,
    TelegramAttachment,
    TelegramMessageEdited,
    TelegramMessageReceived,
    envelope_after,
    planfix_source_object_id,
)
from contracts.people import People
from services.relay.effects import effect_msg_id, publish_effect
from services.relay.to_planfix.authors import Authors
from services.relay.to_planfix.files import FileUploader
from services.relay.to_planfix.from_telegram_html import (
    Block,
    body_html,
    build_block,
    comment_html,
    file_label,
    replaced_note,
    with_tail_lines,
)
from services.relay.to_planfix.ledger import CommentLedger, LedgerEntry
from services.relay.to_planfix.plan import (
    AddToAlbum,
    InboundEvent,
    Post,
    Resume,
    Rewrite,
    Skip,
    Step,
    Update,
    album_key,
    replan,
)

log = structlog.get_logger("relay.to_planfix")

# How far back to look for a comment lost in a crash (pages of 100).
_RECOVERY_PAGES = 5
# How long a post that got no answer may still turn up in Planfix (a request cut at our timeout
# or by a stop is still worked on there): until then it is looked for, not posted again.
UNSURE_POST_GRACE_S = 60.0


class UnsurePostPending(PlanfixUnavailable):
    """A post that got no answer may still be made by Planfix: look again in ``retry_after_s``
    (the consumer's retry honours it and keeps the batch's messages in hand meanwhile)."""

    def __init__(self, retry_after_s: float) -> None:
        super().__init__("an earlier post of this comment got no answer; looking for it again before posting")
        self.retry_after_s = max(0.1, min(UNSURE_POST_GRACE_S, retry_after_s))


def may_post_again(unsure_since: float | None, now: float, *, grace_s: float = UNSURE_POST_GRACE_S) -> bool:
    """Whether a comment not found in Planfix may be posted (again): never tried without an
    answer, or that try is ``grace_s`` old. A time ahead of ``now`` (another replica's clock)
    counts from ``now``: the wait is longer, never shorter."""
    return unsure_since is None or now - unsure_since >= grace_s


def robot_authors() -> Authors:
    """Every comment by the robot, naming its authors (a ``Carrier`` given no ``authors``)."""
    return Authors(people=People, contacts=None, recipients=None, notify_mentioned=False)


@dataclass(frozen=True, kw_only=True, eq=False)
class Carrier:
    ledger: CommentLedger
    files: FileUploader
    planfix: PlanfixClient
    publisher: EventPublisher
    planfix_source_id: str
    zone: ZoneInfo
    authors: Authors = field(default_factory=robot_authors)
    # What the comments it writes say, in each group's language (by chat id).
    texts: Callable[[int], Translator] = lambda chat_id: translator()

    async def carry(self, step: Step, leads: dict[str, str], *, attempts: int) -> None:
        """Carry one step; ``attempts``: how often its messages were delivered (1: the first)."""
        try:
            match step:
                case Post():
                    await self._post(step, leads, attempts)
                case Resume(run_key=run_key, message=message):
                    await self._resume(run_key, message, leads)
                case AddToAlbum():
                    await self._add_to_album(step, leads, attempts)
                case Rewrite(updates=updates):
                    await self._rewrite_all(updates, leads, attempts)
                case Skip(events=events):
                    for event in events:
                        log.info(_skipped(event), chat_id=event.chat_id, message_id=event.message_id)
        except (PlanfixUnavailable, PlanfixAuthError) as error:
            # An auth error is an operator's fix (a new token); keep the messages until then.
            raise TransientFailure(str(error)) from error
        except PlanfixRejected as error:
            raise PermanentFailure(f"Planfix refused: {error}") from error

    # --- new comments -----------------------------------------------------------------------

    async def _post(self, post: Post, leads: dict[str, str], attempts: int) -> None:
        if not forcing_effects():
            steps = replan(post, leads)
            if steps != (post,):
                for step in steps:
                    await self.carry(step, leads, attempts=attempts)
                return
        structlog.contextvars.bind_contextvars(task_number=post.task_number, chat_id=post.messages[0].chat_id)
        fresh = list(post.messages)
        while fresh:
            entry, resumed = await self._plan(post.task_number, fresh, attempts)
            # ``resumed``: an intent an earlier try left; it may have been posted already.
            await self._finish(entry, fresh[0], leads, redelivered=attempts > 1 or resumed, lead=True)
            # An intent left by a crash may hold fewer of these messages: the rest go next.
            planned = {block.message_key for block in entry.blocks}
            fresh = [message for message in fresh if message.source_key not in planned]

    async def _plan(
        self, task_number: int, messages: list[TelegramMessageReceived], attempts: int
    ) -> tuple[LedgerEntry, bool]:
        """The stored intent and whether an earlier try left it."""
        run_key = messages[0].source_key
        delivery = current_delivery()
        if delivery is not None and delivery.force_effects:
            run_key = f"{run_key}:forced:{delivery.replay_id or delivery.stream_seq}"
        albums = list(dict.fromkeys(m.media_group_id for m in messages if m.media_group_id))
        with_files = any(attachment.is_image for message in messages for attachment in message.attachments)
        # One owner per comment: ``plan_batch`` combines only messages of one owner.
        owner = await self.authors.owner(messages[0].sender)
        entry_chat = messages[0].chat_id
        entry = LedgerEntry(
            run_key=run_key,
            task_number=task_number,
            chat_id=messages[0].chat_id,
            blocks=[]
            if with_files
            else [build_block(message, self.zone, [], self.texts(entry_chat)) for message in messages],
            media_group_id=albums[0] if len(albums) == 1 else None,
            keys=[*(m.source_key for m in messages), *(album_key(messages[0].chat_id, a) for a in albums)],
            uploading=with_files,
            owner=owner,
            mentioned=self.authors.mentioned(messages, owner),
        )
        stored, earlier = await self.ledger.plan(entry)
        if earlier and not stored.uploading:
            return stored, True
        if with_files:
            # A try cut off while uploading posted nothing: its uploads are reused, this plan stands.
            entry.uploads = stored.uploads if earlier else {}
            for message in messages:
                file_ids, notes = await self._upload_files(entry, message, attempts)
                entry.file_ids += file_ids
                entry.blocks.append(build_block(message, self.zone, notes, self.texts(entry.chat_id)))
            entry.uploading = False
            await self.ledger.save(entry)
        return entry, False

    async def _resume(self, run_key: str, message: TelegramMessageReceived, leads: dict[str, str]) -> None:
        entry = await self.ledger.load(run_key)
        if entry is None:
            raise TransientFailure(f"planned comment {run_key} not found in the ledger")
        structlog.contextvars.bind_contextvars(task_number=entry.task_number, chat_id=entry.chat_id)
        await self._finish(entry, message, leads, redelivered=True, lead=False)

    async def _finish(
        self,
        entry: LedgerEntry,
        cause: TelegramMessageReceived,
        leads: dict[str, str],
        *,
        redelivered: bool,
        lead: bool,
    ) -> None:
        """Post the planned comment unless it was, record it, and announce it (again: a repeat
        has the same message id and is dropped). ``lead``: write its leads even when it was
        posted before (a try may have stopped before they were written)."""
        effect_key = f"planfix-comment:{entry.run_key}"
        writes = []
        if entry.comment_id is None:
            entry.comment_id = await self._post_comment(entry, redelivered=redelivered)
            entry.published = [*entry.published, effect_msg_id(effect_key)]
            # Side by side, in one round trip's wait: each is idempotent, and if one fails the
            # step is tried again, finding the comment by ``sourceObjectId`` if ``save`` was lost.
            writes = [self.ledger.save(entry), self.ledger.lead_here(entry, entry.keys)]
            log.info(
                "comment_posted",
                comment_id=entry.comment_id,
                messages=len(entry.blocks),
                files=len(entry.file_ids),
            )
        elif lead:
            writes = [self.ledger.lead_here(entry, entry.keys)]
        published = publish_effect(
            self.publisher,
            PlanfixCommentPosted(
                **envelope_after(cause, effect_key),
                task_number=entry.task_number,
                comment_id=entry.comment_id,
                source_object_id=planfix_source_object_id(entry.run_key),
                chat_id=entry.chat_id,
                message_id=entry.blocks[0].message_id,
                message_ids=[block.message_id for block in entry.blocks],
                file_ids=entry.file_ids,
            ),
            subject=subjects.planfix_comment_posted(entry.task_number),
            effect_key=effect_key,
        )
        await asyncio.gather(*writes, published)
        for key in entry.keys if writes else ():
            leads.setdefault(key, entry.run_key)

    async def _post_comment(self, entry: LedgerEntry, *, redelivered: bool) -> int:
        if redelivered:
            found = await self._find_comment(entry.task_number, entry.run_key)
            if found is not None:
                log.info("comment_found_after_crash", comment_id=found.id)
                if entry.owner is not None and found.owner_id not in (None, entry.owner):
                    entry.owner = None  # the robot posted it (the owner was refused): edits name authors
                return found.id
            if not may_post_again(entry.unsure_since, time.time()):
                assert entry.unsure_since is not None
                raise UnsurePostPending(entry.unsure_since + UNSURE_POST_GRACE_S - time.time())
        if not self.authors.owners_on:
            entry.owner = None  # Planfix refused owners lately: the robot writes, naming authors
        try:
            return await self._add_comment_or_mark_unsure(entry)
        except OwnerRefused as refused:
            # Nothing was posted: the same comment again, by the robot (same sourceObjectId).
            entry.owner = None
            comment_id = await self._add_comment_or_mark_unsure(entry)
            self.authors.owner_refused(refused)
            return comment_id

    async def _add_comment_or_mark_unsure(self, entry: LedgerEntry) -> int:
        try:
            return await self._add_comment(entry)
        except PlanfixNoAnswer:
            await self._mark_unsure(entry)
            raise

    async def _mark_unsure(self, entry: LedgerEntry) -> None:
        """Planfix may make the comment yet: the next try looks for it first (``may_post_again``)."""
        entry.unsure_since = time.time()
        with contextlib.suppress(Exception):
            await asyncio.shield(self.ledger.mark_unsure(entry.run_key, entry.unsure_since))

    async def _add_comment(self, entry: LedgerEntry) -> int:
        return await self.planfix.add_comment(
            task_number=entry.task_number,
            description_html=comment_html(entry.blocks, self.texts(entry.chat_id), named=entry.owner is None),
            source_id=self.planfix_source_id,
            source_object_id=planfix_source_object_id(entry.run_key),
            file_ids=entry.file_ids,
            recipients=self.authors.recipients(entry.mentioned),
            owner=entry.owner,
        )

    async def _find_comment(self, task_number: int, run_key: str) -> PlanfixComment | None:
        """The comment posted for ``run_key`` before a crash, if Planfix has it. Read newest
        first: a comment just posted is on the first page however long the task is."""
        wanted = {planfix_source_object_id(run_key), run_key}  # run_key: written before UUIDs
        for page in range(_RECOVERY_PAGES):
            comments = await self.planfix.list_comments(
                task_number,
                source_id=self.planfix_source_id,
                offset=page * 100,
                page_size=100,
                newest_first=True,
            )
            for comment in comments:
                if comment.source_object_id in wanted:
                    return comment
            if len(comments) < 100:
                break
        return None

    async def _upload_files(
        self, entry: LedgerEntry, message: TelegramMessageReceived, attempts: int
    ) -> tuple[list[int], list[str]]:
        return await self._upload(entry, message.attachments, attempts)

    async def _upload(
        self, entry: LedgerEntry, attachments: Sequence[TelegramAttachment], attempts: int
    ) -> tuple[list[int], list[str]]:
        """Pictures and files uploaded once per comment: each upload is recorded in the entry
        before the next, and a retry reuses what it finds there."""
        file_ids: list[int] = []
        notes: list[str] = []
        for attachment in attachments:
            if not attachment.is_image:
                continue  # an animated sticker: its emoji and set are in the text
            upload = entry.uploads.get(attachment.file_unique_id)
            if upload is None:
                upload = await self.files.upload(attachment, attempts, self.texts(entry.chat_id))
                entry.uploads[attachment.file_unique_id] = upload
                await self.ledger.record_upload(entry.run_key, attachment.file_unique_id, upload)
            if upload.file_id is not None:
                file_ids.append(upload.file_id)
            if upload.note is not None:
                notes.append(upload.note)
        return file_ids, notes

    # --- late album parts ---------------------------------------------------------------------

    async def _add_to_album(self, step: AddToAlbum, leads: dict[str, str], attempts: int) -> None:
        """A part that arrived after its album's comment was planned: its files (and caption, if
        it has one) are added to that comment."""
        run_key = leads.get(step.album_key)
        album = await self.ledger.load(run_key) if run_key else None
        if album is None:  # the album's comment was never made (its post was given up)
            await self._post(Post(step.task_number, (step.message,)), leads, attempts)
            return
        message = step.message
        structlog.contextvars.bind_contextvars(task_number=album.task_number, chat_id=album.chat_id)
        file_ids, notes = await self._upload_files(album, message, attempts)
        block = build_block(message, self.zone, notes, self.texts(album.chat_id))
        if (block.body or block.tail) and album.block_for(message.source_key) is None:
            album.blocks.append(block)
        album.file_ids.extend(f for f in file_ids if f not in album.file_ids)
        if message.source_key not in album.keys:
            album.keys.append(message.source_key)
        if album.comment_id is None:
            await self.ledger.save(album)
            await self._finish(album, message, leads, redelivered=True, lead=True)
            return
        await self._rewrite(album, files_changed=True)
        effect_key = self._add_update_event(album, message)
        await self.ledger.save(album)
        # Lead written last: a redelivery of a part not leading here yet adds it again (files reused).
        await self.ledger.lead_here(album, [message.source_key])
        leads.setdefault(message.source_key, album.run_key)
        await self._publish_update(album, message.message_id, "album_part", message, effect_key)
        log.info("late_album_part_added", comment_id=album.comment_id, files=len(album.file_ids))

    # --- edits and reactions ------------------------------------------------------------------

    async def _rewrite_all(self, updates: tuple[Update, ...], leads: dict[str, str], attempts: int) -> None:
        """Edits and reactions grouped by the comment they change: one rewrite per comment."""
        by_run: dict[str, list[Update]] = {}
        for update in updates:
            run_key = leads.get(update.message_key)
            if run_key is None:  # its message's comment was given up
                log.info(_skipped(update), chat_id=update.chat_id, message_id=update.message_id)
                continue
            by_run.setdefault(run_key, []).append(update)
        for run_key, changes in by_run.items():
            await self._apply(run_key, changes, attempts)

    async def _apply(self, run_key: str, updates: list[Update], attempts: int) -> None:
        entry = await self.ledger.load(run_key)
        if entry is None:
            return
        structlog.contextvars.bind_contextvars(task_number=entry.task_number, comment_id=entry.comment_id)
        files_changed = False
        for update in updates:
            block = entry.block_for(update.message_key)
            if isinstance(update, TelegramMessageEdited) and block is not None:
                files_changed |= await self._swap_files(entry, block, update, attempts)
        # A list, not a generator: every update applied, not only up to the first change.
        shown_changed = any([_apply_to_block(entry.block_for(u.message_key), u) for u in updates])
        if not shown_changed and not files_changed:
            log.info("comment_unchanged")
            return
        if entry.comment_id is None:
            await self.ledger.save(entry)  # not posted yet: it will be posted as it is now
            return
        await self._rewrite(entry, files_changed=files_changed)
        last = updates[-1]
        effect_key = self._add_update_event(entry, last)
        await self.ledger.save(entry)
        reason = "edit" if isinstance(last, TelegramMessageEdited) else "reaction"
        await self._publish_update(entry, last.message_id, reason, last, effect_key)
        log.info("comment_updated", reason=reason, updates=len(updates))

    async def _swap_files(
        self, entry: LedgerEntry, block: Block, edit: TelegramMessageEdited, attempts: int
    ) -> bool:
        """An edit that swapped the message's photo or document: the new file joins the comment
        (the old one stays, named as replaced). Whether anything changed."""
        now = {attachment.file_unique_id for attachment in edit.attachments}
        # ``uploads`` too: a block stored before blocks knew their files has none listed.
        new = [
            a
            for a in edit.attachments
            if a.is_image and a.file_unique_id not in block.files and a.file_unique_id not in entry.uploads
        ]
        if not new:
            return False
        old_names = {label.split(" (", 1)[0] for label in block.files.values()}
        new = [_distinct_name(attachment, old_names, edit) for attachment in new]
        file_ids, notes = await self._upload(entry, new, attempts)
        entry.file_ids.extend(file_id for file_id in file_ids if file_id not in entry.file_ids)
        replaced = [label for unique_id, label in block.files.items() if unique_id not in now]
        added = [file_label(attachment) for attachment in new]
        block.tail = with_tail_lines(
            block.tail, [replaced_note(replaced, added, self.texts(entry.chat_id)), *notes]
        )
        kept = {unique_id: label for unique_id, label in block.files.items() if unique_id in now}
        block.files = {**kept, **{a.file_unique_id: file_label(a) for a in new}}
        log.info("edited_media_attached", replaced=len(replaced), added=len(new))
        return True

    async def _rewrite(self, entry: LedgerEntry, *, files_changed: bool) -> None:
        assert entry.comment_id is not None
        try:
            await self.planfix.update_comment(
                task_number=entry.task_number,
                comment_id=entry.comment_id,
                description_html=comment_html(
                    entry.blocks, self.texts(entry.chat_id), named=entry.owner is None
                ),
                file_ids=entry.file_ids if files_changed else None,
            )
        except CommentNotFound:
            # Deleted in Planfix: there is nothing left to update.
            log.info("updated_comment_was_deleted", comment_id=entry.comment_id)

    @staticmethod
    def _add_update_event(entry: LedgerEntry, cause: InboundEvent) -> str:
        effect_key = f"planfix-comment-update:{cause.event_id}"
        if effect_msg_id(effect_key) not in entry.published:
            entry.published = [*entry.published, effect_msg_id(effect_key)]
        return effect_key

    async def _publish_update(
        self, entry: LedgerEntry, message_id: int, reason: str, cause: InboundEvent, effect_key: str
    ) -> None:
        assert entry.comment_id is not None
        await publish_effect(
            self.publisher,
            PlanfixCommentRewritten(
                **envelope_after(cause, effect_key),
                task_number=entry.task_number,
                comment_id=entry.comment_id,
                chat_id=entry.chat_id,
                message_id=message_id,
                reason=reason,
            ),
            subject=subjects.planfix_comment_rewritten(entry.task_number),
            effect_key=effect_key,
        )


def _apply_to_block(block: Block | None, update: Update) -> bool:
    """Change the block as the update says; whether anything shown changed."""
    if block is None:
        return False  # an album part without a block of its own: nothing shown to change
    if isinstance(update, TelegramMessageEdited):
        body = body_html(update.text, update.entities)
        changed = body != block.body or not block.edited
        block.body, block.edited = body, True
        return changed
    emojis = [reaction.emoji for reaction in update.reactions]
    if block.reactions.get(update.actor.display, []) != emojis:
        block.reactions = {**block.reactions, update.actor.display: emojis}
        if not emojis:
            block.reactions.pop(update.actor.display)
        return True
    return False


def _skipped(event: InboundEvent) -> str:
    """The log line of an event carried nowhere."""
    if isinstance(event, TelegramMessageReceived):
        return "unbound_group_not_relayed"
    # Written before the group was bound, or never carried: nothing to change.
    return f"{'edit' if isinstance(event, TelegramMessageEdited) else 'reaction'}_of_unknown_message_ignored"


def _distinct_name(
    attachment: TelegramAttachment, taken: set[str], edit: TelegramMessageEdited
) -> TelegramAttachment:
    """A swapped-in file named apart from the one it replaces (a photo's name derives from the
    message id, the same before and after the edit)."""
    name = attachment.file_name or attachment.kind
    if html.escape(name) not in taken:
        return attachment
    stem, dot, extension = name.rpartition(".")
    if not dot:
        stem, extension = name, ""
    when = edit.edited_at.strftime("%H%M%S")
    renamed = f"{stem}_edited_{when}{dot}{extension}"
    return msgspec.structs.replace(attachment, file_name=renamed)
