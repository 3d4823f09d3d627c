"""``make run``: the whole bridge on one machine, with embedded NATS and store.

Sandbox mode (fake Telegram and Planfix, ``python -m sandbox``) without credentials or with
``BRIDGE_MODE=sandbox``, live mode otherwise; live mode never starts a fake. Starts nats-server and
nx-27017 unless ``NATS_URL``/``MONGODB_URL`` are given, then the four services, restarting a
crashed one; a settings error (exit 2) stops everything, and Ctrl-C stops all in order. The
steps: docs/architecture.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
import sys
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import TextIO

from dotenv import dotenv_values

from bridge_cli.service_settings import settings_problems
from bridge_lib.redaction import redact
from devtools import devstack
from devtools.devstack import SERVICES

COLOURS = {"binder": 36, "relay": 35, "planfix_gateway": 33, "telegram_gateway": 34, "sandbox": 32}
SETTINGS_ERROR_EXIT = 2
STOP_TIMEOUT_S = 10.0
# Either one of these given means real accounts are meant: live mode.
CREDENTIALS = ("TELEGRAM_BOT_TOKEN", "PLANFIX_API_TOKEN")
MODES = ("live", "sandbox")
# Variables that switch the bridge to real accounts (named in the sandbox banner).
LIVE_VARIABLES = ("TELEGRAM_BOT_TOKEN", "PLANFIX_BASE_URL", "PLANFIX_API_TOKEN", "PLANFIX_WEBHOOK_SECRET")


def chosen_mode(environ: Mapping[str, str]) -> str:
    """``sandbox`` when no credentials are given (or BRIDGE_MODE says so), else ``live``."""
    wanted = environ.get("BRIDGE_MODE", "").strip().lower()
    if wanted:
        if wanted not in MODES:
            raise ValueError(f"BRIDGE_MODE must be live or sandbox, not {wanted!r}")
        return wanted
    given = any(environ.get(name, "").strip() for name in CREDENTIALS)
    return "live" if given else "sandbox"


def load_dotenv_into_environ(path: Path) -> None:
    if not path.exists():
        return
    for name, value in dotenv_values(path).items():
        if value is not None:
            os.environ.setdefault(name, value)


def paint(text: str, colour: int, stream: TextIO) -> str:
    return f"\033[{colour}m{text}\033[0m" if stream.isatty() else text


class Supervisor:
    def __init__(self, env: dict[str, str], on_all_started: Callable[[], None] | None = None) -> None:
        self.env = env
        self.processes: dict[str, asyncio.subprocess.Process] = {}
        self.stopping = asyncio.Event()
        self.fatal: str | None = None
        # Called once, when every service has logged "<name>_started".
        self.on_all_started = on_all_started
        self.started: set[str] = set()

    async def run_service(self, name: str) -> None:
        module = "sandbox" if name == "sandbox" else f"services.{name}"
        delay = 1.0
        while not self.stopping.is_set():
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", module, env=self.env,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
                # Own session: Ctrl-C reaches only the launcher, which stops the services in order.
                start_new_session=True,
            )  # fmt: skip
            self.processes[name] = process
            await self._pump(name, process)
            code = await process.wait()
            if self.stopping.is_set():
                return
            if code == SETTINGS_ERROR_EXIT:
                self.fatal = f"{name} stopped: its settings are wrong (see above)"
                self.stopping.set()
                return
            self._say(name, f"exited with code {code}; restarting in {delay:.0f}s")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), delay)
            delay = min(delay * 2, 30.0)

    async def _pump(self, name: str, process: asyncio.subprocess.Process) -> None:
        assert process.stdout is not None
        async for line in process.stdout:
            text = line.decode(errors="replace").rstrip()
            self._say(name, text)
            if name not in self.started and f"{name}_started" in text:
                self.started.add(name)
                if self.on_all_started is not None and self.started.issuperset(SERVICES):
                    self.on_all_started()

    def _say(self, name: str, text: str) -> None:
        prefix = paint(f"{name:<17}|", COLOURS.get(name, 37), sys.stdout)
        # The services redact their own lines; a library's print to stdout is caught here.
        print(f"{prefix} {redact(text)}", flush=True)

    async def stop_all(self) -> None:
        self.stopping.set()
        for process in self.processes.values():
            if process.returncode is None:
                process.send_signal(signal.SIGTERM)
        for name, process in self.processes.items():
            try:
                await asyncio.wait_for(process.wait(), STOP_TIMEOUT_S)
            except TimeoutError:
                self._say(name, "did not stop in time; killing it")
                process.kill()


async def supervise(
    env: dict[str, str], *, sandbox_port: int | None = None, on_all_started: Callable[[], None] | None = None
) -> str | None:
    """Run the services until Ctrl-C; with ``sandbox_port``, the sandbox first (until it listens)."""
    supervisor = Supervisor(env, on_all_started)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, supervisor.stopping.set)
    tasks = []
    if sandbox_port is not None:
        tasks.append(asyncio.create_task(supervisor.run_service("sandbox")))
        # The gateway's first getUpdates should find the fake Bot API there.
        await _wait_for_port_async(sandbox_port, supervisor.stopping)
    tasks += [asyncio.create_task(supervisor.run_service(name)) for name in SERVICES]
    await supervisor.stopping.wait()
    await supervisor.stop_all()
    await asyncio.gather(*tasks, return_exceptions=True)
    return supervisor.fatal


async def _wait_for_port_async(port: int, stopping: asyncio.Event, timeout_s: float = 60.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while loop.time() < deadline and not stopping.is_set():
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            await asyncio.sleep(0.1)
            continue
        writer.close()
        return


def main() -> None:
    root = Path.cwd()
    load_dotenv_into_environ(root / ".env")
    try:
        mode = chosen_mode(os.environ)
    except ValueError as error:
        print(error, file=sys.stderr)
        raise SystemExit(SETTINGS_ERROR_EXIT) from None
    if mode == "sandbox":
        run_sandbox(root / "var" / "sandbox")
    else:
        run_live(root / "var")


def run_live(var: Path) -> None:
    problems = settings_problems()
    if problems:
        print("The bridge cannot start: these settings are missing or wrong:", file=sys.stderr)
        print("\n".join(problems), file=sys.stderr)
        print(
            "Put them in .env (copy .env.example) or in the environment, then run `make run` again.",
            file=sys.stderr,
        )
        raise SystemExit(SETTINGS_ERROR_EXIT)
    with infrastructure(var):
        _exit_if_fatal(asyncio.run(supervise(dict(os.environ))))


def run_sandbox(var: Path) -> None:
    """The bridge against the fakes of ``python -m sandbox``, with the page to play both sides."""
    var.mkdir(parents=True, exist_ok=True)
    page_port = _port("SANDBOX_PORT", 8080)
    page_host = os.environ.get("SANDBOX_HOST", "127.0.0.1")
    webhook_port = _port("PLANFIX_WEBHOOK_PORT", 8081)
    telegram_port, planfix_port = devstack.free_port(), devstack.free_port()
    secret = _sandbox_webhook_secret(var / "planfix-webhook-secret")
    from sandbox.config import SANDBOX_BOT_TOKEN, SANDBOX_GROUP_PACE, SANDBOX_PLANFIX_TOKEN

    # Always its own NATS and store: sandbox events never land in a live stream.
    for name in ("NATS_URL", "MONGODB_URL", "TELEGRAM_WEBHOOK_URL"):
        os.environ.pop(name, None)
    os.environ.update(
        TELEGRAM_BOT_TOKEN=SANDBOX_BOT_TOKEN,
        TELEGRAM_API_BASE_URL=f"http://127.0.0.1:{telegram_port}",
        PLANFIX_BASE_URL=f"http://127.0.0.1:{planfix_port}/rest/",
        PLANFIX_API_TOKEN=SANDBOX_PLANFIX_TOKEN,
        PLANFIX_WEBHOOK_SECRET=secret,
        PLANFIX_WEBHOOK_HOST="127.0.0.1",
        PLANFIX_WEBHOOK_PORT=str(webhook_port),
        # The fake Bot API enforces this pace; the relay must keep the same one.
        RELAY_GROUP_PACE_MESSAGES=str(SANDBOX_GROUP_PACE[0]),
        RELAY_GROUP_PACE_WINDOW_S=str(SANDBOX_GROUP_PACE[1]),
        SANDBOX_STATE_DIR=str(var / "state"),
        SANDBOX_HOST=page_host,
        SANDBOX_PORT=str(page_port),
        SANDBOX_TELEGRAM_PORT=str(telegram_port),
        SANDBOX_PLANFIX_PORT=str(planfix_port),
        SANDBOX_PLANFIX_WEBHOOK_URL=f"http://127.0.0.1:{webhook_port}/planfix/webhook/{secret}",
    )
    # The fake Planfix has no rate limit; a quicker budget makes the demo feel immediate while
    # every call still takes its turn through the shared pacing code.
    os.environ.setdefault("PLANFIX_RATE_PER_S", "10")
    os.environ.setdefault("PLANFIX_BURST", "5")
    problems = settings_problems()
    if problems:  # a bad optional setting in .env, e.g. LOG_LEVEL
        print("The sandbox cannot start: these settings are wrong:", file=sys.stderr)
        print("\n".join(problems), file=sys.stderr)
        raise SystemExit(SETTINGS_ERROR_EXIT)
    banner = sandbox_banner(f"http://{page_host}:{page_port}", var)
    print(banner, flush=True)
    with infrastructure(var):

        def ready() -> None:
            print(banner.replace("SANDBOX MODE", "SANDBOX MODE: ready", 1), flush=True)

        _exit_if_fatal(asyncio.run(supervise(dict(os.environ), sandbox_port=page_port, on_all_started=ready)))


@contextlib.contextmanager
def infrastructure(var: Path) -> Iterator[None]:
    """NATS and the store under ``var`` (their URLs put in the environment), stopped on the way
    out; a NATS_URL or MONGODB_URL already set is used instead."""
    started: list[devstack.ManagedProcess] = []
    try:
        if not os.environ.get("NATS_URL"):
            nats = devstack.start_nats(
                var / "nats", port=_port("NATS_PORT", 4222), log_file=var / "nats-server.log"
            )
            started.append(nats)
            os.environ["NATS_URL"] = nats.extra["url"]
        if not os.environ.get("MONGODB_URL"):
            mongo = devstack.start_nx27017(
                var / "mongo", port=_port("MONGODB_PORT", 27017), log_file=var / "nx-27017.out"
            )
            started.append(mongo)
            os.environ["MONGODB_URL"] = mongo.extra["url"]
        print(infrastructure_line(var), flush=True)
        yield
    finally:
        for process in reversed(started):
            process.stop()


def _exit_if_fatal(fatal: str | None) -> None:
    if fatal:
        print(fatal, file=sys.stderr)
        raise SystemExit(SETTINGS_ERROR_EXIT)


def infrastructure_line(var: Path) -> str:
    """Where NATS, the store and the data are, without the passwords their URLs may carry."""
    nats_url, mongodb_url = os.environ["NATS_URL"], os.environ["MONGODB_URL"]
    return redact(f"NATS: {nats_url}   store: {mongodb_url}   data: {var}")


def sandbox_banner(url: str, var: Path) -> str:
    rule = "=" * 78
    return "\n".join(
        [
            rule,
            "  SANDBOX MODE (no TELEGRAM_BOT_TOKEN and no PLANFIX_API_TOKEN given)",
            "  Telegram and Planfix are simulated on this machine; nothing goes to the real ones.",
            f"  Open {url} : write in a group on the left, in the task on the right,",
            "  and watch the events on NATS below.",
            f"  State: {var} (kept across restarts; delete the folder to start afresh).",
            f"  Real accounts: set {', '.join(LIVE_VARIABLES)}",
            "  in .env (see .env.example); BRIDGE_MODE=live never starts the sandbox.",
            rule,
        ]
    )


def _sandbox_webhook_secret(path: Path) -> str:
    """The sandbox's webhook secret: made once, kept in a file only its owner reads."""
    if path.exists():
        return path.read_text().strip()
    secret = secrets.token_urlsafe(32)
    path.touch(mode=0o600)
    path.write_text(secret)
    return secret


def _port(variable: str, default: int) -> int:
    """The wanted port, or a free one when something else already listens there."""
    wanted = int(os.environ.get(variable, default))
    try:
        devstack.wait_for_port(wanted, timeout_s=0.1)
    except TimeoutError:
        return wanted
    chosen = devstack.free_port()
    print(f"port {wanted} is taken; using {chosen} instead (set {variable} to choose)", file=sys.stderr)
    return chosen


if __name__ == "__main__":
    main()
