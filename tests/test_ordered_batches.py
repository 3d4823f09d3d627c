"""A consumer read in ordered batches (``bridge_lib.ordered_batches``), on a real JetStream.

Each test has a stream and a lease bucket of its own. The events are Planfix comments; the
handlers record what they were given. What must hold: every event is handled once it is
published, in the stream's order, in batches when several wait; a failing batch is carried
again one by one, a failing event retried before anything after it; a holder that died with
messages unacknowledged is taken over from the oldest of them, not after newer ones.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Sequence
from types import SimpleNamespace
from typing import Any

import nats
import nats.errors
import pytest
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from bridge_lib import eventbus
from bridge_lib.eventbus import Delivery, TransientFailure
from bridge_lib.lease import Lease
from bridge_lib.ordered_batches import Handlers, OrderedBatches, acknowledged_up_to
from contracts.events import PlanfixCommentAdded, PlanfixPerson, encode_event, root_envelope
from contracts.subjects import ConsumerSpec
from tests.support import LoopThread


def comment(comment_id: int) -> PlanfixCommentAdded:
    key = f"test:comment:{comment_id}"
    return PlanfixCommentAdded(
        **root_envelope(key, caused_by=key),
        task_number=1,
        comment_id=comment_id,
        text_html=f"<p>{comment_id}</p>",
        author=PlanfixPerson(id="user:5", name="Olga"),
    )


class Recorder:
    """The handlers: what was carried, in order, and the batches it came in."""

    def __init__(self, *, batch_fails: bool = False, fail_times: dict[int, int] | None = None) -> None:
        self.carried: list[int] = []
        self.batches: list[int] = []
        self.tries: dict[int, int] = {}
        self._batch_fails = batch_fails
        self._fail_times = dict(fail_times or {})
        self.changed = asyncio.Event()

    async def batch(self, events: Sequence[PlanfixCommentAdded]) -> None:
        if self._batch_fails:
            raise RuntimeError("the store refused the batch")
        self.batches.append(len(events))
        self._record([event.comment_id for event in events])

    async def one(self, event: PlanfixCommentAdded, delivery: Delivery) -> None:
        self.tries[event.comment_id] = self.tries.get(event.comment_id, 0) + 1
        if self._fail_times.get(event.comment_id, 0) >= self.tries[event.comment_id]:
            raise TransientFailure("the store is away")
        self.batches.append(1)
        self._record([event.comment_id])

    def _record(self, ids: list[int]) -> None:
        self.carried += ids
        self.changed.set()

    async def until(self, count: int, timeout_s: float = 20.0) -> None:
        async with asyncio.timeout(timeout_s):
            while len(self.carried) < count:
                self.changed.clear()
                await self.changed.wait()


class Scenario:
    """A stream, a lease bucket and a consumer spec of their own."""

    def __init__(self, nats_url: str) -> None:
        self.nats_url = nats_url
        self.name = f"TEST_BATCHES_{uuid.uuid4().hex[:8]}"
        self.spec = ConsumerSpec(
            durable="reader",
            stream=self.name,
            filter_subject=f"{self.name}.>",
            service="test",
            description="reads comments in ordered batches",
            in_flight=100,
            batched=True,
        )

    async def __aenter__(self) -> Scenario:
        self.client = await nats.connect(self.nats_url)
        self.js = self.client.jetstream()
        await self.js.add_stream(name=self.name, subjects=[f"{self.name}.>"])
        self.kv = await self.js.create_key_value(bucket=f"{self.name}_LEASES")
        return self

    async def __aexit__(self, *_: Any) -> None:
        await self.js.delete_stream(self.name)
        await self.js.delete_key_value(f"{self.name}_LEASES")
        await self.client.close()

    async def publish(self, ids: range) -> None:
        for comment_id in ids:
            await self.js.publish(f"{self.name}.c", encode_event(comment(comment_id)))

    def consumer(
        self,
        recorder: Recorder,
        js: Any = None,
        wanted: Callable[[bytes], bool] | None = None,
        linger_s: float = 0.0,
    ) -> OrderedBatches[PlanfixCommentAdded]:
        lease = Lease(self.kv, "reader", owner=uuid.uuid4().hex, ttl_s=3.0)
        return OrderedBatches(
            js or self.js,
            self.spec,
            PlanfixCommentAdded,
            Handlers(batch=recorder.batch, one=recorder.one),
            lease=lease,
            wanted=wanted,
            linger_s=linger_s,
        )

    async def run_until(
        self,
        recorder: Recorder,
        count: int,
        *,
        publish_meanwhile: range = range(0),
        js: Any = None,
        wanted: Callable[[bytes], bool] | None = None,
    ) -> Any:
        consumer = self.consumer(recorder, js, wanted)
        task = asyncio.create_task(consumer.run())
        try:
            await self.publish(publish_meanwhile)
            await recorder.until(count)
            await asyncio.sleep(0.2)  # the acknowledgements of the last batch
        finally:
            await consumer.stop(task, grace_s=2.0)
        return await self.js.consumer_info(self.name, self.spec.durable)


def test_what_waits_is_carried_in_batches_in_stream_order_and_all_acknowledged(
    loop: LoopThread, nats_url: str
) -> None:
    recorder = Recorder()

    async def scenario() -> Any:
        async with Scenario(nats_url) as stream:
            await stream.publish(range(1, 251))
            return await stream.run_until(recorder, 260, publish_meanwhile=range(251, 261))

    info = loop.run(scenario(), timeout_s=60)

    assert recorder.carried == list(range(1, 261))
    assert max(recorder.batches) == 100  # a batch is what waits, up to the consumer's in_flight
    assert info.num_ack_pending == 0
    assert info.ack_floor.stream_seq == 260


def test_a_reader_looking_for_a_few_acknowledges_the_rest_unread(loop: LoopThread, nats_url: str) -> None:
    recorder = Recorder()

    def wanted(body: bytes) -> bool:
        return b"<p>7</p>" in body or b"<p>17</p>" in body

    async def scenario() -> Any:
        async with Scenario(nats_url) as stream:
            await stream.publish(range(1, 21))
            return await stream.run_until(recorder, 2, wanted=wanted)

    info = loop.run(scenario(), timeout_s=60)

    assert recorder.carried == [7, 17]
    assert info.num_ack_pending == 0
    assert info.ack_floor.stream_seq == 20


def test_a_reader_that_may_linger_takes_a_trickle_in_a_few_fetches_not_one_each(
    loop: LoopThread, nats_url: str
) -> None:
    recorder = Recorder()

    async def scenario() -> None:
        async with Scenario(nats_url) as stream:
            consumer = stream.consumer(recorder, linger_s=0.3)
            task = asyncio.create_task(consumer.run())
            try:
                for comment_id in range(1, 31):
                    await stream.publish(range(comment_id, comment_id + 1))
                    await asyncio.sleep(0.02)
                await recorder.until(30)
            finally:
                await consumer.stop(task, grace_s=2.0)

    loop.run(scenario(), timeout_s=60)

    assert recorder.carried == list(range(1, 31))
    assert len(recorder.batches) <= 6, recorder.batches  # 0.6 s of trickle, a fetch per 0.3 s


def test_a_failing_batch_is_carried_one_by_one_and_a_failing_event_is_retried_before_the_next(
    loop: LoopThread, nats_url: str
) -> None:
    recorder = Recorder(batch_fails=True, fail_times={3: 2})
    eventbus.set_retry_max_delay(0.05)

    async def scenario() -> Any:
        async with Scenario(nats_url) as stream:
            await stream.publish(range(1, 8))
            return await stream.run_until(recorder, 7)

    try:
        info = loop.run(scenario(), timeout_s=60)
    finally:
        eventbus.set_retry_max_delay(30.0)

    assert recorder.carried == [1, 2, 3, 4, 5, 6, 7]
    assert recorder.tries[3] == 3
    assert info.num_ack_pending == 0


def test_a_holder_that_died_mid_batch_is_taken_over_from_its_oldest_unacknowledged_message(
    loop: LoopThread, nats_url: str
) -> None:
    recorder = Recorder()

    async def scenario() -> Any:
        async with Scenario(nats_url) as stream:
            await stream.publish(range(1, 11))
            # The holder that died: it fetched 1-6, and acknowledged 1 and 2 only.
            config = ConsumerConfig(
                durable_name=stream.spec.durable, ack_policy=AckPolicy.EXPLICIT, max_ack_pending=100
            )
            dead = await stream.js.pull_subscribe(
                stream.spec.filter_subject, durable=stream.spec.durable, stream=stream.name, config=config
            )
            fetched = await dead.fetch(6, timeout=5)
            for message in fetched[:2]:
                await message.ack_sync()
            return await stream.run_until(recorder, 13, publish_meanwhile=range(11, 16))

    info = loop.run(scenario(), timeout_s=60)

    # 3 to 6 first, then what came after them: the order the stream has.
    assert recorder.carried[:13] == list(range(3, 16))
    assert info.num_ack_pending == 0


class FirstSubscribeTimesOut:
    """JetStream whose first pull subscription times out (a NATS node lost meanwhile)."""

    def __init__(self, js: Any) -> None:
        self._js = js
        self.failed = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._js, name)

    async def pull_subscribe(self, *args: Any, **kwargs: Any) -> Any:
        if not self.failed:
            self.failed = True
            raise nats.errors.TimeoutError
        return await self._js.pull_subscribe(*args, **kwargs)


def test_a_takeover_cut_off_after_its_rewind_still_starts_from_the_oldest_unacknowledged_message(
    loop: LoopThread, nats_url: str
) -> None:
    recorder = Recorder()

    async def scenario() -> Any:
        async with Scenario(nats_url) as stream:
            await stream.publish(range(1, 11))
            config = ConsumerConfig(
                durable_name=stream.spec.durable, ack_policy=AckPolicy.EXPLICIT, max_ack_pending=100
            )
            dead = await stream.js.pull_subscribe(
                stream.spec.filter_subject, durable=stream.spec.durable, stream=stream.name, config=config
            )
            fetched = await dead.fetch(6, timeout=5)
            for message in fetched[:2]:
                await message.ack_sync()
            flaky = FirstSubscribeTimesOut(stream.js)
            return await stream.run_until(recorder, 8, js=flaky)

    loop.run(scenario(), timeout_s=60)

    # The consumer was deleted by the first try and made by the second from where the first
    # rewound to, not from the stream's start.
    assert recorder.carried == list(range(3, 11))


def test_a_consumer_made_to_start_further_on_is_not_rewound_to_the_streams_start(
    loop: LoopThread, nats_url: str
) -> None:
    # As a takeover leaves it: made from a sequence, nothing acknowledged yet.
    recorder = Recorder()

    async def scenario() -> Any:
        async with Scenario(nats_url) as stream:
            await stream.publish(range(1, 11))
            made = ConsumerConfig(
                durable_name=stream.spec.durable,
                filter_subject=stream.spec.filter_subject,
                ack_policy=AckPolicy.EXPLICIT,
                deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
                opt_start_seq=5,
                max_ack_pending=100,
            )
            await stream.js.add_consumer(stream.name, config=made)
            return await stream.run_until(recorder, 6)

    loop.run(scenario(), timeout_s=60)

    assert recorder.carried == list(range(5, 11))


@pytest.mark.parametrize(
    ("ack_floor", "opt_start_seq", "settled_up_to"),
    [
        (0, None, 0),  # a new consumer from the stream's start
        (0, 31, 30),  # made from 31, nothing acknowledged: a clustered one says floor 0 then
        (40, 31, 40),  # acknowledged on from there
        (12, None, 12),
    ],
)
def test_what_a_consumer_has_settled(ack_floor: int, opt_start_seq: int | None, settled_up_to: int) -> None:
    info = SimpleNamespace(
        ack_floor=SimpleNamespace(stream_seq=ack_floor), config=SimpleNamespace(opt_start_seq=opt_start_seq)
    )

    assert acknowledged_up_to(info) == settled_up_to


def test_a_consumer_an_earlier_version_made_one_message_at_a_time_is_given_the_batch_size(
    loop: LoopThread, nats_url: str
) -> None:
    recorder = Recorder()

    async def scenario() -> Any:
        async with Scenario(nats_url) as stream:
            old = ConsumerConfig(
                durable_name=stream.spec.durable,
                filter_subject=stream.spec.filter_subject,
                ack_policy=AckPolicy.EXPLICIT,
                max_ack_pending=1,
            )
            await stream.js.add_consumer(stream.name, config=old)
            await stream.publish(range(1, 31))
            return await stream.run_until(recorder, 30)

    info = loop.run(scenario(), timeout_s=60)

    assert recorder.carried == list(range(1, 31))
    assert info.config.max_ack_pending == 100


class HeldMessage:
    """A delivered message as ``_carry_one`` settles it, without NATS."""

    def __init__(self) -> None:
        self.settled: list[str] = []

    async def in_progress(self) -> None:
        self.settled.append("in_progress")

    async def ack(self) -> None:
        self.settled.append("ack")


def test_a_failing_event_is_retried_in_place_not_by_restarting_the_reader() -> None:
    recorder = Recorder(fail_times={3: 2})
    spec = ConsumerSpec(
        durable="test-in-place", stream="S", filter_subject="s.>", service="test", description=""
    )
    reader = OrderedBatches(
        None, spec, PlanfixCommentAdded, Handlers(recorder.batch, recorder.one), lease=None
    )
    raw = HeldMessage()
    eventbus.set_retry_max_delay(0.05)
    try:
        asyncio.run(
            reader._carry_one(comment(3), raw, Delivery(stream_seq=3, num_delivered=1, consumer=spec.durable))
        )
    finally:
        eventbus.set_retry_max_delay(30.0)

    assert recorder.tries[3] == 3
    assert raw.settled == ["in_progress", "in_progress", "ack"]
