"""Start the embedded infrastructure: a real ``nats-server`` with JetStream and ``nx-27017``.

Used by ``make run`` (the launcher) and by the test fixtures, so both start the same things the
same way. Both programs come from PyPI wheels installed in the virtualenv, next to the Python
interpreter running this code.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

# The bridge's services (``python -m services.<name>``) and the variable of each one's health port.
SERVICES = ("binder", "relay", "planfix_gateway", "telegram_gateway")
HEALTH_PORT_VARIABLES = {
    "binder": "BINDER_HEALTH_PORT",
    "relay": "RELAY_HEALTH_PORT",
    "planfix_gateway": "PLANFIX_GATEWAY_HEALTH_PORT",
    "telegram_gateway": "TELEGRAM_GATEWAY_HEALTH_PORT",
}


def venv_binary(name: str) -> str:
    candidate = Path(sys.executable).parent / name
    if candidate.exists():
        return str(candidate)
    found = shutil.which(name)
    if not found:
        raise FileNotFoundError(f"{name} not found next to {sys.executable} or on PATH; run `make install`")
    return found


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for_port(
    port: int,
    *,
    host: str = "127.0.0.1",
    timeout_s: float = 20.0,
    process: subprocess.Popen[bytes] | None = None,
    what: str = "server",
) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"{what} exited with code {process.returncode} before listening on {port}")
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
            return
        time.sleep(0.05)
    raise TimeoutError(f"{what} did not listen on {host}:{port} within {timeout_s}s")


@dataclass
class ManagedProcess:
    name: str
    process: subprocess.Popen[bytes]
    port: int
    extra: dict[str, str] = field(default_factory=dict)

    def stop(self, timeout_s: float = 10.0) -> None:
        if self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def start_nats(
    data_dir: Path,
    *,
    port: int | None = None,
    log_file: Path | None = None,
    config_file: Path | None = None,
    env: dict[str, str] | None = None,
) -> ManagedProcess:
    """``config_file``: a nats-server configuration (e.g. with deploy/nats/accounts.conf's users),
    ``env``: variables it reads (their passwords); the flags below take precedence over it."""
    port = port or free_port()
    process = _spawn(
        [
            venv_binary("nats-server"),
            "--jetstream",
            "--store_dir",
            str(data_dir),
            "--addr",
            "127.0.0.1",
            "--port",
            str(port),
            "--server_name",
            f"bridge-dev-{port}",
            *(["--config", str(config_file)] if config_file is not None else []),
        ],
        data_dir=data_dir,
        port=port,
        log_file=log_file,
        what="nats-server",
        env={**os.environ, **env} if env is not None else None,
    )
    return ManagedProcess("nats", process, port, {"url": f"nats://127.0.0.1:{port}"})


def _spawn(
    command: list[str],
    *,
    data_dir: Path,
    port: int,
    log_file: Path | None,
    what: str,
    env: dict[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    """A server process keeping its data in ``data_dir``, its output in ``log_file`` (or nowhere),
    once it listens on ``port``."""
    data_dir.mkdir(parents=True, exist_ok=True)
    out = open(log_file, "ab") if log_file else subprocess.DEVNULL  # noqa: SIM115 - lives with the process
    process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)
    wait_for_port(port, process=process, what=what)
    return process


@dataclass
class NatsCluster:
    """Three (or more) clustered nats-server processes on loopback, each with JetStream."""

    nodes: list[ManagedProcess]
    data_dirs: list[Path]
    cluster_ports: list[int]
    log_files: list[Path | None]

    @property
    def url(self) -> str:
        """All client URLs, comma-separated: the form NATS_URL takes for a cluster."""
        return ",".join(node.extra["url"] for node in self.nodes)

    def stop_node(self, index: int, *, kill: bool = False) -> None:
        node = self.nodes[index]
        if kill:
            node.process.kill()
            node.process.wait()
        else:
            node.stop()

    def start_node(self, index: int) -> None:
        """Start a stopped node again with the same ports and data (it rejoins the cluster)."""
        self.nodes[index] = _start_cluster_node(
            index, self.nodes[index].port, self.cluster_ports, self.data_dirs[index], self.log_files[index]
        )

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


def start_nats_cluster(base_dir: Path, *, size: int = 3, log_dir: Path | None = None) -> NatsCluster:
    client_ports = [free_port() for _ in range(size)]
    cluster_ports = [free_port() for _ in range(size)]
    data_dirs = [base_dir / f"node{index}" for index in range(size)]
    log_files: list[Path | None] = [
        log_dir / f"nats-node{index}.log" if log_dir else None for index in range(size)
    ]
    nodes = [
        _start_cluster_node(index, client_ports[index], cluster_ports, data_dirs[index], log_files[index])
        for index in range(size)
    ]
    return NatsCluster(nodes, data_dirs, cluster_ports, log_files)


def _start_cluster_node(
    index: int, port: int, cluster_ports: list[int], data_dir: Path, log_file: Path | None
) -> ManagedProcess:
    routes = ",".join(f"nats-route://127.0.0.1:{other}" for other in cluster_ports)
    process = _spawn(
        [venv_binary("nats-server"), "--jetstream", "--store_dir", str(data_dir), "--addr", "127.0.0.1",
         "--port", str(port), "--server_name", f"bridge-node{index}", "--cluster_name", "bridge",
         "--cluster", f"nats://127.0.0.1:{cluster_ports[index]}", "--routes", routes],
        data_dir=data_dir, port=port, log_file=log_file, what=f"nats-server node {index}",
    )  # fmt: skip
    return ManagedProcess(f"nats{index}", process, port, {"url": f"nats://127.0.0.1:{port}"})


def start_nx27017(data_dir: Path, *, port: int | None = None, log_file: Path | None = None) -> ManagedProcess:
    port = port or free_port()
    process = _spawn(
        [
            venv_binary("nx-27017"),
            "--data-dir",
            str(data_dir),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--log-file",
            str(data_dir / "nx-27017.log"),
            "--pid-file",
            str(data_dir / "nx-27017.pid"),
        ],
        data_dir=data_dir,
        port=port,
        log_file=log_file,
        what="nx-27017",
    )
    return ManagedProcess("mongo", process, port, {"url": f"mongodb://127.0.0.1:{port}"})


@contextlib.contextmanager
def running(*processes: ManagedProcess) -> Iterator[None]:
    try:
        yield
    finally:
        for managed in reversed(processes):
            managed.stop()
