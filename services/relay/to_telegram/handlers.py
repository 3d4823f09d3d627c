"""Planfix -> Telegram: what should appear in a group, stored in the outbox for its sender.

Each handler turns one event into outbox items, one per group concerned, keyed by what they
carry (a redelivered event adds nothing), wakes the groups' senders and returns: the event is
settled in milliseconds whatever the groups' pace. Comments follow in each group bound to their
task (never the relay's own); binding decisions, /status, /help, guidance and greetings are
answered; a group that became a supergroup takes its waiting items along.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypedDict, Unpack, get_args

import structlog
from faststream.nats import NatsRouter

from bridge_lib import link_codes
from bridge_lib.eventbus import Delivery, consume_durably
from bridge_lib.i18n import DEFAULT_LANGUAGE, Translator, language_or_default, translator
from bridge_lib.lease import Lease
from bridge_lib.ordered_batches import Handlers as BatchHandlers
from bridge_lib.ordered_batches import OrderedBatches
from bridge_lib.people_directory import PeopleDirectory
from contracts.bindings import language_after
from contracts.events import (
    AnonymousAdminPosted,
    BindingEvent,
    BindingMoved,
    BindingResumed,
    BindingSuspended,
    BindRejected,
    BotMembershipChanged,
    ChatMigrated,
    Event,
    GroupCommand,
    GroupCommandReceived,
    GroupLanguageChosen,
    GroupLanguageRejected,
    PersonEvent,
    PersonLinked,
    PersonLinkMethod,
    PersonLinkRefused,
    PlanfixCommentAdded,
    PlanfixCommentChange,
    PlanfixCommentUpdated,
    PlanfixTaskStateChanged,
    TaskBound,
    TaskCommandAnswered,
    TaskUnbound,
    TelegramGroupEvent,
    TelegramMessageKind,
    UnbindRejected,
    planfix_comment_key,
)
from contracts.subjects import (
    RELAY_BINDING_NOTICES,
    RELAY_GROUP_EVENTS,
    RELAY_PEOPLE_NOTICES,
    RELAY_PLANFIX_COMMENT_CHANGES,
    RELAY_TASK_CHANGES,
)
from services.relay.directory import BindingDirectory, BoundTask
from services.relay.effects import OwnComments
from services.relay.to_telegram.from_planfix_html import comment_author_line, telegram_comment_text
from services.relay.to_telegram.items import Action, OutboxItem
from services.relay.to_telegram.notices import (
    anonymous_admin_guidance,
    anonymous_command_answer,
    bound_notice,
    greeting_text,
    help_text,
    language_chosen_notice,
    language_rejected_notice,
    rejected_notice,
    resumed_notice,
    status_text,
    task_page,
    unbind_rejected_notice,
    unbound_notice,
)
from services.relay.to_telegram.people_notices import link_in_private_text, linked_text, refused_text
from services.relay.to_telegram.sender import Outbox

log = structlog.get_logger("relay.to_telegram")
# An anonymous admin is told again how to fix it once the group was not told for this long.
ANONYMOUS_GUIDANCE_EVERY_S = 24 * 3600.0


class TaskLifeHooks(Protocol):
    """What the handlers ask of the task's life in its groups (``task_handlers.TaskLife``)."""

    async def on_state_changed(self, event: PlanfixTaskStateChanged, delivery: Delivery) -> None: ...

    async def on_bound(self, event: TaskBound) -> None: ...

    async def on_command_answered(self, event: TaskCommandAnswered) -> None: ...

    async def card_text(self, task_number: int, t: Translator) -> str | None: ...


class ItemContent(TypedDict, total=False):
    """What an item may carry besides where it goes (``OutboxItem``'s fields of these names)."""

    text: str
    task_number: int | None
    comment_id: int | None
    reply_to_message_id: int | None


def item_for(
    cause: Event,
    key: str,
    chat_id: int,
    thread_id: int | None,
    kind: TelegramMessageKind,
    *,
    action: Action = Action.SEND,
    **content: Unpack[ItemContent],
) -> OutboxItem:
    """An item caused by ``cause`` (its correlation carried on to the effect that reports it)."""
    return OutboxItem(
        key=key,
        chat_id=chat_id,
        thread_id=thread_id,
        action=action,
        kind=kind,
        correlation_id=cause.correlation_id,
        causation_id=cause.event_id,
        **content,
    )


