"""Data kept only as long as needed: records expire after RETENTION_DAYS (TTL indexes on MongoDB,
the sweep everywhere), a delivered outbox item keeps no text, and streams have byte caps that
refuse new messages when full (the publisher retries; nothing stored is dropped)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import nats
import nats.js.errors
import pytest
from motor.motor_asyncio import AsyncIOMotorClient
from nats.js.api import DiscardPolicy

from bridge_lib import retention
from bridge_lib.eventbus import EventPublisher, stream_config
from contracts.events import TelegramMessageKind
from contracts.subjects import ALL_STREAMS, DAY, DEADLETTER_STREAM, StreamSpec
from services.relay.to_telegram.items import Action, ItemState, OutboxItem
from services.relay.to_telegram.sender import Outbox
from tests.support import LoopThread

T = TypeVar("T")


def with_database(loop: LoopThread, mongo_url: str, work: Callable[[Any], Awaitable[T]]) -> T:
    async def run() -> T:
        client: AsyncIOMotorClient[dict[str, Any]] = AsyncIOMotorClient(mongo_url, tz_aware=True)
        try:
            return await work(client[f"retention_{uuid.uuid4().hex[:8]}"])
        finally:
            client.close()

    return loop.run(run())


# --- records -------------------------------------------------------------------------------------


def test_the_sweep_stamps_undated_records_and_deletes_those_past_the_retention(
    loop: LoopThread, mongo_url: str
) -> None:
    collections = {"ledger": retention.RECORDED_AT, "finished": "finished_at"}

    async def work(database: Any) -> tuple[dict[str, int], dict[str, int], list[Any], list[Any]]:
        now = datetime.now(UTC)
        await database["ledger"].insert_many([{"_id": "new"}, {"_id": "also-new"}])
        await database["finished"].insert_many(
            [{"_id": "old", "finished_at": now - timedelta(days=91)}, {"_id": "recent", "finished_at": now}]
        )
        first = await retention.sweep(database, collections, days=90, now=now)
        stamped = await database["ledger"].count_documents({retention.RECORDED_AT: {"$exists": True}})
        assert stamped == 2  # their clock starts now
        # 91 days on, everything stamped or finished back then is past 90 days.
        later = await retention.sweep(database, collections, days=90, now=now + timedelta(days=91))
        return (
            first,
            later,
            await database["ledger"].find().to_list(None),
            await database["finished"].find().to_list(None),
        )

    first, later, ledger, finished = with_database(loop, mongo_url, work)
    assert first == {"ledger": 0, "finished": 1}
    assert later == {"ledger": 2, "finished": 1}
    assert ledger == []
    assert finished == []


def test_ttl_indexes_on_mongodb_and_the_sweep_alone_on_the_embedded_store(
    loop: LoopThread, mongo_url: str
) -> None:
    async def work(database: Any) -> tuple[bool, bool, dict[str, Any]]:
        embedded = await retention.is_embedded_store(database)
        made = await retention.ensure_ttl_indexes(database, {"records": retention.RECORDED_AT}, days=90)
        return embedded, made, await database["records"].index_information()

    embedded, made, indexes = with_database(loop, mongo_url, work)
    if embedded:
        # nx-27017 expires TTL documents only when a collection is read, scanning it each time.
        assert not made
        assert retention.TTL_INDEX not in indexes
    else:  # MONGODB_URL pointed the tests at a real MongoDB
        assert made
        assert indexes[retention.TTL_INDEX]["expireAfterSeconds"] == 90 * 86_400


def test_retention_defaults_to_90_days(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RETENTION_DAYS", raising=False)
    assert retention.RetentionSettings().retention_days == 90
    monkeypatch.setenv("RETENTION_DAYS", "0")
    with pytest.raises(ValueError, match="RETENTION_DAYS"):
        retention.RetentionSettings()


def _item(key: str, text: str) -> OutboxItem:
    return OutboxItem(
        key=key, chat_id=-100123, action=Action.SEND, kind=TelegramMessageKind.PLANFIX_COMMENT,
        correlation_id="c", causation_id="c", text=text, short_caption="caption",
    )  # fmt: skip


def test_a_delivered_outbox_item_keeps_no_text_and_a_refused_one_keeps_it_with_a_clean_reason(
    loop: LoopThread, mongo_url: str
) -> None:
    async def work(database: Any) -> tuple[dict[str, Any], dict[str, Any]]:
        outbox = Outbox(database)
        await outbox.enqueue(_item("sent", "a private comment text"))
        await outbox.enqueue(_item("dead", "a refused comment text"))
        [sent, dead] = await outbox.pending(-100123, limit=10)
        await outbox.finish([sent])
        await outbox.give_up(
            dead.key,
            "Bad Request at https://api.telegram.org/bot123456:ABCDEFGHIJKLMNOPQRSTUVWXYZabcdef1234/sendMessage",
        )
        finished = database["telegram_outbox"]
        return await finished.find_one({"_id": "sent"}), await finished.find_one({"_id": "dead"})

    sent, dead = with_database(loop, mongo_url, work)
    assert sent["state"] == ItemState.DONE.value
    assert sent["text"] == ""
    assert sent["short_caption"] == ""
    assert sent["files"] == []
    assert dead["text"] == "a refused comment text"
    assert "ABCDEFGHIJ" not in dead["reason"]
    assert "Bad Request" in dead["reason"]


# --- streams -------------------------------------------------------------------------------------


def test_every_stream_has_a_byte_cap_and_refuses_when_full_and_dead_letters_age_30_days() -> None:
    for spec in ALL_STREAMS:
        config = stream_config(spec)
        assert (config.max_bytes or 0) > 0, spec.name
        assert config.discard is DiscardPolicy.NEW, spec.name
    assert DEADLETTER_STREAM.max_age_s == 30 * DAY
    # What nats-server reserves on its disk for the caps, at one replica.
    total = sum(spec.max_bytes for spec in ALL_STREAMS)
    assert total <= 8 * 1024**3


def test_a_full_stream_refuses_the_publish_the_publisher_retries_and_nothing_stored_is_dropped(
    loop: LoopThread, nats_url: str
) -> None:
    name = f"FULL_{uuid.uuid4().hex[:6].upper()}"
    subject = f"full.{name.lower()}"
    spec = StreamSpec(
        name=name,
        subjects=[f"{subject}.>"],
        description="a tiny stream",
        duplicate_window_s=60,
        max_bytes=4096,
    )

    async def scenario() -> tuple[int, str, bool, int, int]:
        nc = await nats.connect(nats_url)
        try:
            js = nc.jetstream()
            await js.add_stream(stream_config(spec))
            stored = 0
            refusal = ""
            for n in range(100):
                try:
                    await js.publish(f"{subject}.{n}", b"x" * 200, headers={"Nats-Msg-Id": f"{name}-{n}"})
                    stored += 1
                except nats.js.errors.ServiceUnavailableError as error:
                    refusal = f"{error.err_code} {error.description}"
                    break
            # The bridge's publisher keeps trying (with back-off) while the stream is full...
            publisher = EventPublisher(_Brokerish(nc), give_up_after_s=30, attempt_timeout_s=2)  # type: ignore[arg-type]
            event = _probe_event()
            waiting = asyncio.create_task(
                publisher._publish_with_retries(f"{subject}.late", b"late", {"Nats-Msg-Id": event})
            )
            await asyncio.sleep(1.0)
            still_waiting = not waiting.done()
            # ... and succeeds once an operator made room (here: a larger cap).
            await js.update_stream(stream_config(StreamSpec(**{**_fields(spec), "max_bytes": 64 * 1024})))
            await asyncio.wait_for(waiting, 30)
            info = await js.stream_info(name)
            await js.delete_stream(name)
            return stored, refusal, still_waiting, int(info.state.first_seq), int(info.state.messages)
        finally:
            await nc.close()

    stored, refusal, still_waiting, first_seq, messages = loop.run(scenario(), timeout_s=60)
    assert stored > 0
    assert refusal.startswith("10077")  # maximum bytes exceeded
    assert still_waiting
    assert first_seq == 1, "the oldest message is still there: nothing was discarded to make room"
    assert messages == stored + 1


class _Brokerish:
    def __init__(self, connection: Any) -> None:
        self.connection = connection


def _fields(spec: StreamSpec) -> dict[str, Any]:
    return {field: getattr(spec, field) for field in spec.__struct_fields__}


def _probe_event() -> str:
    return f"probe-{uuid.uuid4().hex}"
