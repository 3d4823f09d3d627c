"""Faults past short outages: Planfix away for (simulated) hours, over its daily cap, webhooks
that never come or come late and out of order, the store killed mid-burst, the streams at their
byte cap, a relay whose clock is 30 s off, and two faults at once. Same counting as
``test_faults``: sent, delivered, lost, duplicated, reordered, both ways.

A bridge of its own (its own store, so a fault may kill it): the retry delay is capped at
``RETRY_MAX_DELAY_S_UNDER_TEST`` (0.5 s instead of 300 s, so each second of outage stands for
ten minutes of real back-off) and the re-read that reconciles runs every 3 s with a 1 s grace
(instead of 10 min / 1 h and 60 s). Sizes: ``Sizes.long_*`` (``make test``: 5 groups, 40
messages each way).
"""

from __future__ import annotations

import json
import time

import nats
import pytest

from contracts.subjects import FETCHER_COMMENT_WEBHOOKS, PLANFIX_COMMENT_MARKS_BUCKET
from tests.faults.figures import assert_exact
from tests.faults.stack import RETRY_MAX_DELAY_S_UNDER_TEST, FaultBridge, fault_bridge_fixture, sizes
from tests.support import eventually

SIZES = sizes()
pytestmark = pytest.mark.timeout(900)
FIRST_CHAT_ID = -1009800000000
REREAD_INTERVAL_S = 3.0
# Where a scenario request goes when the webhook "fails": nothing listens there.
DEAD_WEBHOOK_URL = "http://127.0.0.1:9/planfix/webhook/nobody-home"
# How long the streams stay at their byte cap.
STREAMS_FULL_S = 5.0


def groups() -> list[int]:
    return [FIRST_CHAT_ID - index for index in range(SIZES.long_groups)]


bridge = fault_bridge_fixture(
    "long fault",
    groups,
    own_store=True,
    extra_env={
        "RETRY_MAX_DELAY_S": str(RETRY_MAX_DELAY_S_UNDER_TEST),
        "PLANFIX_REREAD_INTERVAL_MIN": str(REREAD_INTERVAL_S / 60),
        "PLANFIX_RECONCILE_QUIET_INTERVAL_MIN": str(REREAD_INTERVAL_S / 60),
        "PLANFIX_RECONCILE_GRACE_S": "1",
        "PLANFIX_REREAD_MAX_PER_DAY": "1000000",
    },
)


def fetcher_idle(bridge: FaultBridge) -> bool:
    """The gateway's comment fetcher has no notice waiting or in hand."""

    async def read() -> bool:
        nc = await nats.connect(bridge.cluster.url.split(","))
        try:
            info = await nc.jetstream().consumer_info(
                FETCHER_COMMENT_WEBHOOKS.stream, FETCHER_COMMENT_WEBHOOKS.durable
            )
            return not info.num_pending and not info.num_ack_pending
        finally:
            await nc.close()

    return bridge.loop.run(read())


def set_byte_caps(bridge: FaultBridge, caps: dict[str, int | None]) -> dict[str, int]:
    """Set each stream's ``max_bytes`` (None: what it holds now, so it is full); the caps before."""

    async def run() -> dict[str, int]:
        nc = await nats.connect(bridge.cluster.url.split(","))
        try:
            js = nc.jetstream()
            before: dict[str, int] = {}
            for name, cap in caps.items():
                info = await js.stream_info(name)
                before[name] = info.config.max_bytes or -1
                info.config.max_bytes = info.state.bytes if cap is None else cap
                await js.update_stream(info.config)
            return before
        finally:
            await nc.close()

    return bridge.loop.run(run())


def marked_tasks(bridge: FaultBridge) -> set[int]:
    """Tasks reconciliation has a mark for (it checks comments above it)."""

    async def read() -> set[int]:
        nc = await nats.connect(bridge.cluster.url.split(","))
        try:
            kv = await nc.jetstream().key_value(PLANFIX_COMMENT_MARKS_BUCKET.name)
            return {int(key.removeprefix("task_")) for key in await kv.keys()}
        except Exception:
            return set()
        finally:
            await nc.close()

    return bridge.loop.run(read())


