"""How a handler stores the event it built from an update: ``await record(event, subject=..., key=...)``.

An update is confirmed to Telegram only after its event is stored, so a failed publish raises
out of the handler and the update comes again (``polling``, ``webhook``); a repeat is dropped by
its key (JetStream's ``Nats-Msg-Id``). Content stays out of the logs: ids, kinds and sizes only.
"""

from __future__ import annotations

import structlog
from aiogram.types import Message, MessageReactionUpdated, Update

from bridge_lib.eventbus import EventPublisher
from contracts.events import Envelope, Event, root_envelope

log = structlog.get_logger("telegram_gateway")


def envelope(update: Update, key: str) -> Envelope:
    """For an event an update starts: its id made from ``key``, caused by the update."""
    return envelope_for_update(update.update_id, key)


def envelope_for_update(update_id: int, key: str) -> Envelope:
    return root_envelope(key, caused_by=f"tg:update:{update_id}")


class AboutMessage(Envelope):
    """An event's envelope and the group message it is about."""

    chat_id: int
    message_id: int


def about_message(update: Update, message: Message | MessageReactionUpdated, key: str) -> AboutMessage:
    """For an event an update about one message starts (a message, its edit, a reaction)."""
    return AboutMessage(**envelope(update, key), chat_id=message.chat.id, message_id=message.message_id)


class Record:
    """Stores the handlers' events; they get it injected as ``record``."""

    def __init__(self, publisher: EventPublisher) -> None:
        self._publisher = publisher

    async def __call__(self, event: Event, *, subject: str, key: str, **shown: object) -> bool:
        """Store ``event`` on ``subject`` once per ``key``; False when it was stored before.
        ``shown``: what else the log line says about it."""
        about = {name: getattr(event, name) for name in ("chat_id", "message_id") if hasattr(event, name)}
        with structlog.contextvars.bound_contextvars(correlation_id=event.correlation_id, **about):
            stored = await self._publisher.publish(event, subject=subject, msg_id=key)
            log.info("telegram_event_stored", event_type=event.tag, duplicate=not stored, **shown)
        return stored
