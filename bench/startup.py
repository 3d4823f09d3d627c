"""Item 7, start-up: from ``make run`` to all four services ready, with a warm virtualenv.

``make run`` is ``python -m devtools.launcher`` once the virtualenv is installed, so that is
what is started here, in a scratch directory (its ``var/`` with NATS and store data lands
there) with the repository on ``PYTHONPATH``, and pointed at fake Telegram and Planfix servers
of its own. A service is ready when it logs that it started (consumers bound, listener up).
Then SIGTERM, as Ctrl-C would, and the time to a clean stop.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from bench.report import Figure, Results
from bench.stack import READY_MARKERS, REPO_ROOT, service_env, start_fakes
from devtools import devstack
from devtools.devstack import HEALTH_PORT_VARIABLES
from tests.support import LoopThread


def run_startup(results: Results, work_dir: Path, loop: LoopThread, timeout_s: float = 90.0) -> None:
    telegram, planfix = start_fakes(loop)
    cwd = work_dir / "make-run"
    cwd.mkdir(parents=True, exist_ok=True)
    env = {
        **{k: v for k, v in os.environ.items() if k not in ("NATS_URL", "MONGODB_URL")},
        **service_env(telegram, planfix, devstack.free_port()),
        "NATS_PORT": str(devstack.free_port()),
        "MONGODB_PORT": str(devstack.free_port()),
        **{variable: str(devstack.free_port()) for variable in HEALTH_PORT_VARIABLES.values()},
        "PYTHONPATH": str(REPO_ROOT),
        "PYTHONUNBUFFERED": "1",
    }
    lines: list[tuple[float, str]] = []
    started = time.monotonic()
    launcher = subprocess.Popen(
        [sys.executable, "-m", "devtools.launcher"],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    reader = threading.Thread(target=_read_lines, args=(launcher, lines, started), daemon=True)
    reader.start()
    try:
        ready = _wait_ready(lines, started, launcher, timeout_s)
        stop_began = time.monotonic()
        launcher.send_signal(signal.SIGTERM)
        code = launcher.wait(30)
        stop_s = time.monotonic() - stop_began
    finally:
        if launcher.poll() is None:
            launcher.kill()
            launcher.wait()
        loop.run(telegram.stop())
        loop.run(planfix.stop())
    (work_dir / "logs").mkdir(parents=True, exist_ok=True)
    (work_dir / "logs" / "make-run.log").write_text("\n".join(f"{at:8.3f} {line}" for at, line in lines))
    if ready is None:
        results.add(
            Figure("7 start-up", "make run → all services ready", None, "s", note="not ready in time")
        )
        return
    all_ready = max(ready.values())
    slowest = max(ready, key=lambda name: ready[name])
    results.add(
        Figure(
            "7 start-up",
            "make run → all 4 services ready",
            all_ready,
            "s",
            baseline=f"incl. NATS and store; slowest: {slowest}",
        )
    )
    results.add(
        Figure(
            "7 start-up", "Ctrl-C (SIGTERM) → everything stopped", stop_s, "s", baseline=f"exit code {code}"
        )
    )
    results.details["startup"] = {
        "ready_s": ready,
        "all_ready_s": all_ready,
        "stop_s": stop_s,
        "exit_code": code,
    }


def _read_lines(process: subprocess.Popen[bytes], lines: list[tuple[float, str]], started: float) -> None:
    assert process.stdout is not None
    for raw in process.stdout:
        lines.append((time.monotonic() - started, raw.decode(errors="replace").rstrip()))


def _wait_ready(
    lines: list[tuple[float, str]], started: float, launcher: subprocess.Popen[bytes], timeout_s: float
) -> dict[str, float] | None:
    deadline = started + timeout_s
    while time.monotonic() < deadline and launcher.poll() is None:
        ready: dict[str, float] = {}
        for at, line in list(lines):
            name = line.split("|", 1)[0].strip()
            if name in READY_MARKERS and READY_MARKERS[name] in line:
                ready.setdefault(name, at)
        if len(ready) == len(READY_MARKERS):
            return ready
        time.sleep(0.05)
    return None
