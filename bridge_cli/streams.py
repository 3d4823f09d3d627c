"""Reading JetStream streams for the CLI: stored messages with their headers and sequence.

Reads go through ordered consumers (ephemeral, flow-controlled, no acks), so the CLI never
disturbs the services' durable consumers. A read of a range ends when the consumer reports
no more pending messages, or at ``end_seq``/``end_time``.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator, Iterable
from datetime import datetime
from typing import Any

import msgspec
import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client as NatsClient
from nats.js.api import ConsumerConfig, DeliverPolicy

from bridge_lib.eventbus import server_urls
from bridge_lib.settings import NatsSettings
from contracts.events import AnyEvent, decode_event
from contracts.subjects import ALL_STREAMS

# How long to wait for the first message of a read before deciding the range is empty.
FIRST_MESSAGE_TIMEOUT_S = 2.0


class StoredMessage(msgspec.Struct, kw_only=True):
    """One message as a stream holds it: where, when, headers and body."""

    stream: str
    seq: int
    subject: str
    time: datetime | None
    headers: dict[str, str]
    data: bytes

    def event(self) -> AnyEvent | None:
        try:
            return decode_event(self.data)
        except (msgspec.DecodeError, msgspec.ValidationError):
            return None


class DumpRecord(msgspec.Struct, kw_only=True, omit_defaults=True):
    """One line of ``bridge events dump``: the message with its event as JSON (or raw base64)."""

    stream: str
    seq: int
    subject: str
    headers: dict[str, str]
    time: datetime | None = None
    # The event's JSON as stored (written as-is; read back as plain JSON values).
    event: Any = None
    data_b64: str | None = None

    @classmethod
    def of(cls, message: StoredMessage) -> DumpRecord:
        record = cls(
            stream=message.stream,
            seq=message.seq,
            subject=message.subject,
            headers=message.headers,
            time=message.time,
        )
        try:
            msgspec.json.decode(message.data)
        except msgspec.DecodeError:
            record.data_b64 = base64.b64encode(message.data).decode("ascii")
        else:
            record.event = msgspec.Raw(message.data)
        return record

    def to_message(self) -> StoredMessage:
        if self.event is not None:
            data = (
                bytes(self.event) if isinstance(self.event, msgspec.Raw) else msgspec.json.encode(self.event)
            )
        else:
            data = base64.b64decode(self.data_b64 or "")
        return StoredMessage(
            stream=self.stream,
            seq=self.seq,
            subject=self.subject,
            time=self.time,
            headers=dict(self.headers),
            data=data,
        )


async def connect(url: str, *, timeout_s: float = 5.0) -> NatsClient:
    """A short connection attempt, no endless reconnects: the CLI should fail fast and say why."""

    async def quiet(error: Exception) -> None:
        # nats-py prints a traceback per failed attempt by default; the caller reports the failure.
        del error

    client: NatsClient = await asyncio.wait_for(
        nats.connect(
            server_urls(url),
            connect_timeout=timeout_s,
            max_reconnect_attempts=1,
            reconnect_time_wait=0.2,
            allow_reconnect=False,
            error_cb=quiet,
            name="bridge-cli",
            # NATS_USER/NATS_PASSWORD (or NATS_CREDS) and NATS_TLS_CA_FILE, as the services take them.
            **NatsSettings().nats_connect_options(),
        ),
        timeout_s * 2,
    )
    return client


def stream_names() -> list[str]:
    return [spec.name for spec in ALL_STREAMS]


def stream_filter(stream: str) -> str:
    for spec in ALL_STREAMS:
        if spec.name == stream:
            return spec.subjects[0] if len(spec.subjects) == 1 else ">"
    raise ValueError(f"unknown stream {stream!r}; streams: {', '.join(stream_names())}")


def subject_matches(pattern: str, subject: str) -> bool:
    """NATS wildcard match: ``*`` is one token, ``>`` the rest (one or more tokens)."""
    wanted = pattern.split(".")
    tokens = subject.split(".")
    for index, token in enumerate(wanted):
        if token == ">":
            return len(tokens) > index
        if index >= len(tokens) or (token != "*" and token != tokens[index]):
            return False
    return len(tokens) == len(wanted)


async def read_stream(
    js: Any,
    stream: str,
    *,
    subject_filter: str | None = None,
    start_seq: int | None = None,
    start_time: datetime | None = None,
    end_seq: int | None = None,
    end_time: datetime | None = None,
) -> AsyncIterator[StoredMessage]:
    """The messages of ``stream`` in order, within the given range (both ends inclusive)."""
    try:
        info = await js.stream_info(stream)
    except nats.js.errors.NotFoundError:
        return
    last = info.state.last_seq
    if info.state.messages == 0 or (start_seq is not None and start_seq > last):
        return
    end = min(end_seq, last) if end_seq is not None else last
    config = ConsumerConfig()
    if start_seq is not None:
        config.deliver_policy = DeliverPolicy.BY_START_SEQUENCE
        config.opt_start_seq = max(1, start_seq)
    elif start_time is not None:
        config.deliver_policy = DeliverPolicy.BY_START_TIME
        config.opt_start_time = start_time
    subscription = await js.subscribe(
        subject_filter or stream_filter(stream), stream=stream, ordered_consumer=True, config=config
    )
    try:
        timeout = FIRST_MESSAGE_TIMEOUT_S
        while True:
            try:
                msg = await subscription.next_msg(timeout=timeout)
            except nats.errors.TimeoutError:
                return
            timeout = 10.0
            metadata = msg.metadata
            seq = metadata.sequence.stream
            if seq > end:
                return
            stored = StoredMessage(
                stream=stream,
                seq=seq,
                subject=msg.subject,
                time=metadata.timestamp,
                headers=dict(msg.headers or {}),
                data=msg.data,
            )
            if end_time is not None and stored.time is not None and stored.time > end_time:
                return
            yield stored
            if seq >= end or metadata.num_pending == 0:
                return
    finally:
        await subscription.unsubscribe()


async def read_streams(js: Any, streams: Iterable[str], **range_options: Any) -> AsyncIterator[StoredMessage]:
    for stream in streams:
        async for message in read_stream(js, stream, **range_options):
            yield message


async def publish_raw(js: Any, subject: str, data: bytes, headers: dict[str, str]) -> bool:
    """Publish as-is and wait for the stream's ack; False when it was a duplicate."""
    ack = await js.publish(subject, data, headers=headers, timeout=10.0)
    return not bool(ack.duplicate)
