"""What every command shares: where NATS and MongoDB are, the console, and running async code."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Coroutine
from typing import Any, TypeVar
from urllib.parse import urlsplit

import msgspec
import typer
from rich.console import Console

from bridge_lib.settings import MongoSettings, NatsSettings

T = TypeVar("T")


class CliSettings(NatsSettings, MongoSettings):
    """``NATS_URL``, ``MONGODB_URL`` and ``MONGODB_DATABASE`` from the environment or ``.env``."""


class Target(msgspec.Struct, kw_only=True):
    nats_url: str
    mongodb_url: str
    mongodb_database: str


def console() -> Console:
    # Not a terminal (a pipe, a file, a test): no colours, and lines never wrapped mid-way.
    return Console(highlight=False, soft_wrap=True)


def error_console() -> Console:
    return Console(stderr=True, highlight=False, soft_wrap=True)


def target(ctx: typer.Context) -> Target:
    found: Target = ctx.obj
    return found


def resolve_target(nats_url: str | None, mongodb_url: str | None, database: str | None) -> Target:
    settings = CliSettings()
    return Target(
        nats_url=nats_url or settings.nats_url,
        mongodb_url=mongodb_url or settings.mongodb_url,
        mongodb_database=database or settings.mongodb_database,
    )


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coroutine)


def fail(message: str, *, hint: str | None = None, code: int = 1) -> typer.Exit:
    """Print what went wrong (and how to fix it) and return the exit to raise."""
    err = error_console()
    err.print(f"[bold red]error:[/] {message}")
    if hint:
        err.print(f"  how to fix: {hint}")
    return typer.Exit(code)


def operator_name() -> str:
    return f"bridge-cli:{os.environ.get('USER') or os.environ.get('USERNAME') or 'unknown'}"


def stdout_is_terminal() -> bool:
    return sys.stdout.isatty()


def host_of(url: str) -> str:
    """host:port of the first server only: a NATS or MongoDB URL may carry a user and password."""
    first = url.split(",")[0]
    try:
        parts = urlsplit(first)
        return f"{parts.hostname}:{parts.port}" if parts.port else str(parts.hostname)
    except ValueError:
        return "(see the URL setting)"
