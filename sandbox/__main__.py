"""``python -m sandbox``: the fakes and the page (``make run`` starts it in sandbox mode)."""

from __future__ import annotations

import asyncio

from bridge_lib.logging import configure_logging
from sandbox.config import SandboxConfig
from sandbox.page import run


def main() -> None:
    configure_logging("sandbox")
    asyncio.run(run(SandboxConfig.from_environ()))


if __name__ == "__main__":
    main()
