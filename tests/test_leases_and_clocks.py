"""Leases and pacers between replicas whose wall clocks disagree.

A lease's ``until`` is written by its holder's clock; another replica decides that it lapsed by
watching its revision stay the same for a whole lease time on its own monotonic clock (or by it
being over by more than ``CLOCK_TOLERANCE_S``), so a replica whose clock is 30 s ahead does not
take a group still held. In memory with clocks the test moves; the fault suite runs the same with
a relay process whose clock is 30 s off (``test_long_faults``).
"""

from __future__ import annotations

import asyncio

from bridge_lib.lease import CLOCK_TOLERANCE_S, Leases
from bridge_lib.pacing import MAX_PLAUSIBLE_AHEAD_S, SharedPacer
from services.relay.to_telegram.courier import TelegramPace
from tests.test_relay_courier import MemoryBucket

TTL_S = 20.0
KEY = "owner.-100"


class Clocks:
    """Real time as the test moves it; each replica reads it with its own offset."""

    def __init__(self) -> None:
        self.real = 1_000_000.0

    def wall(self, offset_s: float = 0.0):  # type: ignore[no-untyped-def]
        return lambda: self.real + offset_s

    def monotonic(self) -> float:
        return self.real - 900_000.0


def replica(bucket: MemoryBucket, clocks: Clocks, owner: str, *, offset_s: float = 0.0) -> Leases:
    """A relay replica's leases, its wall clock ``offset_s`` off the real time."""
    return Leases(bucket, owner=owner, ttl_s=TTL_S, clock=clocks.wall(offset_s), monotonic=clocks.monotonic)


async def a_holds_the_lease(*, b_offset_s: float) -> tuple[Leases, Leases, Clocks, MemoryBucket]:
    """Replicas A and B (B's clock ``b_offset_s`` off) on one bucket, A holding ``KEY``."""
    bucket, clocks = MemoryBucket(), Clocks()
    a = replica(bucket, clocks, "relay-a")
    b = replica(bucket, clocks, "relay-b", offset_s=b_offset_s)
    assert await a.acquire(KEY)
    return a, b, clocks, bucket


def test_a_replica_whose_clock_is_30_s_ahead_never_takes_a_lease_still_held() -> None:
    async def scenario() -> list[bool]:
        a, b, clocks, _ = await a_holds_the_lease(b_offset_s=30.0)
        taken = []
        for _ in range(40):  # 200 s, A working all along (it renews at half its lease time)
            clocks.real += 5.0
            assert await a.acquire(KEY)
            taken.append(await b.acquire(KEY))
        return taken

    assert not any(asyncio.run(scenario()))


def test_a_replica_whose_clock_is_30_s_behind_takes_over_a_lapsed_lease_in_one_lease_time() -> None:
    async def scenario() -> tuple[bool, bool]:
        _, b, clocks, _ = await a_holds_the_lease(b_offset_s=-30.0)
        # A dies now. B looks at once, then once its own clock says a lease time went by.
        first = await b.acquire(KEY)
        clocks.real += TTL_S
        return first, await b.acquire(KEY)

    assert asyncio.run(scenario()) == (False, True)


def test_a_released_lease_or_one_over_long_ago_is_taken_at_once() -> None:
    async def scenario() -> tuple[bool, bool]:
        a, b, clocks, bucket = await a_holds_the_lease(b_offset_s=0.0)
        await a.release(KEY)
        released = await b.acquire(KEY)
        await b.release(KEY)
        assert await a.acquire("other")
        clocks.real += TTL_S + CLOCK_TOLERANCE_S + 1  # the holder died long before B started
        fresh_b = replica(bucket, clocks, "relay-c")
        return released, await fresh_b.acquire("other")

    assert asyncio.run(scenario()) == (True, True)


def test_the_revision_fences_a_holder_that_paused_past_its_lease() -> None:
    async def scenario() -> tuple[bool, bool]:
        a, b, clocks, _ = await a_holds_the_lease(b_offset_s=0.0)
        assert not await b.acquire(KEY)
        clocks.real += TTL_S  # A stalls (a long pause) for a whole lease time
        taken = await b.acquire(KEY)
        return taken, await a.renew(KEY)

    assert asyncio.run(scenario()) == (True, False)


def test_a_pacing_slot_from_a_clock_far_ahead_is_not_waited_for() -> None:
    async def scenario() -> list[float]:
        bucket, slept = MemoryBucket(), []
        now = 1_000_000.0
        await bucket.put("account_x", f"{now + MAX_PLAUSIBLE_AHEAD_S + 3600:.6f}".encode())

        async def sleep(seconds: float) -> None:
            slept.append(seconds)

        pacer = SharedPacer(bucket, "account_x", rate_per_s=1.0, clock=lambda: now, sleep=sleep)
        await pacer.wait_turn()
        return slept

    assert asyncio.run(scenario()) == []


def test_a_bot_slot_booked_by_a_clock_30_s_ahead_does_not_hold_the_other_replicas() -> None:
    async def scenario() -> list[float]:
        bucket, slept, now = MemoryBucket(), [], 1_000_000.0

        async def sleep(seconds: float) -> None:
            slept.append(seconds)

        ahead = TelegramPace(
            bucket, group_limit=20, group_window_s=60, bot_per_second=30, clock=lambda: now + 30
        )
        ours = TelegramPace(
            bucket, group_limit=20, group_window_s=60, bot_per_second=30, clock=lambda: now, sleep=sleep
        )
        await ahead.take_bot_slots()
        await ours.take_bot_slots()
        return slept

    assert asyncio.run(scenario()) == []


def test_a_holders_wall_clock_stepped_back_does_not_lengthen_its_hold() -> None:
    async def scenario() -> tuple[bool, bool]:
        bucket, clocks, step = MemoryBucket(), Clocks(), [0.0]
        a = Leases(
            bucket,
            owner="relay-a",
            ttl_s=TTL_S,
            clock=lambda: clocks.real + step[0],
            monotonic=clocks.monotonic,
        )
        assert await a.acquire(KEY)
        step[0] = -30.0  # NTP steps its clock back
        clocks.real += TTL_S - 1
        still = a.holds(KEY)
        clocks.real += 2
        return still, a.holds(KEY)

    assert asyncio.run(scenario()) == (True, False)
