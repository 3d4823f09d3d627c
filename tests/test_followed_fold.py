"""A fold kept live over a real stream (``bridge_lib.followed_fold``): a copy an operator replayed
into one consumer is not a new fact for it."""

from __future__ import annotations

import uuid

import nats

from bridge_lib.eventbus import REPLAY_HEADER, REPLAY_INTO_HEADER
from bridge_lib.followed_fold import FollowedFold
from contracts.bindings import Bindings, evolve
from contracts.events import TaskBound, TaskUnbound, TelegramUser, encode_event, root_envelope
from contracts.subjects import StreamSpec
from tests.support import LoopThread

CHAT = -1001777
ADMIN = TelegramUser(id=7, full_name="Anna")


def test_an_old_bind_replayed_into_one_consumer_does_not_bind_again_in_the_fold(
    loop: LoopThread, nats_url: str
) -> None:
    name = f"TEST_FOLD_{uuid.uuid4().hex[:8]}"
    stream = StreamSpec(name=name, subjects=[f"{name}.>"], description="test", duplicate_window_s=60)
    bound = TaskBound(
        **root_envelope("bound", caused_by="t"),
        chat_id=CHAT, task_number=4821, task_title="Fix", created_task=False, requested_by=ADMIN,
    )  # fmt: skip
    unbound = TaskUnbound(
        **root_envelope("unbound", caused_by="t"), chat_id=CHAT, task_number=4821, unbound_by="x"
    )

    async def scenario() -> Bindings:
        client = await nats.connect(nats_url)
        fold = FollowedFold(stream=stream, subject_filter=f"{name}.>", initial=Bindings(), evolve=evolve)
        try:
            js = client.jetstream()
            await js.add_stream(name=name, subjects=stream.subjects)
            await js.publish(f"{name}.bound", encode_event(bound))
            await js.publish(f"{name}.unbound", encode_event(unbound))
            replayed = {REPLAY_HEADER: "r1", REPLAY_INTO_HEADER: "relay-binding-notices"}
            await js.publish(f"{name}.bound", encode_event(bound), headers=replayed)
            await fold.start(js)
            return fold.value
        finally:
            await fold.stop()
            await client.jetstream().delete_stream(name)
            await client.close()

    assert loop.run(scenario()).get(CHAT) is None