def test_planfix_away_for_simulated_hours_then_everything_flows_and_nothing_is_dead_lettered(
    bridge: FaultBridge,
) -> None:
    fault = "planfix-hours"
    chats = groups()

    def outage() -> None:
        bridge.fake_planfix.set_unavailable(True)
        # Two hours at the real retry cap: past the 98 minutes (200 deliveries) after which
        # the bridge used to give up on a message and dead-letter it.
        time.sleep(SIZES.long_outage_s)
        bridge.fake_planfix.set_unavailable(False)

    written = bridge.burst(fault, chats, SIZES.long_messages, midway=outage)
    bridge.redeliver_failed_webhooks()
    bridge.settle(fault, chats, written)

    assert_exact(*bridge.report(fault, chats, written))
    assert bridge.dead_lettered_since_the_burst() == 0


def test_planfix_over_its_daily_cap_pauses_until_it_resets_then_everything_flows(bridge: FaultBridge) -> None:
    fault = "planfix-dailycap"
    chats = groups()
    refused_before = bridge.fake_planfix.refused_for_daily_cap()

    written = bridge.burst(
        fault,
        chats,
        SIZES.long_messages,
        midway=lambda: bridge.fake_planfix.use_up_daily_cap(SIZES.daily_cap_reset_s),
    )
    bridge.settle(fault, chats, written)

    assert_exact(*bridge.report(fault, chats, written))
    refused = bridge.fake_planfix.refused_for_daily_cap() - refused_before
    print(f"\n{fault}: {refused} requests refused with code 22 (the rest waited without asking)")
    # Each process learns the pause from its own refusal or from the bucket: what it had in
    # flight when the cap hit is refused (the relay carries the groups' tasks side by side; the
    # gateway and the binder a few), then nothing more: no request per message or per retry.
    assert 0 < refused <= len(chats) + 4
    assert bridge.dead_lettered_since_the_burst() == 0


def test_comments_whose_webhooks_never_came_are_found_by_reconciliation(bridge: FaultBridge) -> None:
    fault = "webhooks-lost"
    chats = groups()
    tasks = {bridge.tasks[chat] for chat in chats}
    eventually(lambda: tasks <= marked_tasks(bridge), timeout_s=60, what="every task has a mark")
    url = bridge.fake_planfix.webhook_url

    def lose_webhooks() -> None:
        # A scenario switched off by mistake: no request at all for the rest of the burst. Once
        # the requests already queued are answered: a notice reads its task's newest comments,
        # so one still on its way would carry the comments written after it.
        eventually(
            lambda: bridge.fake_planfix.webhooks_waiting() == 0, timeout_s=60, what="scenario queue empty"
        )
        eventually(lambda: fetcher_idle(bridge), timeout_s=60, what="every notice fetched")
        bridge.fake_planfix.webhook_url = None

    try:
        written = bridge.burst(fault, chats, SIZES.long_messages, midway=lose_webhooks)
        # Still off: a request for one of the bridge's own comments would carry the rest.
        bridge.settle(fault, chats, written)
    finally:
        bridge.fake_planfix.webhook_url = url

    assert_exact(*bridge.report(fault, chats, written))
    bridge.assert_logged(fault, "comment_found_by_reconciliation", "comments found by reconciliation")


