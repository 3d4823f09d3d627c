"""Shared libraries of the services. Importing the package first trims every service's memory.

* aiogram's ~1,000 pydantic schemas are built on first use, not at import (about 105 MB per
  process using aiogram): see ``bridge_lib/aiogram_schemas.py``.
* rich, pygments and click (installed for the ``bridge`` CLI) are not loaded by the services'
  libraries, ~5 MB each process: ``httpx`` imports its command-line client (``httpx._main``,
  which needs all three) only if it can, and structlog uses rich only for coloured tracebacks
  on a terminal, falling back to plain ones. The CLI still imports rich and click itself.
"""

import sys

from bridge_lib import aiogram_schemas

aiogram_schemas.install()


def _skip_optional_imports() -> None:
    # httpx/__init__.py: `try: from ._main import main except ImportError: <a stub main>`.
    sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]
    if "structlog" in sys.modules or "rich" in sys.modules:
        return
    sys.modules["rich"] = None  # type: ignore[assignment]  # `import rich` raises ImportError
    try:
        import structlog  # noqa: F401
    finally:
        del sys.modules["rich"]


_skip_optional_imports()
