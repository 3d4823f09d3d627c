"""Wait out a JetStream that is not ready yet, at start-up (streams, buckets, consumers).

A NATS cluster that has just started (or lost a node) answers JetStream API requests for a few
seconds with timeouts, "no responders", 503 "JetStream system temporarily unavailable", 503
"insufficient resources" or 400 "no suitable peers for placement", until its meta leader is
elected and the peers know each other. Those answers are retried here with backoff (stamina)
up to a deadline (``NATS_STARTUP_TIMEOUT_S``), each wait logged; anything else (a bad stream
config, replicas > 1 on a single server) fails at once. After the deadline the service stops
with ``JetStreamNotReady`` naming what it was doing and the last answer.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import nats.errors
import nats.js.errors
import stamina
import structlog

log = structlog.get_logger("jetstream")
T = TypeVar("T")

# JetStream error codes (nats-server's jetstream_errors_generated.go) that a forming or
# changing cluster gives and that clear by themselves. Several are HTTP 400/500, so the HTTP
# code alone cannot tell them apart from a real mistake.
TRANSIENT_ERROR_CODES = frozenset(
    {
        10004,  # JSClusterIncompleteErr: incomplete results
        10005,  # JSClusterNoPeersErrF: no suitable peers for placement (peers not known yet)
        10007,  # JSClusterNotAssignedErr: JetStream cluster not assigned to this server
        10008,  # JSClusterNotAvailErr: JetStream system temporarily unavailable
        10009,  # JSClusterNotLeaderErr: JetStream cluster can not handle request
        10023,  # JSInsufficientResourcesErr: insufficient resources (peers not reporting yet)
        10119,  # JSConsumerOfflineErr: consumer is offline
        10202,  # JSClusterServerMemberChangeInflightErr: cluster member change is in progress
    }
)
# Older servers, or errors passed on without a code: the same conditions by their words.
TRANSIENT_DESCRIPTIONS = ("temporarily unavailable", "no suitable peers", "insufficient resources", "leader")
TRANSIENT_CLIENT_ERRORS: tuple[type[Exception], ...] = (
    nats.errors.TimeoutError,  # the API request got no answer in time (meta leader election)
    nats.errors.NoRespondersError,  # JetStream not enabled yet on the server we reached
    nats.errors.ConnectionClosedError,
    nats.errors.ConnectionReconnectingError,
    nats.errors.StaleConnectionError,
)


class JetStreamNotReady(Exception):
    """JetStream kept refusing a start-up request until the deadline."""


def is_transient(error: BaseException) -> bool:
    """True for the answers of a JetStream that is still forming (see the module docstring)."""
    if isinstance(error, TRANSIENT_CLIENT_ERRORS):
        return True
    if isinstance(error, nats.js.errors.ServiceUnavailableError):
        return True
    if isinstance(error, nats.js.errors.APIError):
        if error.err_code in TRANSIENT_ERROR_CODES:
            return True
        description = (error.description or "").lower()
        return error.err_code is None and any(words in description for words in TRANSIENT_DESCRIPTIONS)
    return False


def describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}".rstrip(": ")


async def when_jetstream_ready(
    what: str, call: Callable[[], Awaitable[T]], *, timeout_s: float, since: float | None = None
) -> T:
    """``call()``, repeated with backoff while JetStream answers that it is not ready yet.

    ``what`` names the request in the log lines ("stream TELEGRAM"). Raises
    ``JetStreamNotReady`` once ``timeout_s`` have passed since ``since`` (a ``time.monotonic()``
    reading shared by several calls; now by default); a non-transient error at once.
    """
    started = time.monotonic() if since is None else since
    last_error: list[BaseException] = []

    def retry_or_stop(error: Exception) -> bool:
        if not is_transient(error):
            return False
        last_error[:] = [error]
        waited_s = time.monotonic() - started
        if waited_s >= timeout_s:
            return False
        log.warning(
            "jetstream_not_ready",
            what=what,
            error=describe(error),
            waited_s=round(waited_s, 1),
            gives_up_after_s=timeout_s,
            why="a NATS cluster that is starting (electing its leader) answers like this for a few seconds",
        )
        return True

    try:
        async for attempt in stamina.retry_context(
            on=retry_or_stop, attempts=None, timeout=None, wait_initial=0.5, wait_max=5.0, wait_jitter=0.5
        ):
            with attempt:
                return await call()
    except Exception as error:
        if last_error and error is last_error[0]:
            raise JetStreamNotReady(
                f"JetStream did not accept {what} within {timeout_s:g} s "
                f"(NATS_STARTUP_TIMEOUT_S); its last answer: {describe(error)}"
            ) from error
        raise
    raise AssertionError("unreachable: stamina re-raises the last error")  # pragma: no cover
