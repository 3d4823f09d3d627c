"""The binder's side of a group's life-cycle: bindings follow the bot and the chat id.

* the bot removed or kicked from a group -> each of its bindings ``BindingSuspended`` (kept,
  nothing carried); the bot added again -> ``BindingResumed``;
* the group became a supergroup (new chat id) -> each binding moved to the new id,
  ``BindingMoved``. If the new supergroup was bound on its own already, that binding wins.

Plan first, then act: the bindings a change touches are stored under the event's id before
anything is changed or published, so a redelivery after a crash finishes the same plan and
publishes the same events (ids derived from the cause; JetStream drops repeats).
"""

from __future__ import annotations

import structlog

from bridge_lib.eventbus import Delivery, EventPublisher
from contracts import subjects
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
from services.binder.store import BindingStore, GroupChange, group_key

log = structlog.get_logger("binder.group_life")


class GroupLife:
    def __init__(self, *, store: BindingStore, publisher: EventPublisher) -> None:
        self._store = store
        self._publisher = publisher

    async def handle_group_event(self, event: TelegramGroupEvent, delivery: Delivery) -> None:
        structlog.contextvars.bind_contextvars(chat_id=event.chat_id)
        if isinstance(event, BotMembershipChanged):
            await self._membership_changed(event)
        elif isinstance(event, ChatMigrated):
            await self._migrated(event)
        # Commands and anonymous admins are the relay's business.

    async def _membership_changed(self, event: BotMembershipChanged) -> None:
        change = await self._store.change_for(event.event_id)
        if change is None:
            bindings = await self._store.bindings_of_chat(event.chat_id)
            touched = [b for b in bindings if b.suspended == event.is_member]
            change = GroupChange(key=event.event_id, bindings=touched)
            await self._store.save_change(change)
        for binding in change.bindings:
            await self._store.set_suspended(binding.group_key, not event.is_member)
            key = derived_key(event, f"{'resumed' if event.is_member else 'suspended'}:{binding.group_key}")
            if event.is_member:
                published: BindingResumed | BindingSuspended = BindingResumed(
                    **envelope_after(event, key),
                    chat_id=binding.chat_id,
                    thread_id=binding.thread_id,
                    task_number=binding.task_number,
                    task_title=binding.task_title,
                )
                subject = subjects.binding_resumed(binding.chat_id)
            else:
                published = BindingSuspended(
                    **envelope_after(event, key),
                    chat_id=binding.chat_id,
                    thread_id=binding.thread_id,
                    task_number=binding.task_number,
                )
                subject = subjects.binding_suspended(binding.chat_id)
            await self._publisher.publish(published, subject=subject, msg_id=key)
            log.info(
                "binding_resumed" if event.is_member else "binding_suspended", task_number=binding.task_number
            )

    async def _migrated(self, event: ChatMigrated) -> None:
        change = await self._store.change_for(event.event_id)
        if change is None:
            bindings = await self._store.bindings_of_chat(event.old_chat_id)
            change = GroupChange(key=event.event_id, bindings=bindings)
            await self._store.save_change(change)
        for binding in change.bindings:
            target = group_key(event.chat_id, binding.thread_id)
            if await self._store.binding_for(binding.group_key) is not None:
                if await self._store.binding_for(target) is not None:
                    # The new supergroup was bound on its own already: that binding wins.
                    log.warning("migrated_binding_dropped_new_chat_bound", task_number=binding.task_number)
                    await self._store.unbind(binding.group_key)
                    continue
                await self._store.move(binding, event.chat_id)
            key = derived_key(event, f"moved:{binding.group_key}")
            await self._publisher.publish(
                BindingMoved(
                    **envelope_after(event, key),
                    old_chat_id=event.old_chat_id,
                    chat_id=event.chat_id,
                    thread_id=binding.thread_id,
                    task_number=binding.task_number,
                    task_title=binding.task_title,
                ),
                subject=subjects.binding_moved(event.chat_id),
                msg_id=key,
            )
            log.info("binding_moved", task_number=binding.task_number, new_chat_id=event.chat_id)
