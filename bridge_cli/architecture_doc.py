"""Write the generated tables of docs/architecture.md (subjects and durable consumers) from
``contracts.subjects``: ``python -m bridge_cli.architecture_doc docs/architecture.md``."""

from __future__ import annotations

import sys
from pathlib import Path

from contracts.subjects import consumer_table, subject_table

SECTIONS = {"subject table": subject_table, "consumer table": consumer_table}


def rendered(text: str) -> str:
    """``text`` with each generated section rewritten from the catalogue."""
    for name, table in SECTIONS.items():
        start, end = f"<!-- {name}: generated -->", f"<!-- end of {name} -->"
        before, found, rest = text.partition(start)
        if not found:
            raise ValueError(f"docs/architecture.md has no {start!r} marker")
        _, found, after = rest.partition(end)
        if not found:
            raise ValueError(f"docs/architecture.md has no {end!r} marker")
        text = f"{before}{start}\n{table()}\n{end}{after}"
    return text


def main(argv: list[str]) -> int:
    path = Path(argv[0] if argv else "docs/architecture.md")
    path.write_text(rendered(path.read_text(encoding="utf-8")), encoding="utf-8")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
