"""The services' MongoDB client, with each command it sends counted by kind
(``bridge_store_operations_total``): what the store costs per message, read from ``/metrics``."""

from __future__ import annotations

from typing import Any

from motor.motor_asyncio import AsyncIOMotorClient
from prometheus_client import Counter
from pymongo import monitoring

STORE_OPERATIONS = Counter(
    "bridge_store_operations",
    "Commands sent to MongoDB, by command (find, insert, update, ...)",
    ["command"],
)


class _CountedCommands(monitoring.CommandListener):
    # Counted when sent: a command that fails cost a round trip too.
    def started(self, event: monitoring.CommandStartedEvent) -> None:
        STORE_OPERATIONS.labels(event.command_name).inc()

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


def store_client(url: str) -> AsyncIOMotorClient[dict[str, Any]]:
    return AsyncIOMotorClient(
        url, serverSelectionTimeoutMS=10_000, tz_aware=True, event_listeners=[_CountedCommands()]
    )
