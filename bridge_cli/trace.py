"""``bridge trace``: every event and effect of one message, in order, across all streams.

The answer to "where did my message go?". A message is named by its correlation id (every log
line and event of its chain carries it), or by where it came from: ``tg:<chat id>:<message id>``
for a Telegram message or ``/task`` command, ``pf:<comment id>`` for a Planfix comment; the
correlation id is derived from those exactly as the gateways derive it.

Under each stored event, the trace says how far each durable consumer that reads it has got:
handled (acknowledged), delivered and not yet acknowledged (being handled, or waiting for a
retry), or still queued behind other messages.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any

import msgspec
import typer
from rich.text import Text

from bridge_cli import context
from bridge_cli.events import _all_consumers, _connect_or_exit
from bridge_cli.filters import parse_moment
from bridge_cli.render import event_line, published_by
from bridge_cli.streams import StoredMessage, read_stream, stream_names, subject_matches
from bridge_lib.eventbus import CORRELATION_HEADER, EVENT_TYPE_HEADER
from contracts.events import (
    MessageDeadLettered,
    TelegramMessageSent,
    event_id_for,
    planfix_webhook_key,
    telegram_bind_key,
    telegram_message_key,
)

_TELEGRAM_REF = re.compile(r"tg:(-?\d+):(\d+)")
_PLANFIX_REF = re.compile(r"pf:(\d+)")


def correlation_ids(reference: str) -> list[str]:
    """The correlation id(s) a reference stands for."""
    reference = reference.strip()
    if match := _TELEGRAM_REF.fullmatch(reference):
        chat, message = int(match[1]), int(match[2])
        # The same Telegram message is either a text message or a /task command.
        return [
            event_id_for(telegram_message_key(chat, message)),
            event_id_for(telegram_bind_key(chat, message)),
        ]
    if match := _PLANFIX_REF.fullmatch(reference):
        return [event_id_for(planfix_webhook_key(int(match[1])))]
    return [reference]


class ConsumerProgress(msgspec.Struct, frozen=True):
    name: str
    stream: str
    filters: list[str]
    ack_floor: int
    delivered: int
    num_pending: int

    def status_of(self, seq: int) -> str:
        if seq <= self.ack_floor:
            return "handled"
        if seq <= self.delivered:
            return "delivered, not acknowledged yet (being handled or waiting for a retry)"
        return f"queued: not delivered yet ({self.num_pending} message(s) waiting for this consumer)"


def trace_command(
    ctx: typer.Context,
    reference: Annotated[
        str, typer.Argument(help="a correlation id, tg:<chat id>:<message id> or pf:<comment id>")
    ],
    since: Annotated[
        str | None, typer.Option(help="look only this far back (2h, 3d) or from an ISO time; default: all")
    ] = None,
) -> None:
    """Every event and effect of one message, in order, across all streams."""
    target = context.target(ctx)
    found = context.run(
        _trace(target.nats_url, correlation_ids(reference), parse_moment(since) if since else None)
    )
    if not found:
        raise typer.Exit(1)


async def _trace(nats_url: str, ids: list[str], since: datetime | None) -> bool:
    out = context.console()
    nc = await _connect_or_exit(nats_url)
    try:
        js = nc.jetstream()
        wanted = set(ids)
        steps: list[StoredMessage] = []
        for stream in stream_names():
            async for message in read_stream(js, stream, start_time=since):
                if not wanted.isdisjoint(correlations_of(message)):
                    steps.append(message)
        steps.sort(key=lambda m: (m.time or datetime.min, m.stream, m.seq))
        progress = await _consumer_progress(js)
    finally:
        await nc.close()
    if not steps:
        out.print(f"nothing stored for {' or '.join(ids)}")
        out.print(
            "  The message never reached the bridge: is the group's bot privacy off, is the gateway "
            "running (bridge doctor), or did it happen before the streams' retention (30 days)?"
        )
        return False
    correlation = _correlation_of(steps[0]) or ids[0]
    out.print(Text(f"trace {correlation}: {len(steps)} event(s)", style="bold"))
    for number, message in enumerate(steps, 1):
        event = message.event()
        line = Text(f"{number:>2}. ")
        line.append(f"{published_by(message.subject):<17} ")
        line.append_text(event_line(message, event))
        out.print(line)
        for consumer in progress:
            if consumer.stream == message.stream and any(
                subject_matches(f, message.subject) for f in consumer.filters
            ):
                out.print(f"      -> {consumer.name}: {consumer.status_of(message.seq)}")
        if isinstance(event, MessageDeadLettered):
            out.print(
                f"      -> `bridge dlq show {message.seq}`; `bridge dlq retry {message.seq}` re-delivers it"
            )
    return True


def correlations_of(message: StoredMessage) -> list[str]:
    """The stories the message is a step of: one, or each comment one Telegram message shows."""
    own = _correlation_of(message)
    if message.headers.get(EVENT_TYPE_HEADER) == TelegramMessageSent.__struct_config__.tag:
        event = message.event()
        if isinstance(event, TelegramMessageSent):
            return event.correlation_ids()
    return [own] if own else []


def _correlation_of(message: StoredMessage) -> str | None:
    header = message.headers.get(CORRELATION_HEADER)
    if header:
        return header
    event = message.event()
    return event.correlation_id if event is not None else None


async def _consumer_progress(js: Any) -> list[ConsumerProgress]:
    progress: list[ConsumerProgress] = []
    for name, (stream, filters) in sorted((await _all_consumers(js)).items()):
        info = await js.consumer_info(stream, name)
        progress.append(
            ConsumerProgress(
                name=name,
                stream=stream,
                filters=filters,
                ack_floor=info.ack_floor.stream_seq if info.ack_floor else 0,
                delivered=info.delivered.stream_seq if info.delivered else 0,
                num_pending=info.num_pending or 0,
            )
        )
    return progress