def test_webhooks_resent_late_and_out_of_order_add_nothing(bridge: FaultBridge) -> None:
    fault = "webhooks-late"
    chats = groups()
    url = bridge.fake_planfix.webhook_url
    webhooks_before = len(bridge.fake_planfix.webhook_deliveries)

    def fail_webhooks() -> None:
        # Planfix's requests fail (nothing answers): it sends them again 15 minutes later.
        bridge.fake_planfix.webhook_url = DEAD_WEBHOOK_URL

    try:
        written = bridge.burst(fault, chats, SIZES.long_messages, midway=fail_webhooks)
    finally:
        bridge.fake_planfix.webhook_url = url
    # Reconciliation carries them in the meantime, in order.
    bridge.settle(fault, chats, written)
    eventually(lambda: bridge.fake_planfix.webhooks_waiting() == 0, timeout_s=60, what="scenario queue empty")
    failed = [d for d in bridge.fake_planfix.webhook_deliveries[webhooks_before:] if d.status != 200]
    # Then Planfix's late retries come, newest first.
    for delivery in reversed(failed):
        event = json.loads(delivery.body)["event"]
        bridge.fake_planfix.post_webhook(delivery.task_number, delivery.comment_id, event)
    eventually(lambda: bridge.fake_planfix.webhooks_waiting() == 0, timeout_s=60, what="late retries sent")
    time.sleep(3.0)  # a duplicate would show by now

    to_planfix, to_telegram = bridge.report(fault, chats, written)
    print(f"\n{fault}: {len(failed)} scenario requests failed and were sent again late, newest first")
    assert failed
    assert_exact(to_planfix, to_telegram)


def test_the_store_killed_and_restarted_mid_burst_loses_and_reorders_nothing(bridge: FaultBridge) -> None:
    if bridge.store is None:
        pytest.skip("MONGODB_URL names a store this test cannot kill")
    fault = "kill-store"
    chats = groups()

    def store_away() -> None:
        bridge.kill_store()
        time.sleep(3.0)
        bridge.start_store()

    written = bridge.burst(fault, chats, SIZES.long_messages, midway=store_away)
    bridge.settle(fault, chats, written)

    # A Telegram send whose record the store could not take is sent again: one per group at most.
    assert_exact(*bridge.report(fault, chats, written), telegram_in_flight=len(chats))


def test_streams_at_their_byte_cap_refuse_then_everything_flows_once_there_is_room(
    bridge: FaultBridge,
) -> None:
    fault = "streams-full"
    chats = groups()
    caps: dict[str, int] = {}

    def fill_streams() -> None:
        # Both streams that take what comes from outside refuse new messages (discard policy
        # "new") for a while: the gateways wait and retry, Telegram and Planfix keep the rest.
        caps.update(set_byte_caps(bridge, {"TELEGRAM": None, "PLANFIX": None}))
        time.sleep(STREAMS_FULL_S)
        set_byte_caps(bridge, {name: cap for name, cap in caps.items()})

    written = bridge.burst(fault, chats, SIZES.long_messages, midway=fill_streams)
    bridge.redeliver_failed_webhooks()
    bridge.settle(fault, chats, written)

    assert_exact(*bridge.report(fault, chats, written))
    assert bridge.dead_lettered_since_the_burst() == 0
    bridge.assert_logged(fault, "stream_full", "publishes refused by a full stream, then retried")


def test_a_relay_replica_with_its_clock_30_s_off_keeps_every_group_in_order(bridge: FaultBridge) -> None:
    fault = "clock-30s"
    chats = groups()
    # Behind: the leases it writes end 30 s early by everyone else's clock (lease times are 20 s
    # here), so a replica trusting that clock would take its groups while it still sends.
    bridge.add_relay_replicas(1, clock_skew_s=-30.0)
    try:
        written = bridge.burst(fault, chats, SIZES.long_messages)
        bridge.settle(fault, chats, written)
        assert_exact(*bridge.report(fault, chats, written))
    finally:
        bridge.stop_relay_replicas()


def test_a_relay_killed_while_a_nats_node_is_lost_loses_and_reorders_nothing(bridge: FaultBridge) -> None:
    fault = "relay-and-natsnode"
    chats = groups()

    def two_faults() -> None:
        bridge.cluster.stop_node(0, kill=True)
        bridge.kill("relay")
        time.sleep(0.5)
        bridge.start("relay")

    try:
        written = bridge.burst(fault, chats, SIZES.long_messages, midway=two_faults)
        bridge.redeliver_failed_webhooks()
        bridge.settle(fault, chats, written)
    finally:
        bridge.cluster.start_node(0)

    assert_exact(*bridge.report(fault, chats, written), telegram_in_flight=len(chats))
