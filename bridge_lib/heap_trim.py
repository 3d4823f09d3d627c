"""Freed heap handed back to the system now and then (glibc's ``malloc_trim``).

A burst (10,000 groups bound, a backlog carried) allocates and frees many small objects; glibc
keeps the freed pages mapped for reuse, so a service's RSS stays at its peak long after. Asking
glibc every ``TRIM_INTERVAL_S`` to release the pages it holds free brings RSS back to what the
process uses. Elsewhere (musl, macOS) there is no such call and nothing is done.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
from collections.abc import Callable

import structlog

log = structlog.get_logger("heap_trim")


def malloc_trim() -> Callable[[], bool] | None:
    """glibc's ``malloc_trim(0)`` (True when memory was released), or None without glibc."""
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        trim = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return lambda: bool(trim(0))


async def trim_heap_periodically(interval_s: float) -> None:
    """Release the heap's free pages every ``interval_s``, until cancelled."""
    trim = malloc_trim()
    if trim is None:
        log.info("heap_trim_unavailable", hint="not glibc: RSS may stay at its peak after a burst")
        return
    while True:
        await asyncio.sleep(interval_s)
        trim()
