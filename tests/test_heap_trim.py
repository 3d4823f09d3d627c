"""A service hands its freed heap back to the system every ``HEAP_TRIM_INTERVAL_S`` (glibc)."""

from __future__ import annotations

import asyncio
import platform

import pytest

from bridge_lib import heap_trim
from bridge_lib.settings import BridgeSettings


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="malloc_trim is glibc's")
def test_glibc_has_the_call() -> None:
    trim = heap_trim.malloc_trim()

    assert trim is not None
    trim()  # releases what it can; no error


def test_the_heap_is_trimmed_every_interval(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []

    def counted_trim() -> bool:
        calls.append(1)
        return True

    monkeypatch.setattr(heap_trim, "malloc_trim", lambda: counted_trim)

    async def run_for_a_while() -> None:
        trimming = asyncio.create_task(heap_trim.trim_heap_periodically(0.01))
        await asyncio.sleep(0.1)
        trimming.cancel()

    asyncio.run(run_for_a_while())

    assert len(calls) >= 3


def test_without_glibc_nothing_is_done(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(heap_trim, "malloc_trim", lambda: None)

    asyncio.run(asyncio.wait_for(heap_trim.trim_heap_periodically(0.01), 1.0))  # returns at once


def test_the_interval_is_a_setting_and_0_turns_it_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HEAP_TRIM_INTERVAL_S", "0")

    assert BridgeSettings().heap_trim_interval_s == 0
    monkeypatch.delenv("HEAP_TRIM_INTERVAL_S")
    assert BridgeSettings(_env_file=None).heap_trim_interval_s == 10  # type: ignore[call-arg]
