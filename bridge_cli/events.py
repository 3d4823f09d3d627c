"""``bridge events tail | dump | replay``: watch, export and re-deliver stored events."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import msgspec
import typer
from nats.js.api import ConsumerConfig, DeliverPolicy
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from bridge_cli import context
from bridge_cli.filters import EventFilter, parse_moment
from bridge_cli.render import event_line
from bridge_cli.streams import (
    DumpRecord,
    StoredMessage,
    connect,
    publish_raw,
    read_stream,
    stream_filter,
    stream_names,
    subject_matches,
)
from bridge_lib.eventbus import FORCE_EFFECTS_HEADER, MSG_ID_HEADER, REPLAY_HEADER, REPLAY_INTO_HEADER

app = typer.Typer(help="Watch, export and re-deliver the events stored in JetStream.", no_args_is_help=True)

ChatOption = Annotated[int | None, typer.Option("--chat", help="only events about this Telegram chat id")]
TaskOption = Annotated[int | None, typer.Option("--task", help="only events about this Planfix task")]
TypeOption = Annotated[
    str | None, typer.Option("--type", help="only event types containing this, e.g. message_received")
]
StreamOption = Annotated[
    list[str] | None, typer.Option("--stream", help="stream(s) to read (default: all); repeat for more")
]


def _filter(chat: int | None, task: int | None, event_type: str | None) -> EventFilter:
    return EventFilter(chat_id=chat, task_number=task, event_type=event_type)


def _streams(chosen: list[str] | None) -> list[str]:
    names = [name.upper() for name in chosen or stream_names()]
    unknown = [name for name in names if name not in stream_names()]
    if unknown:
        raise context.fail(f"unknown stream(s) {unknown}", hint=f"choose from {', '.join(stream_names())}")
    return names


# --- tail ---------------------------------------------------------------------------------------


@app.command()
def tail(
    ctx: typer.Context,
    chat: ChatOption = None,
    task: TaskOption = None,
    event_type: TypeOption = None,
    stream: StreamOption = None,
    since: Annotated[
        str | None, typer.Option(help="start this far back (15m, 2h) or at an ISO time; default: now")
    ] = None,
    count: Annotated[int | None, typer.Option(help="stop after this many events")] = None,
) -> None:
    """Follow new events live, one line each, coloured by kind (Ctrl-C stops)."""
    target = context.target(ctx)
    wanted = _filter(chat, task, event_type)
    start = parse_moment(since) if since else None
    with contextlib.suppress(KeyboardInterrupt):
        context.run(_tail(target.nats_url, _streams(stream), wanted, start, count))


async def _tail(
    nats_url: str, streams: list[str], wanted: EventFilter, start: datetime | None, count: int | None
) -> None:
    out = context.console()
    nc = await _connect_or_exit(nats_url)
    queue: asyncio.Queue[StoredMessage] = asyncio.Queue()

    def collect(stream: str) -> Any:
        async def on_message(msg: Any) -> None:
            metadata = msg.metadata
            await queue.put(
                StoredMessage(
                    stream=stream,
                    seq=metadata.sequence.stream,
                    subject=msg.subject,
                    time=metadata.timestamp,
                    headers=dict(msg.headers or {}),
                    data=msg.data,
                )
            )

        return on_message

    try:
        js = nc.jetstream()
        for stream in streams:
            config = ConsumerConfig()
            if start is not None:
                config.deliver_policy = DeliverPolicy.BY_START_TIME
                config.opt_start_time = start
            else:
                config.deliver_policy = DeliverPolicy.NEW
            await js.subscribe(
                stream_filter(stream), stream=stream, ordered_consumer=True, config=config, cb=collect(stream)
            )
        context.error_console().print(f"following {', '.join(streams)} (Ctrl-C stops)")
        shown = 0
        while count is None or shown < count:
            message = await queue.get()
            event = message.event()
            if wanted.matches(event):
                out.print(event_line(message, event))
                shown += 1
    finally:
        await nc.close()


# --- dump ---------------------------------------------------------------------------------------


@app.command()
def dump(
    ctx: typer.Context,
    output: Annotated[Path, typer.Option("-o", "--output", help="JSON-lines file to write ('-': stdout)")],
    chat: ChatOption = None,
    task: TaskOption = None,
    event_type: TypeOption = None,
    stream: StreamOption = None,
    since: Annotated[str | None, typer.Option(help="from this time (ISO) or age (15m, 2h, 3d)")] = None,
    until: Annotated[str | None, typer.Option(help="up to this time (ISO) or age")] = None,
    from_seq: Annotated[
        int | None, typer.Option(help="from this stream sequence (needs one --stream)")
    ] = None,
    to_seq: Annotated[
        int | None, typer.Option(help="up to this stream sequence (needs one --stream)")
    ] = None,
) -> None:
    """Export stored events, with their headers and stream sequence, as JSON lines."""
    target = context.target(ctx)
    streams = _streams(stream)
    if (from_seq is not None or to_seq is not None) and len(streams) != 1:
        raise context.fail("--from-seq/--to-seq count within one stream", hint="add --stream NAME")
    ranges = _range(since, until, from_seq, to_seq)
    count = context.run(_dump(target.nats_url, streams, ranges, _filter(chat, task, event_type), output))
    where = "stdout" if str(output) == "-" else str(output)
    context.error_console().print(f"dumped {count} event(s) from {', '.join(streams)} to {where}")


def _range(since: str | None, until: str | None, from_seq: int | None, to_seq: int | None) -> dict[str, Any]:
    return {
        "start_time": parse_moment(since) if since else None,
        "end_time": parse_moment(until) if until else None,
        "start_seq": from_seq,
        "end_seq": to_seq,
    }


async def _dump(
    nats_url: str, streams: list[str], ranges: dict[str, Any], wanted: EventFilter, output: Path
) -> int:
    nc = await _connect_or_exit(nats_url)
    encoder = msgspec.json.Encoder()
    count = 0
    try:
        js = nc.jetstream()
        sink = sys.stdout.buffer if str(output) == "-" else output.open("wb")
        err = context.error_console()
        progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            console=err,
            disable=not err.is_terminal,
        )
        try:
            with progress:
                for stream in streams:
                    info = await js.stream_info(stream)
                    first = max(ranges["start_seq"] or info.state.first_seq, info.state.first_seq)
                    last = min(ranges["end_seq"] or info.state.last_seq, info.state.last_seq)
                    bar = progress.add_task(stream, total=max(0, last - first + 1))
                    async for message in read_stream(js, stream, **ranges):
                        progress.update(bar, completed=message.seq - first + 1)
                        if wanted.matches(message.event()):
                            sink.write(encoder.encode(DumpRecord.of(message)) + b"\n")
                            count += 1
                    progress.update(bar, completed=max(0, last - first + 1))
        finally:
            if sink is not sys.stdout.buffer:
                sink.close()
            else:
                sink.flush()
    finally:
        await nc.close()
    return count


# --- replay -------------------------------------------------------------------------------------


class ReplayPlan(msgspec.Struct, kw_only=True):
    message: StoredMessage
    subject: str
    also_seen_by: list[str]


class ReplaySource(msgspec.Struct, frozen=True, kw_only=True):
    """Where the replayed messages come from: a dump file, or a range of a stream."""

    file: Path | None = None
    stream: str | None = None
    from_seq: int | None = None
    to_seq: int | None = None

    async def messages(self, js: Any) -> list[StoredMessage]:
        if self.file is not None:
            decoder = msgspec.json.Decoder(DumpRecord)
            content = await asyncio.to_thread(self.file.read_bytes)
            lines = [line for line in content.splitlines() if line.strip()]
            try:
                return [decoder.decode(line).to_message() for line in lines]
            except (msgspec.DecodeError, msgspec.ValidationError) as error:
                raise context.fail(f"{self.file} is not a `bridge events dump` file: {error}") from None
        assert self.stream is not None
        return [m async for m in read_stream(js, self.stream, start_seq=self.from_seq, end_seq=self.to_seq)]


class ReplayMode(msgspec.Struct, frozen=True, kw_only=True):
    """How the messages are sent again: where to, marked how, and whether at all (``dry_run``)."""

    replay_id: str
    # A durable consumer's name, or a subject (it contains a dot); None: each message's own subject.
    into: str | None = None
    dry_run: bool = False
    force_effects: bool = False

    @property
    def into_consumer(self) -> bool:
        return self.into is not None and "." not in self.into

    def headers(self, message: StoredMessage) -> dict[str, str]:
        """``message``'s headers as replayed: a new message id, marked with this replay."""
        headers = {
            name: value
            for name, value in message.headers.items()
            if name not in (MSG_ID_HEADER, REPLAY_HEADER, FORCE_EFFECTS_HEADER, REPLAY_INTO_HEADER)
        }
        headers[MSG_ID_HEADER] = f"replay:{self.replay_id}:{message.stream}:{message.seq}"
        headers[REPLAY_HEADER] = self.replay_id
        if self.into_consumer:
            assert self.into is not None
            headers[REPLAY_INTO_HEADER] = self.into
        if self.force_effects:
            headers[FORCE_EFFECTS_HEADER] = "true"
        return headers


