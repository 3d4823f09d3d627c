"""``bridge``: inspect, replay and repair a running bridge's event streams.

    bridge events tail [--chat ID] [--task N] [--type T]      live, one line per event
    bridge events dump --since 2h [filters] -o events.jsonl   export with headers and sequence
    bridge events replay events.jsonl --into <consumer|subject> [--dry-run] [--force-effects]
    bridge trace <correlation id | tg:CHAT:MESSAGE | pf:COMMENT>
    bridge bindings list | show CHAT | unbind CHAT
    bridge dlq list | show SEQ | retry SEQ... | drop SEQ...
    bridge binder rebuild [--dry-run]
    bridge erase --chat ID [--dry-run]                        forget a group (unbound first)
    bridge doctor

NATS and MongoDB are found as the services find them (``NATS_URL``, ``MONGODB_URL``,
``MONGODB_DATABASE`` from the environment or ``.env``), or with the options below.
"""

from __future__ import annotations

from typing import Annotated

import typer

from bridge_cli import bindings, context, dlq, doctor, erase, events, trace

app = typer.Typer(
    name="bridge",
    help="Inspect, replay and repair the planfix-telegram-bridge event streams.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,  # locals may hold tokens
    add_completion=False,
)


@app.callback()
def main(
    ctx: typer.Context,
    nats_url: Annotated[
        str | None, typer.Option("--nats-url", help="NATS server (default: NATS_URL)", show_default=False)
    ] = None,
    mongodb_url: Annotated[
        str | None, typer.Option("--mongodb-url", help="MongoDB (default: MONGODB_URL)", show_default=False)
    ] = None,
    database: Annotated[
        str | None, typer.Option("--database", help="MongoDB database (default: MONGODB_DATABASE)")
    ] = None,
) -> None:
    ctx.obj = context.resolve_target(nats_url, mongodb_url, database)


app.add_typer(events.app, name="events")
app.add_typer(bindings.bindings_app, name="bindings")
app.add_typer(bindings.binder_app, name="binder")
app.add_typer(dlq.app, name="dlq")
app.command("trace")(trace.trace_command)
app.command("doctor")(doctor.doctor_command)
app.command("erase")(erase.erase_command)
