"""The small HTTP server every service runs for its operators: /healthz, /readyz and /metrics.

* ``/healthz``: the process and its event loop are alive (always 200 while they are).
* ``/readyz``: 200 only when the service can do its work: connected to NATS, each of its
  durable consumers exists in JetStream, and its store (MongoDB) answers a ping where it has one.
  503 otherwise, with a JSON body naming each check and what failed.
* ``/metrics``: Prometheus text format from the default registry (``bridge_lib.metrics``).

A background task polls each durable consumer's lag from JetStream every few seconds, so the
lag gauges move even when no message is handled. The consumers are read off the broker's
subscribers, so a service wires this in with one call and lists nothing.

If the port is taken the service keeps running without these endpoints and logs why: the bridge
does its job either way, and a failing healthcheck then makes the problem visible.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, ParamSpec

import msgspec
import structlog
from aiohttp import web
from faststream.nats import NatsBroker
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from bridge_lib import metrics
from bridge_lib.cancel import cancelled
from contracts.subjects import ConsumerSpec

log = structlog.get_logger("health")

CHECK_TIMEOUT_S = 2.0
LAG_POLL_INTERVAL_S = 5.0

Check = Callable[[], Awaitable[None]]


class ConsumerRef(msgspec.Struct, frozen=True):
    stream: str
    durable: str
    filter_subject: str


def consumer_ref(consumer: ConsumerSpec) -> ConsumerRef:
    return ConsumerRef(consumer.stream, consumer.durable, consumer.filter_subject)


def durable_consumers(broker: NatsBroker) -> list[ConsumerRef]:
    """The durable JetStream consumers the broker's subscribers use."""
    found: list[ConsumerRef] = []
    for subscriber in broker.subscribers:
        stream = getattr(subscriber, "stream", None)
        config = getattr(subscriber, "config", None)
        durable = getattr(config, "durable_name", None)
        # FastStream keeps the filter as an Address; broker_address is the NATS subject itself.
        address = getattr(subscriber, "subject", None)
        subject = str(getattr(address, "broker_address", address or ""))
        if stream is not None and durable:
            found.append(ConsumerRef(stream.name, durable, subject))
    return found


def mongo_ping(client: Any) -> Check:
    """A readiness check for a motor client: the server answers ``ping``."""

    async def ping() -> None:
        await client.admin.command("ping")

    return ping


class HealthServer:
    def __init__(
        self,
        *,
        service: str,
        broker: NatsBroker,
        host: str,
        port: int,
        checks: Mapping[str, Check] | None = None,
        extra_consumers: Sequence[ConsumerRef] = (),
    ) -> None:
        self._service = service
        # Durable consumers the service reads without a FastStream subscriber (its own loops).
        self._extra_consumers = list(extra_consumers)
        self._broker = broker
        self._host = host
        self._port = port
        self._checks = dict(checks or {})
        self._runner: web.AppRunner | None = None
        self._poller: asyncio.Task[None] | None = None

    def _consumers(self) -> list[ConsumerRef]:
        # Each once: a service may name a consumer before its subscriber is included.
        return list(dict.fromkeys([*durable_consumers(self._broker), *self._extra_consumers]))

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        app.router.add_get("/metrics", self._metrics)
        return app

    async def start(self) -> None:
        if self._port <= 0:
            log.info("health_server_disabled")
            return
        runner = web.AppRunner(self.app(), access_log=None)
        await runner.setup()
        try:
            await web.TCPSite(runner, self._host, self._port).start()
        except OSError as error:
            await runner.cleanup()
            log.error(
                "health_server_not_started",
                host=self._host,
                port=self._port,
                error=str(error),
                hint="another process uses this port; set the service's *_HEALTH_PORT",
            )
            return
        self._runner = runner
        self._poller = asyncio.create_task(self._poll_lag())
        log.info("health_server_started", host=self._host, port=self._port)

    async def stop(self) -> None:
        await cancelled(self._poller)
        if self._runner is not None:
            await self._runner.cleanup()

    # --- endpoints ------------------------------------------------------------------------

    async def _healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"service": self._service, "alive": True})

    async def _readyz(self, request: web.Request) -> web.Response:
        results = await self.readiness()
        ready = all(problem is None for problem in results.values())
        body = {
            "service": self._service,
            "ready": ready,
            "checks": {name: problem or "ok" for name, problem in results.items()},
        }
        return web.json_response(body, status=200 if ready else 503)

    async def _metrics(self, request: web.Request) -> web.Response:
        response = web.Response(body=generate_latest())
        response.headers["Content-Type"] = CONTENT_TYPE_LATEST
        return response

    # --- checks ---------------------------------------------------------------------------

    async def readiness(self) -> dict[str, str | None]:
        """Each check's problem, or None when it passed."""
        results: dict[str, str | None] = {"nats": self._nats_problem()}
        for consumer in self._consumers():
            name = f"consumer:{consumer.durable}"
            results[name] = (
                "NATS not connected" if results["nats"] else await self._consumer_problem(consumer)
            )
        for name, check in self._checks.items():
            results[name] = await _problem_of(check)
        return results

    def _nats_problem(self) -> str | None:
        try:
            connection = self._broker.connection
        except Exception:  # FastStream raises while not connected yet
            return "not connected yet"
        if connection is None or not connection.is_connected:
            return "not connected (reconnecting)"
        return None

    async def _consumer_problem(self, consumer: ConsumerRef) -> str | None:
        async def bound() -> None:
            await self._broker.connection.jetstream().consumer_info(consumer.stream, consumer.durable)

        return await _problem_of(bound)

    async def _poll_lag(self) -> None:
        while True:
            if self._nats_problem() is None:
                js = self._broker.connection.jetstream()
                for consumer in self._consumers():
                    try:
                        async with asyncio.timeout(CHECK_TIMEOUT_S):
                            info = await js.consumer_info(consumer.stream, consumer.durable)
                    except Exception:  # not there yet, or NATS went away: try next round
                        continue
                    labels = (consumer.stream, consumer.durable)
                    metrics.CONSUMER_PENDING.labels(*labels).set(info.num_pending or 0)
                    metrics.CONSUMER_ACK_PENDING.labels(*labels).set(info.num_ack_pending or 0)
                    metrics.CONSUMER_REDELIVERED.labels(*labels).set(info.num_redelivered or 0)
            await asyncio.sleep(LAG_POLL_INTERVAL_S)


async def _problem_of(check: Check) -> str | None:
    try:
        async with asyncio.timeout(CHECK_TIMEOUT_S):
            await check()
    except TimeoutError:
        return f"no answer within {CHECK_TIMEOUT_S:g}s"
    except Exception as error:
        return f"{type(error).__name__}: {error}"[:300]
    return None


P = ParamSpec("P")


def _started(server_of: Callable[P, HealthServer]) -> Callable[P, Awaitable[HealthServer]]:
    async def start(*args: P.args, **kwargs: P.kwargs) -> HealthServer:
        server = server_of(*args, **kwargs)
        await server.start()
        return server

    return start


# Takes HealthServer's arguments: the server started (or why not logged); ``stop()`` it on the way out.
start_health_server = _started(HealthServer)