@app.command()
def replay(
    ctx: typer.Context,
    file: Annotated[Path | None, typer.Argument(help="a file written by `bridge events dump`")] = None,
    into: Annotated[
        str | None,
        typer.Option(
            help="a durable consumer (e.g. relay-telegram-inbound): only the messages it reads are "
            "sent, and only it handles them (the other consumers of the subject acknowledge and skip "
            "them); or a subject (containing a dot): everything is sent there and every consumer of "
            "that subject handles it; default: each message goes to its own subject and every "
            "consumer of it handles it again"
        ),
    ] = None,
    stream: Annotated[str | None, typer.Option(help="read the range from this stream")] = None,
    from_seq: Annotated[int | None, typer.Option(help="first stream sequence to replay")] = None,
    to_seq: Annotated[int | None, typer.Option(help="last stream sequence to replay")] = None,
    chat: ChatOption = None,
    task: TaskOption = None,
    event_type: TypeOption = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="show what would be sent; send nothing")] = False,
    force_effects: Annotated[
        bool,
        typer.Option(
            "--force-effects",
            help="carry out effects again even where records say they were done: posts to Planfix "
            "and Telegram again, in every consumer that handles the replay (so name one with --into); "
            "without it, what records say was done is not done again",
        ),
    ] = False,
    replay_id: Annotated[str | None, typer.Option(help="id marking this replay (default: generated)")] = None,
) -> None:
    """Re-deliver stored events to a service, marked as a replay so effects stay idempotent.

    The copies are stored again in their stream, marked with the replay id. Whoever handles one
    does again what its records do not show as done (a comment never posted is posted); with
    --force-effects it does everything again. --into <consumer> limits that to one consumer.
    """
    target = context.target(ctx)
    if (file is None) == (stream is None):
        raise context.fail(
            "give either a dump file or --stream with --from-seq/--to-seq",
            hint="bridge events replay dump.jsonl --into relay-telegram-inbound, or "
            "bridge events replay --stream TELEGRAM --from-seq 10 --to-seq 20",
        )
    if file is not None and not file.is_file():
        raise context.fail(f"{file} is not a file")
    wanted = _filter(chat, task, event_type)
    source = ReplaySource(
        file=file, stream=stream.upper() if stream else None, from_seq=from_seq, to_seq=to_seq
    )
    mode = ReplayMode(
        replay_id=replay_id or f"r{datetime.now(UTC):%Y%m%d%H%M%S}-{secrets.token_hex(2)}",
        into=into,
        dry_run=dry_run,
        force_effects=force_effects,
    )
    context.run(_replay(target.nats_url, source, mode, wanted))


