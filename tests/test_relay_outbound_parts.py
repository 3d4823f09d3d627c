"""The relay's outbound parts on their own: how files are sent, what is combined, what /status
says, and the pace and leases shared through a real NATS KV bucket (with a clock the test moves,
so no test waits for real time)."""

from __future__ import annotations

import contextlib
import itertools
import uuid
from collections.abc import AsyncIterator
from typing import Any

import msgspec
import pytest

from bridge_lib.i18n import translator
from bridge_lib.kvstore import ensure_bucket
from bridge_lib.lease import Leases
from contracts.events import PlanfixFile, TelegramMessageKind, decode_event, event_id_for
from contracts.subjects import BucketSpec
from services.relay.directory import BoundTask
from services.relay.to_telegram.courier import TelegramPace, group_lease_key
from services.relay.to_telegram.items import Action, OutboxItem
from services.relay.to_telegram.media import MediaKind, media_groups, media_kind, too_large
from services.relay.to_telegram.notices import status_text
from services.relay.to_telegram.sender import combined_effect, next_batch
from tests.in_memory import Clock
from tests.support import LoopThread, connect_nats

MB = 1024 * 1024


EN = translator("en")


def file(name: str, size: int | None = 1000) -> PlanfixFile:
    return PlanfixFile(id=abs(hash(name)) % 10_000, name=name, size=size)


# --- files -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "size", "kind"),
    [
        ("printer.JPG", 2 * MB, MediaKind.PHOTO),
        ("scan.png", 11 * MB, MediaKind.DOCUMENT),  # over Telegram's 10 MB for photos
        ("clip.mp4", 40 * MB, MediaKind.VIDEO),
        ("clip.mov", 1 * MB, MediaKind.DOCUMENT),
        ("voice.mp3", 1 * MB, MediaKind.AUDIO),
        ("animation.gif", 1 * MB, MediaKind.DOCUMENT),
        ("no-extension", None, MediaKind.DOCUMENT),
    ],
)
def test_a_file_goes_as_the_kind_telegram_shows_best(name: str, size: int | None, kind: MediaKind) -> None:
    assert media_kind(file(name, size)) is kind


def test_files_are_grouped_by_family_in_order_ten_at_most() -> None:
    photos = [file(f"p{n}.jpg") for n in range(12)]
    files = [file("a.pdf"), *photos[:6], file("song.mp3"), file("clip.mp4"), *photos[6:], file("b.pdf")]

    groups = media_groups(files)

    assert [[m.file.name for m in group] for group in groups] == [
        ["a.pdf", "b.pdf"],
        [*(f"p{n}.jpg" for n in range(6)), "clip.mp4", *(f"p{n}.jpg" for n in range(6, 9))],
        ["p9.jpg", "p10.jpg", "p11.jpg"],
        ["song.mp3"],
    ]


def test_only_a_file_known_to_be_over_50_mb_is_too_large() -> None:
    assert too_large(file("big.zip", 50 * MB + 1))
    assert not too_large(file("exact.zip", 50 * MB))
    assert not too_large(file("unknown.zip", None))


# --- combining ------------------------------------------------------------------------------------

_keys = itertools.count()


def item(text: str, **changes: Any) -> OutboxItem:
    fields: dict[str, Any] = {
        "key": f"k{next(_keys)}",
        "chat_id": -100,
        "action": Action.SEND,
        "kind": TelegramMessageKind.PLANFIX_COMMENT,
        "correlation_id": "c",
        "causation_id": "e",
        "text": text,
        **changes,
    }
    return OutboxItem(**fields)


def test_the_waiting_comments_at_the_head_are_combined_up_to_4096_units() -> None:
    waiting = [item("a" * 2000), item("b" * 2000), item("c" * 2000), item("d")]
    assert [i.text[0] for i in next_batch(waiting)] == ["a", "b"]


def test_what_cannot_share_a_message_goes_alone() -> None:
    notice = item("bound!", kind=TelegramMessageKind.BIND_CONFIRMATION)
    with_file = item("see file", files=[file("a.pdf")])
    refused_before = item("refused once", attempts=1)
    edit = item("new text", action=Action.EDIT)
    for first in (notice, with_file, refused_before, edit):
        assert next_batch([first, item("x"), item("y")]) == [first]
    plain = item("first")
    assert next_batch([plain, item("other topic", thread_id=7)]) == [plain]
    assert len(next_batch([item("1"), item("2"), notice, item("3")])) == 2


