"""The binder's side of a group's life, as pure functions: bindings follow the bot and the chat id.

The bot removed from a group suspends each of its bindings, the bot added again resumes them; a
group that became a supergroup takes its bindings to the new chat id, unless the supergroup was
bound on its own already (that binding wins). ``plan`` decides the steps once (they are stored
under the cause's id, so a redelivery takes the same steps) and ``announcement`` is each step's event.
"""

from __future__ import annotations

import enum

import msgspec

from contracts import subjects
from contracts.bindings import Binding
from contracts.events import (
    BindingMoved,
    BindingResumed,
    BindingSuspended,
    BotMembershipChanged,
    ChatMigrated,
    TelegramGroupEvent,
    derived_key,
    envelope_after,
)


class StepKind(enum.StrEnum):
    SUSPEND = "suspend"
    RESUME = "resume"
    MOVE = "move"
    # The new supergroup is bound on its own: the old chat's binding stays behind, unannounced.
    LEAVE_BEHIND = "leave_behind"


class GroupStep(msgspec.Struct, frozen=True, kw_only=True):
    kind: StepKind
    binding: Binding


class GroupChange(msgspec.Struct, frozen=True, kw_only=True):
    """The steps one membership change or migration takes (``key``: the cause's event id)."""

    key: str
    steps: list[GroupStep]


def chats_to_read(event: TelegramGroupEvent) -> list[int]:
    """The chats whose bindings ``plan`` needs (none: the event is not the binder's business)."""
    match event:
        case BotMembershipChanged():
            return [event.chat_id]
        case ChatMigrated():
            return [event.old_chat_id, event.chat_id]
        case _:
            return []


def plan(event: TelegramGroupEvent, bindings: dict[int, list[Binding]]) -> list[GroupStep]:
    """The steps for ``event``, given the bindings of each chat ``chats_to_read`` named."""
    match event:
        case BotMembershipChanged(is_member=is_member):
            kind = StepKind.RESUME if is_member else StepKind.SUSPEND
            return [
                GroupStep(kind=kind, binding=b)
                for b in bindings.get(event.chat_id, [])
                if b.suspended == is_member
            ]
        case ChatMigrated():
            taken = {b.thread_id for b in bindings.get(event.chat_id, [])}
            return [
                GroupStep(kind=StepKind.LEAVE_BEHIND if b.thread_id in taken else StepKind.MOVE, binding=b)
                for b in bindings.get(event.old_chat_id, [])
            ]
        case _:
            return []


Announcement = BindingSuspended | BindingResumed | BindingMoved


# What each announced step's key says (the key is its message id: a redelivery repeats it).
_KEY_WORD = {StepKind.SUSPEND: "suspended", StepKind.RESUME: "resumed", StepKind.MOVE: "moved"}


def announcement(cause: TelegramGroupEvent, step: GroupStep) -> tuple[Announcement, str, str] | None:
    """The event a step publishes, its subject and message id; None for a step nobody is told of."""
    binding = step.binding
    if step.kind is StepKind.LEAVE_BEHIND:
        return None
    key = derived_key(cause, f"{_KEY_WORD[step.kind]}:{binding.key}")
    envelope = envelope_after(cause, key)
    announced: Announcement
    match step.kind:
        case StepKind.SUSPEND:
            announced = BindingSuspended(
                **envelope,
                chat_id=binding.chat_id,
                thread_id=binding.thread_id,
                task_number=binding.task_number,
            )
        case StepKind.RESUME:
            announced = BindingResumed(
                **envelope,
                chat_id=binding.chat_id,
                thread_id=binding.thread_id,
                task_number=binding.task_number,
                task_title=binding.task_title,
            )
        case StepKind.MOVE:
            assert isinstance(cause, ChatMigrated)
            announced = BindingMoved(
                **envelope,
                old_chat_id=cause.old_chat_id,
                chat_id=cause.chat_id,
                thread_id=binding.thread_id,
                task_number=binding.task_number,
                task_title=binding.task_title,
            )
    return announced, subjects.subject_for(announced), key
