"""Lighter third-party imports for a service process, installed by its ``__main__`` first.

* aiogram's pydantic schemas are built on first use, not at ``import aiogram``
  (``aiogram_schemas``): about 105 MB less per process using aiogram.
* rich, pygments and click (the CLI's) stay unloaded, ~5 MB a process: httpx imports its
  command-line client only if it can, and structlog falls back to plain tracebacks without rich.

Only what is imported after ``install()`` is affected: a service's ``__main__`` calls it before it
imports its app (and so aiogram, httpx and structlog). Importing ``bridge_lib`` does nothing.
"""

from __future__ import annotations

import sys

from bridge_lib import aiogram_schemas


def install() -> None:
    aiogram_schemas.install()
    skip_optional_imports()


def skip_optional_imports() -> None:
    # httpx/__init__.py: `try: from ._main import main except ImportError: <a stub main>`.
    sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]
    if "structlog" in sys.modules or "rich" in sys.modules:
        return
    sys.modules["rich"] = None  # type: ignore[assignment]  # `import rich` raises ImportError
    try:
        import structlog  # noqa: F401
    finally:
        del sys.modules["rich"]