def test_comments_sent_together_are_one_effect_naming_each_with_its_own_story() -> None:
    together = [
        item("one", comment_id=11, task_number=5, correlation_id="story-11", causation_id="ev-11"),
        item("two", comment_id=12, task_number=5, correlation_id="story-12", causation_id="ev-12"),
        item("three", comment_id=13, task_number=5, correlation_id="story-13", causation_id="ev-13"),
    ]

    effect = combined_effect(together, message_id=901)

    assert (effect.comment_id, effect.message_ids, effect.correlation_id) == (11, [901], "story-11")
    assert effect.event_id == event_id_for(together[0].key)  # a repeat after a crash is stored once
    assert [(s.comment_id, s.correlation_id, s.causation_id) for s in effect.also_shows] == [
        (12, "story-12", "ev-12"),
        (13, "story-13", "ev-13"),
    ]
    assert effect.correlation_ids() == ["story-11", "story-12", "story-13"]
    assert decode_event(msgspec.json.encode(effect)) == effect


# --- /status -------------------------------------------------------------------------------------


def test_status_says_how_to_switch_group_privacy_off_when_it_is_on() -> None:
    bound = BoundTask(4821, "Printer <floor 3>")
    text = status_text(
        bound,
        task_url="https://acc.planfix.com/task/4821",
        in_topic=False,
        bot_reads_all_messages=False,
        t=EN,
    )
    assert '<a href="https://acc.planfix.com/task/4821">#4821</a>' in text
    assert "Printer &lt;floor 3&gt;" in text
    assert "/setprivacy" in text
    unbound = status_text(None, task_url="", in_topic=True, bot_reads_all_messages=True, t=EN)
    assert "This topic is not bound" in unbound
    assert "/setprivacy" not in unbound


# --- pace and leases over NATS KV ----------------------------------------------------------------


@contextlib.asynccontextmanager
async def fresh_bucket(nats_url: str, kind: str) -> AsyncIterator[Any]:
    """A KV bucket of this test's own (``<kind>_<random>``) on the session's NATS."""
    nc = await connect_nats(nats_url)
    try:
        yield await ensure_bucket(
            nc.jetstream(), BucketSpec(name=f"{kind}_{uuid.uuid4().hex[:8]}", description="t")
        )
    finally:
        await nc.close()


def test_a_group_gets_its_next_message_an_interval_after_the_last_answer(
    loop: LoopThread, nats_url: str
) -> None:
    clock = Clock()

    async def scenario() -> list[float]:
        async with fresh_bucket(nats_url, "pace") as kv:
            pace = TelegramPace(
                kv, group_limit=20, group_window_s=60, bot_per_second=30, clock=clock.time, sleep=clock.sleep
            )
            await pace.wait_for_group(-1)  # first message: no wait
            await pace.group_sent(-1)
            await pace.wait_for_group(-1)  # 60 / 20 = 3 s after the answer
            await pace.group_sent(-1, messages=2)  # a media group of two
            await pace.wait_for_group(-1)
            await pace.wait_for_group(-2)  # another group: its own pace
            await pace.hold_group(-1, 7)  # a 429 with retry_after 7
            await pace.wait_for_group(-1)
            return clock.slept

    assert loop.run(scenario()) == [3.0, 5.0, 1.0, 5.0, 2.0]


def test_bot_slots_are_spaced_for_every_caller(loop: LoopThread, nats_url: str) -> None:
    clock = Clock()

    async def scenario() -> list[float]:
        async with fresh_bucket(nats_url, "pace") as kv:
            replicas = [
                TelegramPace(
                    kv,
                    group_limit=20,
                    group_window_s=60,
                    bot_per_second=10,
                    clock=clock.time,
                    sleep=clock.sleep,
                )
                for _ in range(2)
            ]
            for pace in (*replicas, *replicas):
                await pace.take_bot_slots()
            return clock.slept

    assert loop.run(scenario()) == [0.1, 0.1, 0.1]


def test_one_replica_at_a_time_sends_to_a_group(loop: LoopThread, nats_url: str) -> None:
    clock = Clock()

    async def scenario() -> list[bool]:
        async with fresh_bucket(nats_url, "lease") as kv:
            first = Leases(kv, owner="relay-a", ttl_s=60, clock=clock.time)
            second = Leases(kv, owner="relay-b", ttl_s=60, clock=clock.time)
            group = group_lease_key(-1)
            results = [await first.acquire(group), await second.acquire(group), await first.acquire(group)]
            await first.release(group)
            results.append(await second.acquire(group))
            # relay-a looks (relay-b holds it: relay-a starts timing its revision, on its own clock)
            results.append(await first.acquire(group))
            clock.now += 61  # relay-b stalls past its lease: its revision stayed a whole lease time
            results.append(await first.acquire(group))
            return results

    assert loop.run(scenario()) == [True, False, True, True, False, True]
