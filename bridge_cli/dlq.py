"""``bridge dlq list|show|retry|drop``: the messages consumers gave up on.

A dead letter keeps the original subject, headers and body. ``retry`` publishes that body again
on its original subject (with a ``Nats-Msg-Id`` derived from the dead letter, so retrying the
same one twice delivers it once), for the consumer that gave up on it only, and then removes the
dead letter. A message Telegram refused for good (stream ``telegram-outbox``) sits in the relay's
outbox: ``retry`` asks the relay to queue it again, last in its group's queue. If the message
fails again it comes back as a new dead letter. ``drop`` removes it for good.
"""

from __future__ import annotations

import base64
from typing import Annotated, Any

import msgspec
import nats.js.errors
import typer
from rich.text import Text

from bridge_cli import context
from bridge_cli.events import _connect_or_exit
from bridge_cli.render import clock
from bridge_cli.streams import StoredMessage, publish_raw, read_stream
from bridge_lib.eventbus import (
    FORCE_EFFECTS_HEADER,
    MSG_ID_HEADER,
    REPLAY_HEADER,
    REPLAY_INTO_HEADER,
    RETRY_OF_HEADER,
)
from contracts.events import (
    TELEGRAM_OUTBOX_SOURCE,
    TELEGRAM_UPDATES_SOURCE,
    MessageDeadLettered,
    RetryTelegramDelivery,
    TelegramDeliveryRetried,
    decode_event,
    root_envelope,
)
from contracts.subjects import DEADLETTER_STREAM, RELAY_RETRY_TELEGRAM_DELIVERY

app = typer.Typer(
    help="Messages a consumer gave up on: look at them, retry them, drop them.", no_args_is_help=True
)

# An update Telegram sent that the gateway cannot read came from the Bot API, not from a stream.
NOT_RETRYABLE = (
    "an update from Telegram this version cannot read: nothing to re-publish; `bridge dlq drop` it"
)

SeqArguments = Annotated[
    list[int], typer.Argument(help="DEADLETTER stream sequence(s), from `bridge dlq list`")
]


def _dead_letter(message: StoredMessage) -> MessageDeadLettered | None:
    event = message.event()
    return event if isinstance(event, MessageDeadLettered) else None


@app.command("list")
def list_dead_letters(ctx: typer.Context) -> None:
    """Every dead letter waiting for an operator, oldest first."""
    target = context.target(ctx)

    async def run() -> list[StoredMessage]:
        nc = await _connect_or_exit(target.nats_url)
        try:
            return [m async for m in read_stream(nc.jetstream(), DEADLETTER_STREAM.name)]
        finally:
            await nc.close()

    out = context.console()
    messages = context.run(run())
    for message in messages:
        dead = _dead_letter(message)
        if dead is None:
            continue
        line = Text(f"{message.seq:>6}  {clock(message.time)}  ")
        line.append(f"{dead.consumer:<32} ", style="bold")
        line.append(f"{dead.reason:<18} ", style="red")
        line.append(f"{dead.stream}/{dead.stream_seq} {dead.original_event_type or 'undecodable'}  ")
        # A message Telegram refused for good: its detail names the group, the reason and the text.
        line.append(dead.detail[: 240 if dead.stream == TELEGRAM_OUTBOX_SOURCE else 120], style="dim")
        out.print(line)
    out.print(f"{len(messages)} dead letter(s)")


@app.command()
def show(ctx: typer.Context, seq: Annotated[int, typer.Argument(help="DEADLETTER stream sequence")]) -> None:
    """One dead letter in full: why, where from, its headers and its body."""
    target = context.target(ctx)
    dead = context.run(_get(target.nats_url, seq))
    out = context.console()
    out.print(
        f"dead letter {seq}: {dead.consumer} gave up ({dead.reason}) after {dead.num_delivered} deliveries"
    )
    out.print(f"  detail:      {dead.detail}")
    out.print(f"  original:    {dead.stream}/{dead.stream_seq} on {dead.original_subject}")
    out.print(f"  event:       {dead.original_event_type or 'undecodable'} {dead.original_event_id or ''}")
    out.print(f"  correlation: {dead.correlation_id}  (bridge trace {dead.correlation_id})")
    out.print("  headers:")
    for name, value in sorted(dead.original_headers.items()):
        out.print(f"    {name}: {value}")
    body = base64.b64decode(dead.body_b64)
    out.print("  body:")
    try:
        pretty = msgspec.json.format(body, indent=2).decode()
    except msgspec.DecodeError:
        pretty = repr(body[:2000])
    for line in pretty.splitlines():
        out.print(f"    {line}")


