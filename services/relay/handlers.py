"""The relay's work: carry each event to the other side exactly once.

For every outbound call the same three steps: look up the effect record (done before? then
only republish the effect event), make the call, record it. The effect event's ``Nats-Msg-Id``
derives from the effect key, so republishing it is harmless.

If the process dies between a Planfix call and its record, the redelivered event first looks
for the comment by its ``sourceObjectId`` in the task, so Planfix still gets one comment.
Telegram has nothing to look up: the window for a duplicate there is one in-flight send.
"""

from __future__ import annotations

import structlog
from aiogram import Bot
from aiogram.exceptions import (
    TelegramBadRequest,
    TelegramForbiddenError,
    TelegramNetworkError,
    TelegramRetryAfter,
    TelegramServerError,
)

from bridge_lib.eventbus import Delivery, EventPublisher, PermanentFailure, TransientFailure
from bridge_lib.planfix import PlanfixAuthError, PlanfixClient, PlanfixRejected, PlanfixUnavailable
from contracts import subjects
from contracts.events import (
    BindRejected,
    Event,
    PlanfixCommentAdded,
    PlanfixCommentPosted,
    TaskBound,
    TelegramMessageKind,
    TelegramMessageReceived,
    TelegramMessageSent,
    envelope_after,
    planfix_comment_key,
)
from services.relay.directory import BindingDirectory
from services.relay.effects import EffectStore
from services.relay.formatting import (
    bound_notice,
    planfix_comment_html,
    rejected_notice,
    split_for_telegram,
    telegram_comment_text,
)

log = structlog.get_logger("relay")

# How far back to look for a comment lost in a crash (pages of 100).
_RECOVERY_PAGES = 5


class Relay:
    def __init__(
        self,
        *,
        directory: BindingDirectory,
        effects: EffectStore,
        planfix: PlanfixClient,
        bot: Bot,
        publisher: EventPublisher,
        planfix_source_id: str,
        planfix_web_url: str,
    ) -> None:
        self._directory = directory
        self._effects = effects
        self._planfix = planfix
        self._bot = bot
        self._publisher = publisher
        self._source_id = planfix_source_id
        self._web_url = planfix_web_url

    # --- Telegram -> Planfix ------------------------------------------------------------------

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
        await self._publish_effect(
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

    # --- Planfix -> Telegram ------------------------------------------------------------------

    async def carry_planfix_comment(self, comment: PlanfixCommentAdded, delivery: Delivery) -> None:
        structlog.contextvars.bind_contextvars(task_number=comment.task_number, comment_id=comment.comment_id)
        if await self._is_own_comment(comment):
            log.info("own_comment_not_echoed")
            return
        groups = await self._directory.groups_for(comment.task_number)
        if not groups:
            log.info("unbound_task_not_relayed")
            return
        text = telegram_comment_text(comment)
        for chat_id, thread_id in groups:
            effect_key = (
                f"telegram-message:{planfix_comment_key(comment.comment_id)}:{chat_id}:{thread_id or 0}"
            )
            await self._send_once(
                comment,
                effect_key,
                chat_id=chat_id,
                thread_id=thread_id,
                text=text,
                kind=TelegramMessageKind.PLANFIX_COMMENT,
                task_number=comment.task_number,
                comment_id=comment.comment_id,
            )

    async def _is_own_comment(self, comment: PlanfixCommentAdded) -> bool:
        # Two independent signs, no guessing from names: the sourceId/sourceObjectId the bridge
        # wrote on the comment (present even when the webhook beats our own record), and the
        # record of comment ids the bridge created.
        if comment.source_id == self._source_id or (comment.source_object_id or "").startswith("tg:"):
            return True
        return await self._effects.is_own_comment(comment.comment_id)

    # --- Binding notices ----------------------------------------------------------------------

    async def announce_binding(self, event: TaskBound | BindRejected, delivery: Delivery) -> None:
        structlog.contextvars.bind_contextvars(chat_id=event.chat_id)
        if isinstance(event, TaskBound):
            text = bound_notice(event, f"{self._web_url}task/{event.task_number}")
            kind = TelegramMessageKind.BIND_CONFIRMATION
        else:
            text = rejected_notice(event)
            kind = TelegramMessageKind.BIND_REJECTION
        await self._send_once(
            event,
            f"telegram-notice:{event.event_id}",
            chat_id=event.chat_id,
            thread_id=event.thread_id,
            text=text,
            kind=kind,
            task_number=event.task_number,
        )

    # --- shared -------------------------------------------------------------------------------

    async def _send_once(
        self,
        cause: Event,
        effect_key: str,
        *,
        chat_id: int,
        thread_id: int | None,
        text: str,
        kind: TelegramMessageKind,
        task_number: int | None = None,
        comment_id: int | None = None,
    ) -> None:
        record = await self._effects.get(effect_key)
        if record is not None:
            message_ids = [int(value) for value in record["message_ids"]]
        else:
            message_ids = await self._send(chat_id, thread_id, text)
            await self._effects.record(effect_key, message_ids=message_ids, chat_id=chat_id)
            log.info("telegram_message_sent", chat_id=chat_id, message_ids=message_ids, kind=str(kind))
        await self._publish_effect(
            TelegramMessageSent(
                **envelope_after(cause, effect_key),
                chat_id=chat_id,
                message_ids=message_ids,
                kind=kind,
                task_number=task_number,
                comment_id=comment_id,
                thread_id=thread_id,
            ),
            subject=subjects.telegram_message_sent(chat_id),
            effect_key=effect_key,
        )

    async def _send(self, chat_id: int, thread_id: int | None, text: str) -> list[int]:
        message_ids: list[int] = []
        try:
            for part in split_for_telegram(text):
                sent = await self._bot.send_message(chat_id=chat_id, text=part, message_thread_id=thread_id)
                message_ids.append(sent.message_id)
        except TelegramRetryAfter as error:
            raise TransientFailure(f"Telegram asks to wait {error.retry_after}s") from error
        except (TelegramNetworkError, TelegramServerError) as error:
            raise TransientFailure(f"Telegram unavailable: {error}") from error
        except (TelegramForbiddenError, TelegramBadRequest) as error:
            raise PermanentFailure(f"Telegram refused the message: {error}") from error
        return message_ids

    async def _publish_effect(self, event: Event, *, subject: str, effect_key: str) -> None:
        await self._publisher.publish(event, subject=subject, msg_id=f"effect:{effect_key}")
