"""What a batch of Telegram activity becomes in Planfix, decided without I/O.

``plan_batch`` sees the batch, the task each group is bound to and what the comment ledger
knows (which comment a message or album already leads to) and returns the steps to carry:
consecutive messages for one task combined into one comment (``Post``), a message planned
before finished as planned (``Resume``), a late album part added to its album's comment
(``AddToAlbum``), edits and reactions rewriting their comments (``Rewrite``, after everything
else: an edit may be about a message of this very batch), and what needs nothing (``Skip``).
Each step succeeds or fails as a whole; a task's steps go in order, tasks side by side.

Where comments are written as their authors (``owners``: sender id -> owner key), only
consecutive messages of one owner are combined: a comment has one owner. Senders without an
owner (written by the robot, which names each author) combine as before.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from contracts.events import (
    TelegramMessageEdited,
    TelegramMessageReceived,
    TelegramReactionChanged,
    telegram_message_key,
)

InboundEvent = TelegramMessageReceived | TelegramMessageEdited | TelegramReactionChanged
Update = TelegramMessageEdited | TelegramReactionChanged
Group = tuple[int, int | None]  # (chat id, forum topic id or None)
# What a share of a comment costs beside its text (author line, time, markup).
_BLOCK_OVERHEAD_CHARS = 300


def album_key(chat_id: int, media_group_id: str) -> str:
    return f"tg:album:{chat_id}:{media_group_id}"


@dataclass(frozen=True)
class CombineLimits:
    max_messages: int = 50
    max_chars: int = 50_000


@dataclass(frozen=True)
class Post:
    """A new comment holding these messages, in order."""

    task_number: int
    messages: tuple[TelegramMessageReceived, ...]

    @property
    def events(self) -> tuple[InboundEvent, ...]:
        return self.messages


@dataclass(frozen=True)
class OneMessage:
    """A step of one message, into a comment already planned."""

    task_number: int
    message: TelegramMessageReceived

    @property
    def events(self) -> tuple[InboundEvent, ...]:
        return (self.message,)


@dataclass(frozen=True)
class Resume(OneMessage):
    """A message the ledger holds already (a redelivery): its comment finished as planned."""

    run_key: str


@dataclass(frozen=True)
class AddToAlbum(OneMessage):
    """A part that came after its album's comment was planned: added to that comment."""

    album_key: str


@dataclass(frozen=True)
class Rewrite:
    """Edits and reactions: each comment they change rewritten once."""

    updates: tuple[Update, ...]

    @property
    def events(self) -> tuple[InboundEvent, ...]:
        return self.updates


@dataclass(frozen=True)
class Skip:
    """Nothing to carry: a message of an unbound group, an edit of a message never carried."""

    events: tuple[InboundEvent, ...]
    why: str


Step = Post | Resume | AddToAlbum | Rewrite | Skip


@dataclass(frozen=True)
class BatchPlan:
    skipped: tuple[Skip, ...] = ()
    # One chain per task, in the order tasks first appear; each chain's steps go in order.
    chains: tuple[tuple[Step, ...], ...] = ()
    rewrite: Rewrite | None = None

    @property
    def steps(self) -> list[Step]:
        rewrite = [self.rewrite] if self.rewrite else []
        return [*self.skipped, *(step for chain in self.chains for step in chain), *rewrite]


def plan_batch(
    events: Sequence[InboundEvent],
    bindings: Mapping[Group, int | None],
    ledger: Mapping[str, str],
    *,
    limits: CombineLimits = CombineLimits(),
    forced: bool = False,
    owners: Mapping[int, str | None] | None = None,
) -> BatchPlan:
    """The steps for a batch. ``bindings``: the task of each group in the batch (None: unbound);
    ``ledger``: key of a message or album -> run key of the comment it leads to. ``forced``: an
    operator's replay asking for new comments whatever the ledger says. ``owners``: whom each
    sender's comments are written as (missing or None: the robot)."""
    unbound: list[InboundEvent] = []
    updates: list[Update] = []
    by_task: dict[int, list[TelegramMessageReceived]] = {}
    for event in events:
        if not isinstance(event, TelegramMessageReceived):
            updates.append(event)
        elif (task_number := bindings.get((event.chat_id, event.thread_id))) is None:
            unbound.append(event)
        else:
            by_task.setdefault(task_number, []).append(event)
    known = {} if forced else ledger
    owner_of = owners or {}
    chains = tuple(
        _chain(task_number, messages, known, limits, owner_of) for task_number, messages in by_task.items()
    )
    in_batch = {
        telegram_message_key(e.chat_id, e.message_id)
        for chain in chains
        for step in chain
        for e in step.events
    }
    changes = tuple(u for u in updates if u.message_key in ledger or u.message_key in in_batch)
    unknown = tuple(u for u in updates if u not in changes)
    skipped = [Skip(tuple(unbound), "unbound group")] if unbound else []
    if unknown:
        skipped.append(Skip(unknown, "message never carried"))
    return BatchPlan(skipped=tuple(skipped), chains=chains, rewrite=Rewrite(changes) if changes else None)


def _chain(
    task_number: int,
    messages: list[TelegramMessageReceived],
    known: Mapping[str, str],
    limits: CombineLimits,
    owners: Mapping[int, str | None],
) -> tuple[Step, ...]:
    steps: list[Step] = []
    albums_posted: set[str] = set()
    for chunk in _chunks(messages, limits, owners):
        steps += _chunk_steps(task_number, chunk, known, albums_posted)
    return tuple(steps)


def replan(post: Post, ledger: Mapping[str, str]) -> tuple[Step, ...]:
    """``post`` decided again against what the ledger knows now: an earlier step of its chain
    may have finished an intent (left by a crash) that holds some of its messages already."""
    return tuple(_chunk_steps(post.task_number, list(post.messages), ledger, set()))


def _chunk_steps(
    task_number: int,
    chunk: list[TelegramMessageReceived],
    known: Mapping[str, str],
    albums_posted: set[str],
) -> list[Step]:
    steps: list[Step] = []
    fresh: list[TelegramMessageReceived] = []
    for message in chunk:
        album = album_key(message.chat_id, message.media_group_id) if message.media_group_id else None
        if (run_key := known.get(message.source_key)) is not None:
            steps.append(Resume(task_number, message, run_key))
        elif album is not None and (album in known or album in albums_posted):
            steps.append(AddToAlbum(task_number, message, album))
        else:
            fresh.append(message)
    if fresh:
        steps.append(Post(task_number, tuple(fresh)))
        albums_posted |= {album_key(m.chat_id, m.media_group_id) for m in fresh if m.media_group_id}
    return steps


def _chunks(
    messages: list[TelegramMessageReceived], limits: CombineLimits, owners: Mapping[int, str | None]
) -> list[list[TelegramMessageReceived]]:
    """Runs of messages for one comment each, within the limits and of one owner; an album is
    never cut in two."""
    chunks: list[list[TelegramMessageReceived]] = []
    current: list[TelegramMessageReceived] = []
    chars = 0
    for message in messages:
        size = len(message.text) + _BLOCK_OVERHEAD_CHARS
        full = len(current) >= limits.max_messages or chars + size > limits.max_chars
        same_album = (
            bool(current)
            and message.media_group_id is not None
            and current[-1].media_group_id == message.media_group_id
        )
        other_owner = bool(current) and owners.get(current[-1].sender.id) != owners.get(message.sender.id)
        if current and (full or other_owner) and not same_album:
            chunks.append(current)
            current, chars = [], 0
        current.append(message)
        chars += size
    if current:
        chunks.append(current)
    return chunks
