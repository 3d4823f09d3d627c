"""Process life-cycle shared by the services: run until SIGTERM/SIGINT, then stop in order."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import signal
from collections.abc import Callable, Coroutine, Mapping, Sequence
from typing import Any, Protocol, TypeVar

import structlog
from faststream.nats import NatsBroker

from bridge_lib.eventbus import make_broker
from bridge_lib.health import Check, ConsumerRef, HealthServer, start_health_server
from bridge_lib.heap_trim import trim_heap_periodically
from bridge_lib.jetstream_ready import JetStreamNotReady
from bridge_lib.logging import configure_logging
from bridge_lib.settings import BridgeSettings, load_settings

log = structlog.get_logger("runtime")
EXIT_FAILED = 1


async def wait_for_stop_signal() -> None:
    """Return when the process gets SIGTERM or SIGINT (Ctrl-C)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    # The handlers stay installed: a second signal during the orderly stop (Ctrl-C pressed
    # twice, or a supervisor's SIGTERM after the terminal's SIGINT) must not interrupt it.
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


def freeze_startup_heap() -> None:
    """Call once a service has started: what it built so far is left out of garbage collections.

    A full collection walks every tracked object with the event loop stopped, which showed as the
    tail of the message latency. What start-up built (modules, types, clients) lives as long as
    the process; frozen, a collection walks only what was made since. Start-up garbage is
    collected first, not frozen.
    """
    gc.collect()
    gc.freeze()


def run_service(main: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """Entry point body for ``__main__``: run ``main`` and exit 0 after a clean stop.

    JetStream still refusing the streams or consumers after ``NATS_STARTUP_TIMEOUT_S`` ends the
    process with exit 1 and one plain line (no traceback): the orchestrator restarts it.
    """
    try:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(main())
    except JetStreamNotReady as error:
        log_startup_failed(error)
        raise SystemExit(EXIT_FAILED) from None


Settings = TypeVar("Settings", bound=BridgeSettings)


def serve(
    service: str, settings_class: type[Settings], run: Callable[[Settings], Coroutine[Any, Any, None]]
) -> None:
    """A service's ``__main__`` after its imports are tuned: its settings (or exit naming the bad
    ones), its logging, then ``run`` until stopped."""
    settings = load_settings(settings_class, service)
    configure_logging(service, settings.log_level)
    run_service(lambda: _with_heap_trim(run(settings), settings.heap_trim_interval_s))


async def _with_heap_trim(main: Coroutine[Any, Any, None], interval_s: float) -> None:
    if not interval_s:
        await main
        return
    trimming = asyncio.create_task(trim_heap_periodically(interval_s), name="heap-trim")
    try:
        await main
    finally:
        trimming.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await trimming


class BrokerSettings(Protocol):
    """What a service's settings say about its NATS connection and its health server."""

    nats_url: str
    retry_max_delay_s: float
    health_host: str
    health_port: int

    def nats_connect_options(self) -> dict[str, Any]: ...


async def broker_and_health(
    service: str,
    settings: BrokerSettings,
    *,
    checks: Mapping[str, Check] | None = None,
    extra_consumers: Sequence[ConsumerRef] = (),
) -> tuple[NatsBroker, HealthServer]:
    """The service's broker, not connected yet, and its health server, started: /healthz
    answers (not ready) while the service connects and waits for JetStream."""
    broker = make_broker(
        settings.nats_url,
        name=service,
        retry_max_delay_s=settings.retry_max_delay_s,
        **settings.nats_connect_options(),
    )
    health = await start_health_server(
        service=service,
        broker=broker,
        host=settings.health_host,
        port=settings.health_port,
        checks=checks,
        extra_consumers=extra_consumers,
    )
    return broker, health


def log_startup_failed(error: JetStreamNotReady) -> None:
    log.error(
        "startup_failed",
        reason=str(error),
        hint="check that every NATS node is up and reachable (NATS_URL) and that the cluster has "
        "a quorum; NATS_STARTUP_TIMEOUT_S sets how long start-up waits",
    )
