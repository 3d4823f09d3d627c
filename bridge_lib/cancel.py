"""Stopping a background task: cancelled, and waited for until it has ended."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any


async def cancelled(task: asyncio.Task[Any] | None) -> None:
    """Cancel ``task`` (when there is one) and return once it has ended; anything else it
    raised on the way out is raised here."""
    if task is None:
        return
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