async def _replay(nats_url: str, source: ReplaySource, mode: ReplayMode, wanted: EventFilter) -> None:
    out = context.console()
    nc = await _connect_or_exit(nats_url)
    try:
        js = nc.jetstream()
        messages = await source.messages(js)
        consumers = await _all_consumers(js)
        plans, skipped = _plan(messages, mode, consumers, wanted)
        verb = "would send" if mode.dry_run else "sending"
        out.print(
            f"replay {mode.replay_id}: {verb} {len(plans)} message(s)"
            + (f", {skipped} not for {mode.into}" if skipped else "")
            + (" with --force-effects (effects are carried out again)" if mode.force_effects else "")
        )
        sent = 0
        for plan in plans:
            line = event_line(plan.message, plan.message.event())
            line.append(f"  -> {plan.subject}")
            if plan.also_seen_by:
                who = ", ".join(plan.also_seen_by)
                line.append(f" (skipped by {who})" if mode.into_consumer else f" (handled by {who})")
            out.print(line)
            if mode.dry_run:
                continue
            await publish_raw(js, plan.subject, plan.message.data, mode.headers(plan.message))
            sent += 1
        if not mode.dry_run:
            out.print(f"replay {mode.replay_id}: sent {sent} message(s)")
    finally:
        await nc.close()


async def _all_consumers(js: Any) -> dict[str, tuple[str, list[str]]]:
    """Durable consumer name -> (its stream, its filter subjects)."""
    found: dict[str, tuple[str, list[str]]] = {}
    for stream in stream_names():
        try:
            infos = await js.consumers_info(stream)
        except Exception:  # the stream does not exist (yet)
            continue
        for info in infos:
            config = info.config
            if not config.durable_name:
                continue
            filters = list(config.filter_subjects or []) or [config.filter_subject or ">"]
            found[config.durable_name] = (stream, filters)
    return found


def _plan(
    messages: list[StoredMessage],
    mode: ReplayMode,
    consumers: dict[str, tuple[str, list[str]]],
    wanted: EventFilter,
) -> tuple[list[ReplayPlan], int]:
    into, into_consumer = mode.into, mode.into_consumer
    if into_consumer and into not in consumers:
        raise context.fail(
            f"no durable consumer named {into!r}",
            hint=f"known consumers: {', '.join(sorted(consumers)) or 'none (are the services running?)'}",
        )
    plans: list[ReplayPlan] = []
    skipped = 0
    for message in messages:
        if not wanted.matches(message.event()):
            continue
        subject = into if into is not None and not into_consumer else message.subject
        if into_consumer:
            assert into is not None
            stream, filters = consumers[into]
            if message.stream != stream or not any(subject_matches(f, subject) for f in filters):
                skipped += 1
                continue
        seen_by = [
            name
            for name, (_, filters) in sorted(consumers.items())
            if name != into and any(subject_matches(f, subject) for f in filters)
        ]
        plans.append(ReplayPlan(message=message, subject=subject, also_seen_by=seen_by))
    return plans, skipped


async def _connect_or_exit(nats_url: str) -> Any:
    try:
        return await connect(nats_url)
    except Exception as error:
        raise context.fail(
            f"cannot reach NATS ({type(error).__name__}: {error})",
            hint="check NATS_URL (or --nats-url) and that the server runs",
        ) from None