def written_by_bridge(comment: PlanfixCommentAdded | PlanfixCommentUpdated, our_source_id: str) -> bool:
    """Whether the comment carries our ``sourceId``: Planfix shows a ``sourceObjectId`` only to the
    ``sourceId`` that wrote it, and the gateway names ours then. No guessing from the id's form:
    comments from before UUIDs (``tg:msg:...``) and after count alike."""
    return comment.source_id == our_source_id


@dataclass(frozen=True, kw_only=True, eq=False)
class ToTelegram:
    directory: BindingDirectory
    own_comments: OwnComments
    outbox: Outbox
    # Tells the group's sender something is waiting.
    wake: Callable[[int], None]
    planfix_source_id: str
    planfix_web_url: str
    people: PeopleDirectory | None = None
    task_life: TaskLifeHooks | None = None
    # BRIDGE_LANGUAGE: a group without a language of its own hears this one.
    language: str = DEFAULT_LANGUAGE

    def _telegram_username(self, planfix_id: str | None) -> str | None:
        """A linked employee's Telegram username, when the PEOPLE fold knows it."""
        if self.people is None or planfix_id is None or not planfix_id.startswith("user:"):
            return None
        person = self.people.by_planfix_id(planfix_id)
        return person.telegram_username if person is not None else None

    def texts_for(self, chat_id: int, event: Event | None = None) -> Translator:
        """The group's language; a binding event is counted in before the directory has it (the
        confirmation of /lang, the first bind's language)."""
        current = self.directory.language_of(chat_id)
        if event is not None:
            current = language_after(current, event)  # type: ignore[arg-type]
        return translator(current.language if current is not None else self.language)

    def task_url(self, task_number: int) -> str:
        return task_page(self.planfix_web_url, task_number)

    # --- comments -------------------------------------------------------------------------------

    async def carry_comment_change(self, event: PlanfixCommentChange, delivery: Delivery) -> None:
        await self.carry_comment_changes([event])

    async def carry_comment_changes(self, events: Sequence[PlanfixCommentChange]) -> None:
        """Comment changes in stream order, into their groups' outboxes: the store is asked each
        question once for the whole batch (which are ours, which went out already), and the
        items are stored together, in the batch's order."""
        # In the order a comment travels: its author's @username (people), its groups and their
        # languages (directory), its text there (from_planfix_html), then whether it is ours
        # (effects) and already out, and into each group's outbox (sender).
        planned = [(event, await self._comment_items(event)) for event in events]
        own, gone_out = await asyncio.gather(
            self._own_among([shown for event in events if (shown := _shown(event)) is not None]),
            self.outbox.finished_among([item.key for _, items in planned for item in items]),
        )
        queued: list[OutboxItem] = []
        for event, items in planned:
            with structlog.contextvars.bound_contextvars(
                correlation_id=event.correlation_id,
                event_id=event.event_id,
                task_number=event.task_number,
                comment_id=event.comment_id,
            ):
                queued += self._to_queue(event, items, own=event.comment_id in own, gone_out=gone_out)
        stored = await self.outbox.enqueue_all(queued, finished_checked=True)
        for item in queued:
            log.info(
                "telegram_item_queued" if item.key in stored else "telegram_item_already_queued",
                key=item.key,
                correlation_id=item.correlation_id,
            )
        for chat_id in dict.fromkeys(item.chat_id for item in queued):
            self.wake(chat_id)

    async def _comment_items(self, event: PlanfixCommentChange) -> list[OutboxItem]:
        shown = _shown(event)
        username = self._telegram_username(shown.author.id) if shown else None
        groups = await self.directory.groups_for(event.task_number)
        return [
            _comment_item(event, chat_id, thread_id, username, self.texts_for(chat_id))
            for chat_id, thread_id in groups
        ]

    def _to_queue(
        self, event: PlanfixCommentChange, items: list[OutboxItem], *, own: bool, gone_out: set[str]
    ) -> list[OutboxItem]:
        shown = _shown(event)
        if own:
            log.info("own_comment_not_echoed")
            return []
        if shown and link_codes.code_in(shown.text_html):
            # A /link code is a secret until the binder spends it; nobody in a group needs it.
            log.info("link_code_comment_not_carried")
            return []
        if not items:
            log.info("unbound_task_not_relayed")
            return []
        for item in items:
            if item.key in gone_out:
                log.info("telegram_item_already_queued", key=item.key)
        return [item for item in items if item.key not in gone_out]

    async def _own_among(self, comments: list[PlanfixCommentAdded | PlanfixCommentUpdated]) -> set[int]:
        """Which of these comments the relay wrote. Two independent signs: the sourceId written on
        the comment (there even when the webhook beats our own record), and the record of the
        comment ids we created."""
        own = {
            comment.comment_id for comment in comments if written_by_bridge(comment, self.planfix_source_id)
        }
        unsure = [comment.comment_id for comment in comments if comment.comment_id not in own]
        return own | await self.own_comments.among(unsure)

    # --- binding decisions ------------------------------------------------------------------------

    async def announce_binding(self, event: BindingEvent | TaskCommandAnswered, delivery: Delivery) -> None:
        structlog.contextvars.bind_contextvars(chat_id=event.chat_id)
        if isinstance(event, TaskCommandAnswered):
            if self.task_life is not None:
                await self.task_life.on_command_answered(event)
            return
        if isinstance(event, BindingMoved):
            await self._items_follow(event.old_chat_id, event.chat_id)
            return
        if isinstance(event, BindingSuspended):
            return  # the bot is no longer in the group: nobody to tell
        kind, text = self._binding_notice(event, self.texts_for(event.chat_id, event))
        key = f"telegram-notice:{event.event_id}"
        task_number = getattr(event, "task_number", None)
        await self._enqueue(
            item_for(event, key, event.chat_id, event.thread_id, kind, text=text, task_number=task_number)
        )
        if isinstance(event, TaskBound) and self.task_life is not None:
            await self.task_life.on_bound(event)

    def _binding_notice(
        self,
        event: TaskBound
        | BindRejected
        | TaskUnbound
        | UnbindRejected
        | BindingResumed
        | GroupLanguageChosen
        | GroupLanguageRejected,
        t: Translator,
    ) -> tuple[TelegramMessageKind, str]:
        match event:
            case TaskBound():
                url = self.task_url(event.task_number)
                return TelegramMessageKind.BIND_CONFIRMATION, bound_notice(event, url, t)
            case BindRejected():
                return TelegramMessageKind.BIND_REJECTION, rejected_notice(event, t)
            case TaskUnbound():
                return TelegramMessageKind.UNBIND_CONFIRMATION, unbound_notice(event, t)
            case UnbindRejected():
                return TelegramMessageKind.BIND_REJECTION, unbind_rejected_notice(event, t)
            case GroupLanguageChosen():
                return TelegramMessageKind.BIND_CONFIRMATION, language_chosen_notice(event, t)
            case GroupLanguageRejected():
                return TelegramMessageKind.BIND_REJECTION, language_rejected_notice(event, t)
            case BindingResumed():
                url = self.task_url(event.task_number)
                return TelegramMessageKind.BINDING_RESUMED, resumed_notice(event, url, t)

    # --- the group as a whole ----------------------------------------------------------------------

    async def answer_group_event(self, event: TelegramGroupEvent, delivery: Delivery) -> None:
        structlog.contextvars.bind_contextvars(chat_id=event.chat_id)
        match event:
            case GroupCommandReceived():
                await self._answer_command(event)
            case AnonymousAdminPosted():
                await self._guide_anonymous_admin(event)
            case BotMembershipChanged():
                await self._greet(event)
            case ChatMigrated():
                await self._items_follow(event.old_chat_id, event.chat_id)

    async def _guide_anonymous_admin(self, event: AnonymousAdminPosted) -> None:
        """A command is answered with what to do; any other message gets the guidance, at most
        once per group in ``ANONYMOUS_GUIDANCE_EVERY_S`` (a quiet day, then again)."""
        kind = TelegramMessageKind.ANONYMOUS_ADMIN_GUIDANCE
        t = self.texts_for(event.chat_id)
        if event.command is not None:
            key = f"telegram-anonymous-answer:{event.event_id}"
            _, status = await self._status(event, t, bot_reads_all_messages=True)
            text = anonymous_command_answer(event.command, status=status, help_=help_text(None, t), t=t)
        else:
            key = f"telegram-anonymous-admin-guidance:{event.chat_id}:{event.event_id}"
            last = await self.outbox.last_sent_of_kind(event.chat_id, kind, besides=key)
            if last is not None and (event.occurred_at - last).total_seconds() < ANONYMOUS_GUIDANCE_EVERY_S:
                log.info("anonymous_admin_guided_lately", last=last.isoformat())
                return
            text = anonymous_admin_guidance(t)
        await self._reply(event, key, kind, text)

    async def _answer_command(self, event: GroupCommandReceived) -> None:
        t = self.texts_for(event.chat_id)
        if event.command is GroupCommand.LINK:
            text, kind = link_in_private_text(event.bot_username, t), TelegramMessageKind.HELP
        elif event.command is GroupCommand.STATUS:
            bound, text = await self._status(
                event, t, bot_reads_all_messages=event.bot_reads_all_messages, other_bots=event.other_bots
            )
            kind = TelegramMessageKind.STATUS
            card = None
            if bound is not None and self.task_life is not None:
                card = await self.task_life.card_text(bound.task_number, t)
            if card:
                text = f"{text}\n\n{card}"
        else:
            text, kind = help_text(event.bot_username, t), TelegramMessageKind.HELP
        await self._reply(event, f"telegram-answer:{event.event_id}", kind, text)

    async def _status(
        self,
        event: AnonymousAdminPosted | GroupCommandReceived,
        t: Translator,
        *,
        bot_reads_all_messages: bool,
        other_bots: Sequence[str] = (),
    ) -> tuple[BoundTask | None, str]:
        """The task bound where the command was written, and the /status text about it."""
        bound = await self.directory.task_for(event.chat_id, event.thread_id)
        return bound, status_text(
            bound,
            task_url=self.task_url(bound.task_number) if bound else "",
            in_topic=event.thread_id is not None,
            bot_reads_all_messages=bot_reads_all_messages,
            other_bots=other_bots,
            t=t,
        )

    async def _reply(
        self,
        event: AnonymousAdminPosted | GroupCommandReceived,
        key: str,
        kind: TelegramMessageKind,
        text: str,
    ) -> None:
        item = item_for(
            event, key, event.chat_id, event.thread_id, kind, text=text, reply_to_message_id=event.message_id
        )
        await self._enqueue(item)

    async def _greet(self, event: BotMembershipChanged) -> None:
        if not event.is_member:
            return  # removed: the binder suspends the binding; nobody to tell
        if event.left_unknown_group:
            return  # the gateway said why and left (TELEGRAM_LEAVE_UNKNOWN_GROUPS)
        await self.directory.catch_up()
        if self.directory.bindings_of(event.chat_id):
            return  # re-added to a bound group: the binder resumes it and that notice says so
        text = greeting_text(self.texts_for(event.chat_id))
        key = f"telegram-greeting:{event.event_id}"
        await self._enqueue(
            item_for(event, key, event.chat_id, None, TelegramMessageKind.GREETING, text=text)
        )

    # --- people --------------------------------------------------------------------------------

    async def tell_person(self, event: PersonEvent, delivery: Delivery) -> None:
        """In the person's private chat (its id is theirs): their /link code linked them, or why not."""
        # The person's Telegram language, as they asked for the code; else the default.
        t = translator(language_or_default(getattr(event, "language_code", None), self.language))
        if isinstance(event, PersonLinked) and event.how is PersonLinkMethod.LINK_CODE:
            text = linked_text(event.name, t)
        elif isinstance(event, PersonLinkRefused):
            text = refused_text(event.refusal, t)
        else:
            return  # found through the Planfix profile, or unlinked on the person's own word
        structlog.contextvars.bind_contextvars(telegram_user_id=event.telegram_user_id)
        key, chat_id = f"telegram-person:{event.event_id}", event.telegram_user_id
        await self._enqueue(item_for(event, key, chat_id, None, TelegramMessageKind.HELP, text=text))

    # --- shared -------------------------------------------------------------------------------------

    async def _items_follow(self, old_chat_id: int, chat_id: int) -> None:
        """The group has a new chat id (a supergroup now): what waits for it goes along."""
        moved = await self.outbox.move_chat(old_chat_id, chat_id)
        log.info("group_moved_items_follow", old_chat_id=old_chat_id, items=moved)
        self.wake(chat_id)

    async def _enqueue(self, item: OutboxItem, *, finished_checked: bool = False) -> None:
        stored = await self.outbox.enqueue(item, finished_checked=finished_checked)
        log.info("telegram_item_queued" if stored else "telegram_item_already_queued", key=item.key)
        self.wake(item.chat_id)


