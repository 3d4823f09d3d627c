"""The durable consumers the services create, as ``contracts.subjects.CONSUMERS`` declares them.

``doctor`` checks these exist; ``trace`` and ``replay`` use them to say which service a message
goes to; the AsyncAPI document describes them. Nothing here imports a service.
"""

from __future__ import annotations

from typing import Any

from faststream.nats import NatsBroker

from bridge_lib.eventbus import consume_durably, jstream
from bridge_lib.health import ConsumerRef
from contracts.subjects import ALL_STREAMS, CONSUMERS, ConsumerSpec


async def _never_run(*_: Any) -> None:
    raise RuntimeError("these subscribers describe consumers; they never handle a message")


def _stream(consumer: ConsumerSpec) -> Any:
    return jstream(next(stream for stream in ALL_STREAMS if stream.name == consumer.stream))


def service_brokers() -> dict[str, NatsBroker]:
    """One unconnected broker per service that consumes, with a subscriber per durable consumer
    (the relay's batch readers are not FastStream subscribers; they are described alike)."""
    brokers: dict[str, NatsBroker] = {}
    for consumer in CONSUMERS:
        consume_durably(brokers.setdefault(consumer.service, NatsBroker()), consumer, (), _never_run)
    return brokers


def expected_consumers() -> dict[str, list[ConsumerRef]]:
    """Service name -> the durable consumers it creates."""
    found: dict[str, list[ConsumerRef]] = {}
    for consumer in CONSUMERS:
        found.setdefault(consumer.service, []).append(
            ConsumerRef(consumer.stream, consumer.durable, consumer.filter_subject)
        )
    return found


def consumer_owner(durable: str) -> str | None:
    return next((consumer.service for consumer in CONSUMERS if consumer.durable == durable), None)
