"""Figures, the one table ``make bench`` prints, and ``bench/results/latest.json``."""

from __future__ import annotations

import json
import math
import os
import platform
import subprocess
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psutil

from bench.stack import REPO_ROOT


@dataclass
class Figure:
    item: str  # the numbered item, e.g. "1 capacity"
    name: str
    value: float | None
    unit: str
    baseline: str = ""  # what it is measured against in the same run, or the input it is for
    target: str = ""
    met: bool | None = None  # None: no target, or not measured
    note: str = ""

    @property
    def shown(self) -> str:
        if self.value is None or (isinstance(self.value, float) and math.isnan(self.value)):
            return "—"
        return f"{_number(self.value)} {self.unit}".strip()

    @property
    def verdict(self) -> str:
        return {True: "met", False: "MISSED", None: ""}[self.met]


@dataclass
class Results:
    mode: str
    started_at: float = field(default_factory=time.time)
    figures: list[Figure] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    load_before: tuple[float, float, float] = field(default_factory=os.getloadavg)
    # The details of the run this one replaces (its results file), for "before" figures.
    previous: dict[str, Any] = field(default_factory=dict)

    def add(self, figure: Figure) -> Figure:
        self.figures.append(figure)
        return figure

    def skipped(self, item: str, name: str, why: str) -> None:
        self.add(Figure(item, name, None, "", note=f"skipped: {why}"))

    def to_json(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "machine": machine(),
            "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.started_at)),
            "duration_s": round(time.time() - self.started_at, 1),
            "load_average_before": self.load_before,
            "load_average_after": os.getloadavg(),
            "figures": [
                {**asdict(figure), "shown": figure.shown, "verdict": figure.verdict}
                for figure in self.figures
            ],
            "notes": self.notes,
            "details": self.details,
        }

    @staticmethod
    def details_in(path: Path) -> dict[str, Any]:
        try:
            details = json.loads(path.read_text()).get("details", {})
        except (OSError, ValueError, AttributeError):
            return {}
        return details if isinstance(details, dict) else {}

    def write(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_json(), indent=2, default=_jsonable) + "\n")


def machine() -> dict[str, Any]:
    return {
        "cores": os.cpu_count(),
        "physical_cores": psutil.cpu_count(logical=False),
        "cpu": _cpu_model(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
        "system": f"{platform.system()} {platform.release()}",
        "commit": _git_commit(),
    }


def table(results: Results) -> str:
    """The one table: every figure beside its baseline and target."""
    info = machine()
    header = ("item", "figure", "measured", "baseline / input", "target", "verdict")
    rows = [
        (f.item, f.name, f.shown, f.baseline, f.target, f.verdict or f.note or "") for f in in_order(results)
    ]
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    widths[-1] = min(widths[-1], 60)
    line = "  ".join("-" * width for width in widths)
    out = [
        f"planfix-telegram-bridge benchmarks ({results.mode}): {info['cores']} cores ({info['cpu']}), "
        f"Python {info['python']}, commit {info['commit']}, "
        f"load average before {_load(results.load_before)}, after {_load(os.getloadavg())}",
        line,
        "  ".join(str(cell).ljust(width) for cell, width in zip(header, widths, strict=True)),
        line,
    ]
    previous_item = None
    for row in rows:
        cells = list(row)
        if cells[0] == previous_item:
            cells[0] = ""
        else:
            previous_item = cells[0]
        out.append(
            "  ".join(str(cell).ljust(width) for cell, width in zip(cells, widths, strict=True)).rstrip()
        )
    out.append(line)
    out.extend(f"note: {note}" for note in results.notes)
    return "\n".join(out)


def markdown_table(data: dict[str, Any]) -> str:
    """The table of a results JSON (``Results.to_json``) as Markdown, for docs/benchmarks.md."""
    info = data["machine"]
    before = _load(tuple(data["load_average_before"]))
    after = _load(tuple(data["load_average_after"]))
    lines = [
        f"`{data['mode']}` run of {data['started_at']}, commit `{info['commit']}`, "
        f"{data['duration_s']:.0f} s: "
        f"**{info['cores']} cores** ({info['cpu']}, {info['memory_gb']} GB), Python {info['python']}, "
        f"load average {before} before and {after} after (other work ran on the machine).",
        "",
        "| item | figure | measured | baseline / input | target | verdict |",
        "|---|---|---|---|---|---|",
    ]
    figures = sorted(
        data["figures"], key=lambda f: int(f["item"].split()[0]) if f["item"][0].isdigit() else 99
    )
    for f in figures:
        verdict = f["verdict"] or f["note"]
        cells = [f["item"], f["name"], f["shown"], f["baseline"], f["target"], verdict]
        lines.append("| " + " | ".join(str(cell).replace("|", "\\|") for cell in cells) + " |")
    lines.extend(f"\nNote: {note}" for note in data["notes"])
    return "\n".join(lines)


def in_order(results: Results) -> list[Figure]:
    """By the issue's item number (phases run in another order); unnumbered items last."""
    return sorted(results.figures, key=lambda f: int(f.item.split()[0]) if f.item[0].isdigit() else 99)


def _number(value: float) -> str:
    if float(value).is_integer():
        return f"{value:,.0f}"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) >= 100:
        return f"{value:.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.3g}"


def _load(load: tuple[float, float, float]) -> str:
    return "/".join(f"{value:.1f}" for value in load)


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def _git_commit() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    return str(value)
