"""Process life-cycle shared by the services: run until SIGTERM/SIGINT, then stop in order."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Callable, Coroutine
from typing import Any


async def wait_for_stop_signal() -> None:
    """Return when the process gets SIGTERM or SIGINT (Ctrl-C)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    # The handlers stay installed: a second signal during the orderly stop (Ctrl-C pressed
    # twice, or a supervisor's SIGTERM after the terminal's SIGINT) must not interrupt it.
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


def run_service(main: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """Entry point body for ``__main__``: run ``main`` and exit 0 after a clean stop."""
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())
