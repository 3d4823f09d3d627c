"""The broker's ceiling: the same payloads through raw nats-py JetStream publish -> pull -> ack.

One Python process, one connection each for publishing and consuming, as a well-written
client would do it: publishes with ``Nats-Msg-Id`` and up to 256 acks outstanding, a durable
pull consumer fetching batches of 100 and acking each message, both running at once. It runs
on a ``nats-server`` of its own (same binary, same file storage), so its stream stays out of
the bridge's subjects and server.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import nats
from nats.js.api import AckPolicy, ConsumerConfig, StorageType, StreamConfig

from bench.traffic import FILLER
from contracts.events import TelegramMessageReceived, TelegramUser, encode_event, root_envelope, utc_now
from devtools import devstack

STREAM = "BENCH_CEILING"
SUBJECT_PREFIX = "bench.ceiling"
IN_FLIGHT = 256
BATCH = 100


def payloads(count: int, chats: int = 50) -> list[tuple[str, str, bytes]]:
    """(subject, msg id, body) of ``count`` TelegramMessageReceived events, encoded as the gateway does."""
    sender = TelegramUser(id=501, full_name="Ivan Petrov", username="ivan_p")
    out = []
    for seq in range(count):
        chat = -1003000000000 - seq % chats
        key = f"tg:msg:{chat}:{seq}"
        event = TelegramMessageReceived(
            **root_envelope(key, caused_by=f"tg:update:{seq}"),
            chat_id=chat,
            message_id=seq,
            sender=sender,
            text=f"bm0x{seq} {FILLER}",
            sent_at=utc_now(),
            chat_title="Bench group",
            update_id=seq,
        )
        out.append((f"{SUBJECT_PREFIX}.{-chat}", key, encode_event(event)))
    return out


def measure_ceiling(work_dir: Path, count: int) -> dict[str, float]:
    server = devstack.start_nats(work_dir / "ceiling-nats", log_file=work_dir / "logs" / "ceiling-nats.log")
    try:
        return asyncio.run(_run(server.extra["url"], payloads(count)))
    finally:
        server.stop()


async def _run(url: str, messages: list[tuple[str, str, bytes]]) -> dict[str, float]:
    publisher = await nats.connect(url)
    consumer = await nats.connect(url)
    try:
        js = publisher.jetstream()
        await js.add_stream(
            StreamConfig(
                name=STREAM,
                subjects=[f"{SUBJECT_PREFIX}.>"],
                storage=StorageType.FILE,
                duplicate_window=86_400,
            )
        )
        sub = await consumer.jetstream().pull_subscribe(
            f"{SUBJECT_PREFIX}.>", durable="ceiling", config=ConsumerConfig(ack_policy=AckPolicy.EXPLICIT)
        )
        started = time.perf_counter()
        published_done: list[float] = []
        await asyncio.gather(_publish_all(js, messages, published_done), _consume_all(sub, len(messages)))
        elapsed = time.perf_counter() - started
        return {
            "messages": float(len(messages)),
            "seconds": elapsed,
            "msg_per_s": len(messages) / elapsed,
            "publish_msg_per_s": len(messages) / (published_done[0] - started),
            "payload_bytes": float(sum(len(body) for _, _, body in messages) / len(messages)),
        }
    finally:
        await publisher.close()
        await consumer.close()


async def _publish_all(
    js: nats.js.JetStreamContext, messages: list[tuple[str, str, bytes]], done: list[float]
) -> None:
    window = asyncio.Semaphore(IN_FLIGHT)

    async def one(subject: str, msg_id: str, body: bytes) -> None:
        async with window:
            await js.publish(subject, body, headers={"Nats-Msg-Id": msg_id}, timeout=30)

    await asyncio.gather(*(one(*message) for message in messages))
    done.append(time.perf_counter())


async def _consume_all(sub: nats.js.JetStreamContext.PullSubscription, count: int) -> None:
    acked = 0
    while acked < count:
        try:
            batch = await sub.fetch(BATCH, timeout=1)
        except nats.errors.TimeoutError:
            continue
        for msg in batch:
            await msg.ack()
        acked += len(batch)
