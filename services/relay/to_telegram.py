"""Planfix -> Telegram: new task comments and binding decisions become messages in the group.

The same three steps as the other direction (effect record, call, record). Telegram has
nothing to look up afterwards: if the process dies between a send and its record, the send is
repeated, so the window for a duplicate is one in-flight send.
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
from contracts import subjects
from contracts.events import (
    BindRejected,
    Event,
    PlanfixCommentAdded,
    TaskBound,
    TelegramMessageKind,
    TelegramMessageSent,
    envelope_after,
    planfix_comment_key,
)
from services.relay.directory import BindingDirectory
from services.relay.effects import EffectStore, publish_effect
from services.relay.formatting import bound_notice, rejected_notice, split_for_telegram, telegram_comment_text

log = structlog.get_logger("relay.to_telegram")


class ToTelegram:
    def __init__(
        self,
        *,
        directory: BindingDirectory,
        effects: EffectStore,
        bot: Bot,
        publisher: EventPublisher,
        planfix_source_id: str,
        planfix_web_url: str,
    ) -> None:
        self._directory = directory
        self._effects = effects
        self._bot = bot
        self._publisher = publisher
        self._source_id = planfix_source_id
        self._web_url = planfix_web_url

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
        await publish_effect(
            self._publisher,
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
