"""The page's live timeline: every event stored in the bridge's streams, read from NATS.

The sandbox reads the streams the way ``bridge events tail`` does, through ordered consumers
(ephemeral, no acks), so it never disturbs the services' durable consumers. Each stream is read
from its start, which also gives the page its history and tells it which group is bound to
which task (BINDING events), without asking any service.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import msgspec
import nats
import nats.errors
import nats.js.errors
import structlog
from nats.aio.client import Client as NatsClient
from nats.js.api import ConsumerConfig, DeliverPolicy

from bridge_cli.render import summary as cli_summary
from contracts import people as people_fold
from contracts.events import (
    AnyEvent,
    BindingMoved,
    PlanfixCommentAdded,
    PlanfixCommentUpdated,
    TaskBound,
    TaskUnbound,
    TelegramMessageEdited,
    TelegramMessageReceived,
    decode_event,
)
from contracts.people import People
from contracts.subjects import ALL_STREAMS

log = structlog.get_logger("sandbox")

KEPT_EVENTS = 2000
SNIPPET = 60
_TAGS = re.compile(r"<[^>]+>")


@dataclass(frozen=True)
class TimelineEntry:
    stream: str
    seq: int
    subject: str
    time: str  # ISO, when the stream stored it
    type: str
    correlation_id: str
    summary: str
    body: Any  # the event's JSON as stored

    @property
    def key(self) -> str:
        return f"{self.stream}/{self.seq}"

    def row(self) -> dict[str, Any]:
        """What the timeline list shows (the full JSON is fetched on a click)."""
        return {
            "key": self.key,
            "stream": self.stream,
            "seq": self.seq,
            "subject": self.subject,
            "time": self.time,
            "type": self.type,
            "correlation_id": self.correlation_id,
            "summary": self.summary,
        }


@dataclass(frozen=True)
class BoundTask:
    task_number: int
    task_title: str


@dataclass
class Timeline:
    entries: deque[TimelineEntry] = field(default_factory=lambda: deque(maxlen=KEPT_EVENTS))
    by_key: dict[str, TimelineEntry] = field(default_factory=dict)
    # (chat id, topic thread id or None) -> the task it is bound to now.
    bindings: dict[tuple[int, int | None], BoundTask] = field(default_factory=dict)
    # One queue per open page (server-sent events), fed every new entry.
    listeners: set[asyncio.Queue[TimelineEntry]] = field(default_factory=set)
    # Who each Telegram person is in Planfix: the PEOPLE fold every service shares.
    people: People = field(default_factory=People)
    connected: bool = False

    def add(self, entry: TimelineEntry, event: AnyEvent | None) -> None:
        if len(self.entries) == self.entries.maxlen:
            self.by_key.pop(self.entries[0].key, None)
        self.entries.append(entry)
        self.by_key[entry.key] = entry
        if event is not None:
            self._fold_binding(event)
            self.people = people_fold.evolve(self.people, event)
        for listener in self.listeners:
            listener.put_nowait(entry)

    def history(self) -> list[TimelineEntry]:
        # Streams are read side by side: merge them by the time they were stored.
        return sorted(self.entries, key=lambda entry: (entry.time, entry.stream, entry.seq))

    def _fold_binding(self, event: AnyEvent) -> None:
        match event:
            case TaskBound():
                self.bindings[(event.chat_id, event.thread_id)] = BoundTask(
                    event.task_number, event.task_title
                )
            case TaskUnbound():
                self.bindings.pop((event.chat_id, event.thread_id), None)
            case BindingMoved():
                self.bindings.pop((event.old_chat_id, event.thread_id), None)
                self.bindings[(event.chat_id, event.thread_id)] = BoundTask(
                    event.task_number, event.task_title
                )


def summary(event: AnyEvent) -> str:
    """A few words on what happened; unlike the CLI, the sandbox shows what people wrote."""
    match event:
        case TelegramMessageReceived():
            text = event.text or (event.attachments[0].kind if event.attachments else "")
            return (
                f"chat {event.chat_id} message {event.message_id} from {event.sender.display}: {_snip(text)}"
            )
        case TelegramMessageEdited():
            return f"chat {event.chat_id} message {event.message_id} edited: {_snip(event.text)}"
        case PlanfixCommentAdded() | PlanfixCommentUpdated():
            plain = _TAGS.sub(" ", event.text_html)
            verb = "added" if isinstance(event, PlanfixCommentAdded) else "updated"
            return f"task #{event.task_number}: comment {event.comment_id} {verb}: {_snip(plain)}"
    described = cli_summary(event)
    if described:
        return described
    parts = [
        f"{label}{getattr(event, name)}"
        for name, label in (("chat_id", "chat "), ("task_number", "task #"), ("comment_id", "comment "))
        if getattr(event, name, None) is not None
    ]
    return ", ".join(parts)


def _snip(text: str) -> str:
    flat = " ".join(text.split())
    return f"“{flat[:SNIPPET]}…”" if len(flat) > SNIPPET else f"“{flat}”"


async def follow_streams(timeline: Timeline, nats_url: str, stop: asyncio.Event) -> None:
    """Read every stream into the timeline until ``stop``; reconnects while NATS is not up yet."""
    while not stop.is_set():
        try:
            nc = await nats.connect(nats_url, connect_timeout=2, max_reconnect_attempts=-1)
        except (OSError, nats.errors.Error, TimeoutError) as error:
            log.info("sandbox_timeline_waiting_for_nats", error=str(error))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 1.0)
            continue
        try:
            timeline.connected = True
            waiting = [asyncio.create_task(_follow_stream(nc, spec.name, spec.subjects, timeline, stop))
                       for spec in ALL_STREAMS]  # fmt: skip
            await stop.wait()
            for task in waiting:
                task.cancel()
            await asyncio.gather(*waiting, return_exceptions=True)
        finally:
            timeline.connected = False
            with contextlib.suppress(Exception):
                await nc.close()


async def _follow_stream(
    nc: NatsClient, stream: str, subjects: list[str], timeline: Timeline, stop: asyncio.Event
) -> None:
    js = nc.jetstream()
    # The services create the streams as they start: wait for this one.
    while not stop.is_set():
        try:
            await js.stream_info(stream)
            break
        except (nats.js.errors.NotFoundError, nats.errors.TimeoutError):
            await asyncio.sleep(0.5)

    async def on_message(msg: Any) -> None:
        metadata = msg.metadata
        try:
            event: AnyEvent | None = decode_event(msg.data)
        except (msgspec.DecodeError, msgspec.ValidationError):
            event = None
        try:
            body: Any = json.loads(msg.data)
        except ValueError:
            body = {"undecodable": msg.data.decode(errors="replace")}
        timeline.add(
            TimelineEntry(
                stream=stream,
                seq=metadata.sequence.stream,
                subject=msg.subject,
                time=metadata.timestamp.isoformat() if metadata.timestamp else "",
                type=event.tag if event is not None else "undecodable",
                correlation_id=event.correlation_id if event is not None else "",
                summary=summary(event) if event is not None else "not an event this bridge knows",
                body=body,
            ),
            event,
        )

    subject = subjects[0] if len(subjects) == 1 else ">"
    config = ConsumerConfig(deliver_policy=DeliverPolicy.ALL)
    await js.subscribe(subject, stream=stream, ordered_consumer=True, config=config, cb=on_message)
    await stop.wait()
