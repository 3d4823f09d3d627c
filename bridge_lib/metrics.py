"""The Prometheus metrics every service exports (official ``prometheus_client``, default registry).

Instrumented centrally, so handlers stay free of metric calls:

* ``eventbus.consume`` counts events in (per consumer, event type and outcome), retries, dead
  letters, and times each handling;
* ``EventPublisher.publish`` counts events out (per event type, stored or duplicate);
* the Planfix HTTP transport below and the aiogram session middleware in ``bridge_lib.telegram``
  count outbound calls by target, operation and result, and the Planfix transport keeps the
  daily request budget that Planfix reports in ``X-RateLimit-Remaining``;
* ``health.HealthServer`` polls consumer lag from JetStream.

Label values are bounded: event tags, durable consumer names, API method names with numbers
replaced by ``{id}``; never a chat id, a task number or a token.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from typing import Any

import httpx
from prometheus_client import Counter, Gauge, Histogram

from bridge_lib.aiohttp_transport import Answer, Exchanging

# Handling takes milliseconds when everything is local and up to the Planfix timeout (15 s) when
# it is slow; end-to-end age spans minutes during an outage.
_HANDLING_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_AGE_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0)

EVENTS_IN = Counter(
    "bridge_events_consumed",
    "Events a consumer handled, by outcome (ok, retry, dead_lettered, skipped)",
    ["consumer", "event_type", "outcome"],
)
EVENTS_OUT = Counter(
    "bridge_events_published",
    "Events published, by whether the stream stored them or dropped a duplicate",
    ["event_type", "result"],
)
RETRIES = Counter(
    "bridge_event_retries",
    "Deliveries handed back for a later retry (transient failure or handler crash)",
    ["consumer", "reason"],
)
DEAD_LETTERS = Counter(
    "bridge_dead_letters",
    "Messages a consumer gave up on and stored in the DEADLETTER stream",
    ["consumer", "reason"],
)
CONSUMER_OUTAGE_SECONDS = Gauge(
    "bridge_consumer_outage_seconds",
    "How long the consumer's current message has been waiting for Planfix, Telegram, NATS or the "
    "store to come back (0: not waiting); an alert, since such a message is never given up on",
    ["consumer"],
)
HANDLING_SECONDS = Histogram(
    "bridge_event_handling_seconds",
    "Time one handler took for one delivery",
    ["consumer", "event_type"],
    buckets=_HANDLING_BUCKETS,
)
EVENT_AGE_SECONDS = Histogram(
    "bridge_event_age_seconds",
    "From the event's occurred_at to the end of its successful handling (end-to-end delay)",
    ["consumer", "event_type"],
    buckets=_AGE_BUCKETS,
)
OUTBOUND_CALLS = Counter(
    "bridge_outbound_calls",
    "Calls to Planfix and Telegram, by result (ok, client_error, server_error, throttled, network_error)",
    ["target", "operation", "result"],
)
OUTBOUND_SECONDS = Histogram(
    "bridge_outbound_call_seconds",
    "Duration of calls to Planfix and Telegram",
    ["target", "operation"],
    buckets=_HANDLING_BUCKETS,
)
CONSUMER_PENDING = Gauge(
    "bridge_consumer_pending_messages",
    "Messages in the stream the consumer has not been given yet (its lag)",
    ["stream", "consumer"],
)
CONSUMER_ACK_PENDING = Gauge(
    "bridge_consumer_ack_pending_messages",
    "Messages given to the consumer and not yet acknowledged (in flight or waiting for a retry)",
    ["stream", "consumer"],
)
CONSUMER_REDELIVERED = Gauge(
    "bridge_consumer_redelivered_messages",
    "Messages the consumer has been given more than once and not yet acknowledged",
    ["stream", "consumer"],
)
PLANFIX_COMMENTS_RECONCILED = Counter(
    "bridge_planfix_comments_reconciled",
    "Planfix comments no webhook announced, found and carried by reconciliation (webhooks broken?)",
)
PLANFIX_TASK_CHANGES_RECONCILED = Counter(
    "bridge_planfix_task_changes_reconciled",
    "Planfix task changes no scenario notice announced, found by reconciliation (task scenario off?)",
)
PLANFIX_BUDGET = Gauge(
    "bridge_planfix_daily_budget_remaining",
    "Planfix REST requests left today, as Planfix last reported it (NaN until known)",
)
PLANFIX_BUDGET.set(float("nan"))

_NUMBER = re.compile(r"\d+")


def operation_name(method: str, path: str) -> str:
    """``POST task/{id}/comments/``: numbers out, so one task does not make one time series."""
    path = path.split("/rest/", 1)[-1].strip("/")
    return f"{method} {_NUMBER.sub('{id}', path)}"


def http_result(status: int) -> str:
    if status == 429:
        return "throttled"
    if status >= 500:
        return "server_error"
    if status >= 400:
        return "client_error"
    return "ok"


class PlanfixCallMetrics(httpx.AsyncBaseTransport):
    """Wraps the transport of the Planfix client: counts each call and notes the daily budget."""

    def __init__(self, inner: httpx.AsyncBaseTransport | None = None) -> None:
        self._inner = inner or httpx.AsyncHTTPTransport()
        # Whether ``exchange`` may be used (the inner transport has it); asked once, as a
        # protocol check is slow.
        self.exchanging = isinstance(self._inner, Exchanging)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        operation = operation_name(request.method, request.url.path)
        started = time.perf_counter()
        try:
            response = await self._inner.handle_async_request(request)
        except httpx.TransportError:
            OUTBOUND_CALLS.labels("planfix", operation, "network_error").inc()
            raise
        finally:
            OUTBOUND_SECONDS.labels("planfix", operation).observe(time.perf_counter() - started)
        self._counted(operation, response.status_code, response.headers)
        return response

    async def exchange(
        self,
        method: str,
        url: str,
        *,
        path: str,
        headers: Mapping[str, str],
        body: bytes | None,
        timeouts: Mapping[str, float | None],
    ) -> Answer:
        """``handle_async_request``'s counting around the inner transport's ``exchange``."""
        assert isinstance(self._inner, Exchanging)
        operation = operation_name(method, path)
        started = time.perf_counter()
        try:
            answer = await self._inner.exchange(method, url, headers=headers, body=body, timeouts=timeouts)
        except httpx.TransportError:
            OUTBOUND_CALLS.labels("planfix", operation, "network_error").inc()
            raise
        finally:
            OUTBOUND_SECONDS.labels("planfix", operation).observe(time.perf_counter() - started)
        self._counted(operation, answer.status_code, answer.headers)
        return answer

    def _counted(self, operation: str, status: int, headers: Mapping[str, str]) -> None:
        OUTBOUND_CALLS.labels("planfix", operation, http_result(status)).inc()
        remaining = headers.get("X-RateLimit-Remaining")
        if remaining is not None and remaining.strip().isdigit():
            PLANFIX_BUDGET.set(float(remaining))

    async def aclose(self) -> None:
        await self._inner.aclose()


def track_planfix_budget(client: Any) -> None:
    """Prefer the client's own count (``daily_budget_remaining``) when it keeps one."""
    if not hasattr(client, "daily_budget_remaining"):
        return

    def read() -> float:
        value = getattr(client, "daily_budget_remaining", None)
        return float(value) if isinstance(value, int | float) else float("nan")

    PLANFIX_BUDGET.set_function(read)
