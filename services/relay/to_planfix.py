"""Telegram -> Planfix: each group message becomes one comment in the bound task.

For every outbound call the same three steps: look up the effect record (done before? then
only republish the effect event), make the call, record it. If the process dies between the
Planfix call and its record, the redelivered event first looks for the comment by its
``sourceObjectId`` in the task, so Planfix still gets exactly one comment.
"""

from __future__ import annotations

import structlog

from bridge_lib.eventbus import Delivery, EventPublisher, PermanentFailure, TransientFailure
from bridge_lib.planfix import PlanfixAuthError, PlanfixClient, PlanfixRejected, PlanfixUnavailable
from contracts import subjects
from contracts.events import PlanfixCommentPosted, TelegramMessageReceived, envelope_after
from services.relay.directory import BindingDirectory
from services.relay.effects import EffectStore, publish_effect
from services.relay.formatting import planfix_comment_html

log = structlog.get_logger("relay.to_planfix")

# How far back to look for a comment lost in a crash (pages of 100).
_RECOVERY_PAGES = 5


class ToPlanfix:
    def __init__(
        self,
        *,
        directory: BindingDirectory,
        effects: EffectStore,
        planfix: PlanfixClient,
        publisher: EventPublisher,
        planfix_source_id: str,
    ) -> None:
        self._directory = directory
        self._effects = effects
        self._planfix = planfix
        self._publisher = publisher
        self._source_id = planfix_source_id

    async def carry_telegram_message(self, message: TelegramMessageReceived, delivery: Delivery) -> None:
        structlog.contextvars.bind_contextvars(chat_id=message.chat_id)
        bound = await self._directory.task_for(message.chat_id, message.thread_id)
        if bound is None:
            log.info("unbound_group_not_relayed")
            return
        structlog.contextvars.bind_contextvars(task_number=bound.task_number)
        source_object_id = message.source_key
        effect_key = f"planfix-comment:{source_object_id}"
        record = await self._effects.get(effect_key)
        if record is not None:
            comment_id = int(record["comment_id"])
        else:
            comment_id = await self._post_comment_once(bound.task_number, message, delivery)
            await self._effects.remember_own_comment(
                comment_id, task_number=bound.task_number, source_object_id=source_object_id
            )
            await self._effects.record(effect_key, comment_id=comment_id, task_number=bound.task_number)
            log.info("comment_posted", comment_id=comment_id)
        await publish_effect(
            self._publisher,
            PlanfixCommentPosted(
                **envelope_after(message, effect_key),
                task_number=bound.task_number,
                comment_id=comment_id,
                source_object_id=source_object_id,
                chat_id=message.chat_id,
                message_id=message.message_id,
            ),
            subject=subjects.planfix_comment_posted(bound.task_number),
            effect_key=effect_key,
        )

    async def _post_comment_once(
        self, task_number: int, message: TelegramMessageReceived, delivery: Delivery
    ) -> int:
        try:
            if delivery.is_redelivery:
                found = await self._find_comment(task_number, message.source_key)
                if found is not None:
                    log.info("comment_found_after_crash", comment_id=found)
                    return found
            return await self._planfix.add_comment(
                task_number=task_number,
                description_html=planfix_comment_html(message),
                source_id=self._source_id,
                source_object_id=message.source_key,
            )
        except (PlanfixUnavailable, PlanfixAuthError) as error:
            # An auth error is an operator's fix (a new token); keep the message until then.
            raise TransientFailure(str(error)) from error
        except PlanfixRejected as error:
            raise PermanentFailure(f"Planfix refused the comment: {error}") from error

    async def _find_comment(self, task_number: int, source_object_id: str) -> int | None:
        for page in range(_RECOVERY_PAGES):
            comments = await self._planfix.list_comments(
                task_number, source_id=self._source_id, offset=page * 100, page_size=100
            )
            for comment in comments:
                if comment.source_object_id == source_object_id:
                    return comment.id
            if len(comments) < 100:
                break
        return None
