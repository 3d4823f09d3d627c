"""What both wings are built with: the relay's connections and the folds it follows, opened once
by ``app.py`` and handed to ``to_planfix.build`` and ``to_telegram.build`` as one value."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aiogram import Bot
from motor.motor_asyncio import AsyncIOMotorDatabase

from bridge_lib.eventbus import EventPublisher
from bridge_lib.people_directory import PeopleDirectory
from bridge_lib.planfix import PlanfixClient
from services.relay.directory import BindingDirectory


@dataclass(frozen=True, kw_only=True, eq=False)
class Shared:
    database: AsyncIOMotorDatabase[Any]
    bot: Bot
    planfix: PlanfixClient
    publisher: EventPublisher
    # Followed from their streams (started and stopped by ``app.py``).
    directory: BindingDirectory
    people: PeopleDirectory
