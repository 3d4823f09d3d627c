"""The durable consumers the services create, read off their FastStream routers.

Importing the routers is cheap (no connection is made), and it keeps one source of truth: the
subscriber decorators in the services. ``doctor`` checks these exist; ``trace`` and ``replay``
use them to say which service a message goes to.
"""

from __future__ import annotations

from faststream.nats import NatsBroker

from bridge_lib.health import ConsumerRef, durable_consumers


def service_brokers() -> dict[str, NatsBroker]:
    """One unconnected broker per service that consumes, with the service's routers included."""
    from services.binder.app import router as binder_router
    from services.planfix_gateway.fetcher import router as fetcher_router
    from services.relay.app import CONSUMERS_ROUTER as relay_router

    brokers: dict[str, NatsBroker] = {}
    for service, router in (
        ("planfix_gateway", fetcher_router),
        ("binder", binder_router),
        ("relay", relay_router),
    ):
        broker = NatsBroker()
        broker.include_router(router)
        brokers[service] = broker
    return brokers


def expected_consumers() -> dict[str, list[ConsumerRef]]:
    """Service name -> the durable consumers it creates (routers, plus the relay's own batch reader)."""
    from services.relay.app import INBOUND_CONSUMER

    found = {service: durable_consumers(broker) for service, broker in service_brokers().items()}
    found["relay"].append(INBOUND_CONSUMER)
    return found


def consumer_owner(durable: str) -> str | None:
    for service, consumers in expected_consumers().items():
        if any(consumer.durable == durable for consumer in consumers):
            return service
    return None
