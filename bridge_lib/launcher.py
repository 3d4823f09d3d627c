"""``make run``: the whole bridge on one machine, with embedded NATS and store.

1. Reads ``.env`` (the environment wins), then checks the settings of all four services at
   once and names every missing variable with how to get it (exit 2, no traceback).
2. Starts ``nats-server`` with JetStream (data in ``var/nats``) unless ``NATS_URL`` is set, and
   ``nx-27017`` (data in ``var/mongo``) unless ``MONGODB_URL`` is set.
3. Runs the four services, each line of their output prefixed with the service's name; a
   service that crashes is restarted with a growing delay; one that exits with a settings
   error (code 2) stops everything.
4. Ctrl-C or SIGTERM stops the services (SIGTERM, then SIGKILL after 10 s), then NATS and
   the store.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from pathlib import Path
from typing import TextIO

from dotenv import dotenv_values
from pydantic import ValidationError
from pydantic_settings import BaseSettings

from bridge_lib import devstack
from bridge_lib.settings import describe_settings_error

SERVICES = ("binder", "relay", "planfix_gateway", "telegram_gateway")
COLOURS = {"binder": 36, "relay": 35, "planfix_gateway": 33, "telegram_gateway": 34}
SETTINGS_ERROR_EXIT = 2
STOP_TIMEOUT_S = 10.0


def load_dotenv_into_environ(path: Path) -> None:
    if not path.exists():
        return
    for name, value in dotenv_values(path).items():
        if value is not None:
            os.environ.setdefault(name, value)


def settings_problems() -> list[str]:
    # The launcher is tooling, not a service: it may look at every service's settings class.
    from services.binder.config import BinderSettings
    from services.planfix_gateway.config import PlanfixGatewaySettings
    from services.relay.config import RelaySettings
    from services.telegram_gateway.config import TelegramGatewaySettings

    classes: list[type[BaseSettings]] = [
        TelegramGatewaySettings, PlanfixGatewaySettings, BinderSettings, RelaySettings,
    ]  # fmt: skip
    problems: list[str] = []
    for settings_class in classes:
        try:
            settings_class()
        except ValidationError as error:
            problems.extend(line for line in describe_settings_error(error) if line not in problems)
    return problems


def paint(text: str, colour: int, stream: TextIO) -> str:
    return f"\033[{colour}m{text}\033[0m" if stream.isatty() else text


class Supervisor:
    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.processes: dict[str, asyncio.subprocess.Process] = {}
        self.stopping = asyncio.Event()
        self.fatal: str | None = None

    async def run_service(self, name: str) -> None:
        delay = 1.0
        while not self.stopping.is_set():
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", f"services.{name}", env=self.env,
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
            self._say(name, line.decode(errors="replace").rstrip())

    def _say(self, name: str, text: str) -> None:
        prefix = paint(f"{name:<17}|", COLOURS.get(name, 37), sys.stdout)
        print(f"{prefix} {text}", flush=True)

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


async def supervise(env: dict[str, str]) -> str | None:
    supervisor = Supervisor(env)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, supervisor.stopping.set)
    tasks = [asyncio.create_task(supervisor.run_service(name)) for name in SERVICES]
    await supervisor.stopping.wait()
    await supervisor.stop_all()
    await asyncio.gather(*tasks, return_exceptions=True)
    return supervisor.fatal


def main() -> None:
    root = Path.cwd()
    load_dotenv_into_environ(root / ".env")
    var = root / "var"
    problems = settings_problems()
    if problems:
        print("The bridge cannot start: these settings are missing or wrong:", file=sys.stderr)
        print("\n".join(problems), file=sys.stderr)
        print(
            "Put them in .env (copy .env.example) or in the environment, then run `make run` again.",
            file=sys.stderr,
        )
        raise SystemExit(SETTINGS_ERROR_EXIT)
    infra: list[devstack.ManagedProcess] = []
    try:
        if not os.environ.get("NATS_URL"):
            nats = devstack.start_nats(
                var / "nats", port=_port("NATS_PORT", 4222), log_file=var / "nats-server.log"
            )
            infra.append(nats)
            os.environ["NATS_URL"] = nats.extra["url"]
        if not os.environ.get("MONGODB_URL"):
            mongo = devstack.start_nx27017(
                var / "mongo", port=_port("MONGODB_PORT", 27017), log_file=var / "nx-27017.out"
            )
            infra.append(mongo)
            os.environ["MONGODB_URL"] = mongo.extra["url"]
        print(
            f"NATS: {os.environ['NATS_URL']}   store: {os.environ['MONGODB_URL']}   data: {var}", flush=True
        )
        fatal = asyncio.run(supervise(dict(os.environ)))
        if fatal:
            print(fatal, file=sys.stderr)
            raise SystemExit(SETTINGS_ERROR_EXIT)
    finally:
        for process in reversed(infra):
            process.stop()


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