def _shown(event: PlanfixCommentChange) -> PlanfixCommentAdded | PlanfixCommentUpdated | None:
    """The comment as it reads now (None for a deletion)."""
    return event if isinstance(event, PlanfixCommentAdded | PlanfixCommentUpdated) else None


def _comment_item(
    event: PlanfixCommentChange,
    chat_id: int,
    thread_id: int | None,
    telegram_username: str | None,
    t: Translator,
) -> OutboxItem:
    """What the group gets for a comment change: the comment's text, an edit of what showed it,
    or its deletion; keyed by the comment (an edit: by the change) and the group."""
    where, comment = f"{chat_id}:{thread_id or 0}", planfix_comment_key(event.comment_id)
    match event:
        case PlanfixCommentAdded():
            key, action = f"telegram-message:{comment}:{where}", Action.SEND
        case PlanfixCommentUpdated():
            key, action = f"telegram-edit:{event.event_id}:{where}", Action.EDIT
        case _:
            key, action = f"telegram-delete:{comment}:{where}", Action.DELETE
    kind = TelegramMessageKind.PLANFIX_COMMENT
    item = item_for(
        event,
        key,
        chat_id,
        thread_id,
        kind,
        action=action,
        task_number=event.task_number,
        comment_id=event.comment_id,
    )
    if isinstance(event, PlanfixCommentAdded | PlanfixCommentUpdated):
        item.text = telegram_comment_text(event, telegram_username, t)
        item.short_caption = comment_author_line(event, telegram_username, t)
        # An edit names the files added in Planfix instead of sending them again (``revisions``).
        item.files = list(event.files)
    return item


