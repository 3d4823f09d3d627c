"""What both wings share about the relay's effects: how one is announced, and which Planfix
comments the relay wrote itself (so the Planfix -> Telegram wing never echoes them back).

``to_planfix.ledger`` is the one writer of ``comment_ledger_leads``; a lead ``pf:comment:<id>``
means the relay posted that comment.
"""

from __future__ import annotations

from typing import Any

from motor.motor_asyncio import AsyncIOMotorDatabase

from bridge_lib.eventbus import EventPublisher
from contracts.events import Event, planfix_comment_key

COMMENT_LEADS = "comment_ledger_leads"


class OwnComments:
    def __init__(self, database: AsyncIOMotorDatabase[Any]) -> None:
        self._leads = database[COMMENT_LEADS]

    async def includes(self, comment_id: int) -> bool:
        return await self._leads.find_one({"_id": planfix_comment_key(comment_id)}, {"_id": 1}) is not None


async def publish_effect(publisher: EventPublisher, event: Event, *, subject: str, effect_key: str) -> None:
    """Publish the record of an effect; its id derives from the effect key, so a repeat is dropped."""
    await publisher.publish(event, subject=subject, msg_id=effect_msg_id(effect_key))


def effect_msg_id(effect_key: str) -> str:
    return f"effect:{effect_key}"
