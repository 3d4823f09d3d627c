"""Sample a running service with py-spy and say where its CPU time goes.

``py-spy record --format raw`` writes collapsed stacks (``frame;frame;... count``) of the
samples where the process was on CPU (idle waits in the event loop are left out). Two views
are drawn from them: *self time by package* (whose code the CPU was in: pydantic-core, asyncio,
pymongo...) and *inclusive time of the bridge's own functions* (how much of the CPU went to
work done under each of them, e.g. ``EffectStore.get`` including the driver below it).
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from bench.report import Figure, Results
from devtools.devstack import venv_binary

_FRAME = re.compile(r"^(?P<function>.*) \((?P<path>[^()]*?)(?::\d+)?\)$")
OWN_PACKAGES = ("services/", "bridge_lib/", "contracts/")
# Entry frames under which the event loop runs everything: not "what the bridge was doing".
_ENTRY_FUNCTIONS = frozenset({"<module>", "main", "run_service"})
LOOP_ITSELF = "the event loop itself"


@dataclass
class Profile:
    label: str
    samples: int = 0
    self_by_package: Counter[str] = field(default_factory=Counter)
    inclusive_own: Counter[str] = field(default_factory=Counter)
    # Each sample charged to the innermost bridge function on its stack (with the library code
    # it called): a partition of the CPU by what the bridge was doing.
    under_own: Counter[str] = field(default_factory=Counter)
    error: str | None = None

    def top_packages(self, n: int = 8) -> list[tuple[str, float]]:
        return [(name, 100.0 * count / self.samples) for name, count in self.self_by_package.most_common(n)]

    def top_own(self, n: int = 12) -> list[tuple[str, float]]:
        return [(name, 100.0 * count / self.samples) for name, count in self.inclusive_own.most_common(n)]

    def top_under_own(self, n: int = 12) -> list[tuple[str, float]]:
        return [(name, 100.0 * count / self.samples) for name, count in self.under_own.most_common(n)]


class Sampler:
    """``py-spy record`` on one process for a fixed time, in the background."""

    def __init__(self, pid: int, label: str, out_dir: Path, *, duration_s: int, rate_hz: int = 100) -> None:
        self.label = label
        self.output = out_dir / f"profile-{label.replace('#', '-')}.txt"
        self._process = subprocess.Popen(
            [
                venv_binary("py-spy"),
                "record",
                "--pid", str(pid),
                "--duration", str(duration_s),
                "--rate", str(rate_hz),
                "--format", "raw",
                # Only the thread holding the GIL: the CPU this Python process spends, without
                # the threads that merely wait (motor's pool, the loop's epoll).
                "--gil",
                "--output", str(self.output),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )  # fmt: skip

    def result(self, timeout_s: float = 120.0) -> Profile:
        try:
            out, _ = self._process.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self._process.kill()
            return Profile(self.label, error="py-spy did not finish")
        if self._process.returncode != 0 or not self.output.exists():
            return Profile(self.label, error=out.decode(errors="replace").strip()[-300:])
        return parse_collapsed(self.label, self.output.read_text(errors="replace"))


def parse_collapsed(label: str, text: str) -> Profile:
    profile = Profile(label)
    for line in text.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [parsed for frame in stack.split(";") if (parsed := _parse_frame(frame)) is not None]
        if not frames:
            continue
        profile.samples += count
        profile.self_by_package[_package(frames[-1][1])] += count
        own = [f"{function} ({_short(path)})" for function, path in frames if _is_own(path)]
        for name in set(own):
            profile.inclusive_own[name] += count
        profile.under_own[_doing(frames)] += count
    return profile


def _doing(frames: list[tuple[str, str]]) -> str:
    """The innermost bridge function on the stack; else the library the event loop called into."""
    doing = [
        f"{function} ({_short(path)})"
        for function, path in frames
        if _is_own(path) and function not in _ENTRY_FUNCTIONS
    ]
    if doing:
        return doing[-1]
    for _, path in frames:
        package = _package(path)
        if not package.startswith("stdlib") and not package.endswith("(ours)"):
            return f"{package}, outside any bridge function"
    return LOOP_ITSELF


def _parse_frame(frame: str) -> tuple[str, str] | None:
    match = _FRAME.match(frame.strip())
    if match is None:
        return None
    return match["function"], match["path"]


def _package(path: str) -> str:
    """py-spy shows paths relative to their sys.path entry: the first part names the package."""
    if _is_own(path):
        return _short(path).split("/")[0] + " (ours)"
    if path.startswith("<frozen "):
        return f"stdlib {path.removeprefix('<frozen ').rstrip('>')}"
    top = path.split("/")[0].removesuffix(".py")
    return f"stdlib {top}" if top in sys.stdlib_module_names else top or "?"


def _is_own(path: str) -> bool:
    return any(path.startswith(own) or f"/{own}" in path for own in OWN_PACKAGES)


def _short(path: str) -> str:
    for own in OWN_PACKAGES:
        if own in path:
            return own + path.split(own, 1)[1]
    return path


def report_profiles(results: Results, profiles: list[Profile], messages: int) -> None:
    for profile in profiles:
        item = "profile"
        if profile.error or not profile.samples:
            results.add(Figure(item, f"{profile.label}: py-spy", None, "", note=f"failed: {profile.error}"))
            continue
        for name, share in profile.top_packages(3):
            results.add(
                Figure(
                    item, f"{profile.label}: CPU in {name}", share, "%", baseline=f"{profile.samples} samples"
                )
            )
        for name, share in profile.top_under_own(5):
            results.add(Figure(item, f"{profile.label}: in/under {name.split(' (')[0]}", share, "%"))
        results.details.setdefault("profiles", {})[profile.label] = {
            "samples": profile.samples,
            "messages": messages,
            "self_by_package_pct": dict(profile.top_packages(15)),
            "inclusive_own_pct": dict(profile.top_own(25)),
            "innermost_own_pct": dict(profile.top_under_own(25)),
        }
