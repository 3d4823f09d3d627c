"""Webhook hardening: the salvage of broken bodies is linear and bounded, requests with the
right secret are rate-limited (before their body is read), short Telegram webhook secrets are
refused at start."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from pydantic import ValidationError

from bridge_lib.eventbus import EventPublisher, ensure_streams, make_broker
from devtools.devstack import free_port
from services.planfix_gateway.webhook import (
    SALVAGE_PATTERNS,
    RequestBudget,
    WebhookReceiver,
    parse_webhook,
    salvage_ids,
)
from services.telegram_gateway.config import TelegramGatewaySettings
from tests.conftest import BOT_TOKEN
from tests.support import LoopThread

SECRET = "hardening-webhook-secret"
KB64 = 64 * 1024

# --- the salvage of broken bodies ------------------------------------------------------------


def _repeats(parsed: Any) -> list[tuple[int, int]]:
    """(min, max) of every repetition in a parsed pattern, nested ones included."""
    found: list[tuple[int, int]] = []
    for op, argument in parsed:
        name = str(op)
        if name in ("MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT"):
            low, high, inner = argument
            found.append((low, high))
            found += _repeats(inner)
        elif name == "SUBPATTERN":
            found += _repeats(argument[-1])
        elif name == "BRANCH":
            for branch in argument[1]:
                found += _repeats(branch)
        elif name in ("ASSERT", "ASSERT_NOT"):
            found += _repeats(argument[1])
    return found


def test_every_repetition_in_the_salvage_patterns_is_bounded() -> None:
    """No ``*``, ``+`` or ``{n,}``: each match attempt costs a bounded number of steps, so a scan
    of the body is linear in its length whatever the body is."""
    parser: Any = getattr(re, "_parser")  # noqa: B009 (sre_parse, as the re module itself uses it)
    for name, pattern in SALVAGE_PATTERNS.items():
        repeats = _repeats(parser.parse(pattern.pattern))
        assert repeats, name
        assert all(high <= 64 for _low, high in repeats), f"{name}: {pattern.pattern}"


HOSTILE_BODIES: dict[str, Callable[[int], bytes]] = {
    # What made the old pattern quadratic: runs of whitespace and quotes after a field name.
    "spaces after a name": lambda size: b'{"task":' + b" " * size,
    "spaces and quotes": lambda size: b'{"task": ' + b' "' * (size // 2),
    "names over and over": lambda size: b'"task": "' * (size // 9),
    "digits without an end": lambda size: b'{"comment": "' + b"1" * size,
    "spaces around a value": lambda size: b'{"task":' + b" " * (size // 2) + b"1" + b" " * (size // 2),
}


def _best_of(runs: int, action: Callable[[], object]) -> float:
    best = float("inf")
    for _ in range(runs):
        started = time.perf_counter()
        action()
        best = min(best, time.perf_counter() - started)
    return best


@pytest.mark.parametrize("shape", HOSTILE_BODIES)
def test_a_hostile_64_kb_body_costs_about_one_linear_pass(shape: str) -> None:
    """Compared with a linear baseline over the same body (decoding it and counting its quotes):
    linear salvage stays within a small factor of it; the old quadratic pattern took ~35 s, some
    10,000 times the baseline. Not a timed test: a ratio of two measurements taken together."""
    body = HOSTILE_BODIES[shape](KB64)
    assert salvage_ids(body) is None  # nothing unambiguous to read in any of them
    baseline = _best_of(5, lambda: re.findall(r'"', body.decode("utf-8", errors="replace")))
    salvage = _best_of(5, lambda: salvage_ids(body))
    ratio = salvage / max(baseline, 1e-6)
    print(f"\nsalvage of '{shape}' ({len(body)} bytes): {salvage * 1000:.2f} ms, {ratio:.1f}x a linear scan")
    assert ratio < 500, f"{ratio:.0f}x a linear scan of the same body"


def test_twice_the_body_costs_about_twice_as_much() -> None:
    small, large = (HOSTILE_BODIES["spaces and quotes"](size) for size in (KB64 // 4, KB64))
    ratio = _best_of(5, lambda: salvage_ids(large)) / max(_best_of(5, lambda: salvage_ids(small)), 1e-6)
    print(f"\n4x the body: {ratio:.1f}x the time (quadratic: 16x)")
    assert ratio < 10


@pytest.mark.parametrize(
    ("body", "ids"),
    [
        (b'{"task": "12", "comment": "34", "text": "a "quoted" paste"}', (12, 34)),
        (b'{"event":"comment.updated","task":12,"comment":34,"x":"\\q"}', (12, 34)),
        (b'{ "taskNumber" :  "  12 " ,\n "commentId": 34 ,"a":"b"c"}', (12, 34)),
    ],
)
def test_broken_json_is_still_read_when_the_ids_are_unambiguous(body: bytes, ids: tuple[int, int]) -> None:
    parsed = parse_webhook(body, "application/json")
    assert (parsed.task_number, parsed.comment_id) == ids


def test_a_field_given_twice_is_not_guessed() -> None:
    assert salvage_ids(b'{"task": 1, "task": 2, "comment": 3, "x": "y"z"}') is None


# --- rate limit ------------------------------------------------------------------------------


def test_the_budget_gives_a_burst_then_its_rate() -> None:
    now = [0.0]
    budget = RequestBudget(rate_per_s=2.0, burst=3, clock=lambda: now[0])
    assert [budget.take() for _ in range(4)] == [True, True, True, False]
    now[0] += 0.5  # one more at 2 a second
    assert [budget.take(), budget.take()] == [True, False]
    now[0] += 60  # a long pause refills no more than the burst
    assert [budget.take() for _ in range(4)] == [True, True, True, False]


def test_requests_with_the_right_secret_beyond_the_budget_get_429_before_their_body_is_read(
    loop: LoopThread, nats_url: str
) -> None:
    now = [0.0]

    async def scenario() -> list[tuple[int, str | None]]:
        broker = make_broker(nats_url, name="hardening")
        await broker.connect()
        await ensure_streams(broker)
        receiver = WebhookReceiver(
            secret=SECRET,
            max_body=4096,
            publisher=EventPublisher(broker),
            publish_timeout_s=4.0,
            budget=RequestBudget(rate_per_s=1.0, burst=2, clock=lambda: now[0]),
        )
        runner = web.AppRunner(receiver.app())
        await runner.setup()
        port = free_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        answers: list[tuple[int, str | None]] = []
        try:
            async with aiohttp.ClientSession() as session:
                for n, secret in enumerate([SECRET, "wrong-secret-xxxxxxxx", SECRET, SECRET, SECRET]):
                    body = f'{{"task": "7401", "comment": "{7401000 + n}"}}'
                    url = f"http://127.0.0.1:{port}/planfix/webhook/{secret}"
                    async with session.post(
                        url, data=body, headers={"Content-Type": "application/json"}
                    ) as r:
                        answers.append((r.status, r.headers.get("Retry-After")))
                now[0] += 1.0
                body = '{"task": "7401", "comment": "7401999"}'
                async with session.post(f"http://127.0.0.1:{port}/planfix/webhook/{SECRET}", data=body) as r:
                    answers.append((r.status, None))
        finally:
            await runner.cleanup()
            await broker.stop()
        return answers

    answers = loop.run(scenario(), timeout_s=60)
    # A stranger's request costs nothing from the budget; the fourth right one is over it.
    assert answers == [(200, None), (401, None), (200, None), (429, "1"), (429, "1"), (200, None)]


# --- Telegram webhook secret -----------------------------------------------------------------


@pytest.mark.parametrize("secret", ["a", "short_secret_15c"[:15]])
def test_a_telegram_webhook_secret_shorter_than_16_characters_is_refused_at_start(
    secret: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", BOT_TOKEN)
    monkeypatch.setenv("TELEGRAM_WEBHOOK_SECRET", secret)
    with pytest.raises(ValidationError, match="at least 16 characters"):
        TelegramGatewaySettings()
    monkeypatch.setenv("TELEGRAM_WEBHOOK_SECRET", "x" * 16)
    assert TelegramGatewaySettings().webhook_secret() == "x" * 16