@app.command()
def retry(ctx: typer.Context, seqs: SeqArguments) -> None:
    """Deliver dead letters again, on their original subjects, then remove them from the DLQ."""
    target = context.target(ctx)
    out = context.console()
    for seq, what in context.run(_retry(target.nats_url, seqs)):
        out.print(f"{seq}: {what}")


@app.command()
def drop(
    ctx: typer.Context,
    seqs: SeqArguments,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="do not ask")] = False,
) -> None:
    """Remove dead letters for good (the original stays in its stream while retention keeps it)."""
    target = context.target(ctx)
    if not yes and not typer.confirm(f"Drop {len(seqs)} dead letter(s) for good?"):
        raise typer.Exit(1)

    async def run() -> None:
        nc = await _connect_or_exit(target.nats_url)
        try:
            js = nc.jetstream()
            for seq in seqs:
                try:
                    await js.delete_msg(DEADLETTER_STREAM.name, seq)
                    context.console().print(f"{seq}: dropped")
                except nats.js.errors.NotFoundError:
                    context.console().print(f"{seq}: no such dead letter")
        finally:
            await nc.close()

    context.run(run())


async def _get(nats_url: str, seq: int) -> MessageDeadLettered:
    nc = await _connect_or_exit(nats_url)
    try:
        return await _fetch(nc.jetstream(), seq)
    finally:
        await nc.close()


async def _fetch(js: Any, seq: int) -> MessageDeadLettered:
    try:
        raw = await js.get_msg(DEADLETTER_STREAM.name, seq)
    except nats.js.errors.NotFoundError:
        raise context.fail(f"no dead letter {seq}", hint="`bridge dlq list` shows them") from None
    event = decode_event(raw.data or b"")
    if not isinstance(event, MessageDeadLettered):
        raise context.fail(f"message {seq} of {DEADLETTER_STREAM.name} is not a dead letter")
    return event


async def _retry(nats_url: str, seqs: list[int]) -> list[tuple[int, str]]:
    results: list[tuple[int, str]] = []
    nc = await _connect_or_exit(nats_url)
    try:
        js = nc.jetstream()
        for seq in seqs:
            dead = await _fetch(js, seq)
            if dead.stream == TELEGRAM_UPDATES_SOURCE:
                results.append((seq, NOT_RETRYABLE))
                continue
            if dead.stream == TELEGRAM_OUTBOX_SOURCE:
                results.append((seq, await _retry_telegram_delivery(nc, js, seq, dead)))
                continue
            headers = {
                name: value
                for name, value in dead.original_headers.items()
                if name not in (MSG_ID_HEADER, REPLAY_HEADER, FORCE_EFFECTS_HEADER, REPLAY_INTO_HEADER)
            }
            # Derived from the dead letter: retrying the same one twice is one delivery.
            headers[MSG_ID_HEADER] = f"dlq-retry:{dead.stream}:{dead.stream_seq}:{seq}"
            headers[RETRY_OF_HEADER] = str(seq)
            # Only the consumer that gave up handles it again; the others of the subject did already.
            headers[REPLAY_INTO_HEADER] = dead.consumer
            stored = await publish_raw(js, dead.original_subject, base64.b64decode(dead.body_b64), headers)
            await js.delete_msg(DEADLETTER_STREAM.name, seq)
            results.append(
                (seq, f"re-published on {dead.original_subject}" if stored else "already retried; removed")
            )
    finally:
        await nc.close()
    return results


async def _retry_telegram_delivery(nc: Any, js: Any, seq: int, dead: MessageDeadLettered) -> str:
    """A message Telegram refused for good sits in the relay's outbox: the relay queues it again."""
    operator = context.operator_name()
    command = RetryTelegramDelivery(
        **root_envelope(f"ops:retry-delivery:{dead.original_event_id}:{seq}", caused_by=operator),
        outbox_key=dead.original_event_id or "",
        operator=operator,
    )
    try:
        reply = await nc.request(RELAY_RETRY_TELEGRAM_DELIVERY, msgspec.json.encode(command), timeout=10.0)
    except Exception as error:  # no relay answers (NoRespondersError, a timeout)
        raise context.fail(
            f"no relay answered the retry of dead letter {seq} ({type(error).__name__})",
            hint="the relay queues messages Telegram refused; start it and retry",
        ) from None
    answer = msgspec.json.decode(reply.data, type=TelegramDeliveryRetried)
    if answer.queued or answer.detail.startswith("no message set aside"):
        await js.delete_msg(DEADLETTER_STREAM.name, seq)
    return answer.detail if answer.queued else f"{answer.detail}; removed"