class Handlers(Protocol):
    """What the relay's durable consumers hand their events to (``ToTelegram``)."""

    def announce_binding(self, event: Any, delivery: Delivery) -> Awaitable[None]: ...

    def answer_group_event(self, event: Any, delivery: Delivery) -> Awaitable[None]: ...

    def tell_person(self, event: Any, delivery: Delivery) -> Awaitable[None]: ...


def comment_changes(js: Any, handlers: ToTelegram, lease: Lease) -> OrderedBatches[PlanfixCommentChange]:
    """Added, updated and deleted comments through one consumer, in batches: a task's changes stay
    in order, and a burst costs the store a few round trips per batch, not per comment."""
    return OrderedBatches(
        js,
        RELAY_PLANFIX_COMMENT_CHANGES,
        get_args(PlanfixCommentChange),
        BatchHandlers(batch=handlers.carry_comment_changes, one=handlers.carry_comment_change),
        lease=lease,
    )


def router(handlers: Handlers) -> NatsRouter:
    """The relay's other durable consumers, each handing its events to ``handlers``."""
    nats_router = NatsRouter()
    consume_durably(
        nats_router,
        RELAY_BINDING_NOTICES,
        (*get_args(BindingEvent), TaskCommandAnswered),
        handlers.announce_binding,
    )
    consume_durably(
        nats_router, RELAY_GROUP_EVENTS, get_args(TelegramGroupEvent), handlers.answer_group_event
    )
    consume_durably(nats_router, RELAY_PEOPLE_NOTICES, get_args(PersonEvent), handlers.tell_person)
    task_life = getattr(handlers, "task_life", None)
    if task_life is not None:
        consume_durably(nats_router, RELAY_TASK_CHANGES, PlanfixTaskStateChanged, task_life.on_state_changed)
    return nats_router
