"""SIGTERM in the middle of work, and the store going away, for the binder and the relay.

* SIGTERM: they stop within 10 s with exit 0, and what they were doing is done once after the
  restart, neither lost nor repeated. (The gateways' SIGTERM is tested in their own modules.)
* MongoDB down: they stop acknowledging what needs the store (it is retried, not dropped) and
  carry it, once, when the store is back. The module runs its own nx-27017 for that.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from contracts.events import TaskBound
from devtools import devstack
from devtools.devstack import ManagedProcess
from sandbox.fake_planfix import FakePlanfix
from sandbox.fake_telegram import FakeTelegram
from tests.e2e_bridge import ADMIN_ID, Bridge, bind_new_task, running_bridge
from tests.support import LoopThread, eventually, relayed_comments, stays

# Long enough for the stop to land while Planfix still holds the call.
PLANFIX_HOLDS_S = 6.0
# Within the relay's 7 s stop grace: the post in flight is let finish.
PLANFIX_ANSWERS_WITHIN_GRACE_S = 3.0
# Longer than a restart takes (even on a busy machine): Planfix completes the cut-off call only
# after the restarted relay has looked for the comment, as a slow Planfix would.
PLANFIX_HOLDS_PAST_RESTART_S = 20.0


@dataclass
class Store:
    """A store this module may stop and start again (same port, same data)."""

    data_dir: Path
    server: ManagedProcess

    def stop(self) -> None:
        self.server.stop()

    def start_again(self) -> None:
        self.server = devstack.start_nx27017(self.data_dir, port=self.server.port)


@pytest.fixture(scope="module")
def own_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    data_dir = tmp_path_factory.mktemp("outage-mongo")
    store = Store(data_dir, devstack.start_nx27017(data_dir))
    try:
        yield store
    finally:
        store.stop()


@pytest.fixture(scope="module")
def bridge(
    loop: LoopThread, work_dir: Path, own_store: Store, fake_telegram: FakeTelegram, fake_planfix: FakePlanfix
) -> Iterator[Bridge]:
    with running_bridge(
        loop, work_dir, own_store.server.extra["url"], fake_telegram, fake_planfix, name="stop-outage"
    ) as running:
        yield running


def stop_within_10_s_with_exit_0(bridge: Bridge, name: str) -> None:
    process = bridge.processes[name]
    code = process.stop(timeout_s=10)  # killed (and not 0) if it takes longer
    assert code == 0, f"{name} exit code {code}:\n{process.log_text()[-3000:]}"
    assert f"{name}_stopping" in process.log_text()


def stop_the_relay_while_planfix_holds_a_comment(
    bridge: Bridge, fake_telegram: FakeTelegram, fake_planfix: FakePlanfix, chat_id: int, *, hold_s: float
) -> int:
    """The relay gets SIGTERM while Planfix holds a message's comment for ``hold_s``, and stops
    in time; the bound task's number."""
    number = bind_new_task(bridge, fake_telegram, chat_id, "Stop the relay mid-call")
    fake_planfix.delay_next(hold_s)
    fake_telegram.add_group_message(chat_id, "in flight at SIGTERM")
    eventually(lambda: fake_planfix.held_requests() > 0, what="the relay waiting on Planfix")
    stop_within_10_s_with_exit_0(bridge, "relay")
    return number


def test_sigterm_to_the_relay_while_it_posts_a_comment_lets_the_post_finish_then_exits(
    bridge: Bridge, fake_telegram: FakeTelegram, fake_planfix: FakePlanfix, unique_chat_id: int
) -> None:
    number = stop_the_relay_while_planfix_holds_a_comment(
        bridge, fake_telegram, fake_planfix, unique_chat_id, hold_s=PLANFIX_ANSWERS_WITHIN_GRACE_S
    )

    # Done before it exited, not left for the next start.
    comments = relayed_comments(fake_planfix, number)
    assert len(comments) == 1
    assert "in flight at SIGTERM" in comments[0].description
    bridge.processes["relay"].start()
    stays(lambda: len(relayed_comments(fake_planfix, number)) == 1, for_s=3, what="one comment, not two")


@pytest.mark.xfail(
    strict=True,
    reason="known gap: a stop lets the Planfix call in flight finish for 7 s (of the 10 s a stop "
    "may take); a Planfix slower than that is cut off, still completes the request, and the "
    "restarted relay, finding no comment yet by sourceObjectId, posts it again. (A call that timed "
    "out is looked for for 60 s before a second post; a cancelled one is not, since a cancel "
    "before the request left would hold the group's messages for nothing.)",
)
def test_sigterm_to_the_relay_while_planfix_holds_the_call_past_the_stop_grace_then_once(
    bridge: Bridge, fake_telegram: FakeTelegram, fake_planfix: FakePlanfix, unique_chat_id: int
) -> None:
    number = stop_the_relay_while_planfix_holds_a_comment(
        bridge, fake_telegram, fake_planfix, unique_chat_id, hold_s=PLANFIX_HOLDS_PAST_RESTART_S
    )
    bridge.processes["relay"].start()

    eventually(lambda: relayed_comments(fake_planfix, number), timeout_s=60, what="the comment")
    eventually(lambda: fake_planfix.held_requests() == 0, timeout_s=60, what="Planfix done with it")
    stays(lambda: len(relayed_comments(fake_planfix, number)) == 1, for_s=2, what="one comment, not two")
    assert "in flight at SIGTERM" in relayed_comments(fake_planfix, number)[0].description


def test_sigterm_to_the_binder_while_it_creates_a_task_then_the_group_is_bound_once(
    bridge: Bridge, fake_telegram: FakeTelegram, fake_planfix: FakePlanfix, unique_chat_id: int
) -> None:
    fake_telegram.set_member_status(unique_chat_id, ADMIN_ID, "administrator")
    fake_planfix.delay_next(PLANFIX_HOLDS_S)
    fake_telegram.add_group_message(unique_chat_id, "/task Stop the binder mid-call")
    eventually(lambda: fake_planfix.held_requests() > 0, what="the binder waiting on Planfix")

    stop_within_10_s_with_exit_0(bridge, "binder")
    bridge.processes["binder"].start()

    def bound() -> list[TaskBound]:
        return [
            e for e in bridge.events("binding.>") if isinstance(e, TaskBound) and e.chat_id == unique_chat_id
        ]

    eventually(bound, timeout_s=60, what="group bound")
    stays(lambda: len(bound()) == 1, for_s=3, what="bound once")
    [binding] = bound()
    task = fake_planfix.task(binding.task_number)
    assert task is not None
    assert task.name == "Stop the binder mid-call"


# --- the store goes away (last: it stops the module's store) -----------------------------------


def test_while_mongodb_is_down_the_binder_and_relay_hold_their_work_and_carry_it_once_after(
    bridge: Bridge,
    own_store: Store,
    fake_telegram: FakeTelegram,
    fake_planfix: FakePlanfix,
    unique_chat_id: int,
) -> None:
    bound_group, unbound_group = unique_chat_id, unique_chat_id - 1
    number = bind_new_task(bridge, fake_telegram, bound_group, "Store outage")
    fake_telegram.set_member_status(unbound_group, ADMIN_ID, "administrator")
    relay, binder = bridge.processes["relay"], bridge.processes["binder"]
    relay_seen, binder_seen = len(relay.log_text()), len(binder.log_text())

    own_store.stop()
    fake_telegram.add_group_message(bound_group, "written while the store is down")
    fake_telegram.add_group_message(unbound_group, "/task Bound while the store is down")

    # Neither is acknowledged: each service says it will try again.
    eventually(lambda: "retry_in_s" in relay.log_text()[relay_seen:], timeout_s=60, what="relay holds it")
    eventually(lambda: "retry_in_s" in binder.log_text()[binder_seen:], timeout_s=60, what="binder holds it")
    assert relayed_comments(fake_planfix, number) == []

    own_store.start_again()

    eventually(
        lambda: relayed_comments(fake_planfix, number), timeout_s=90, what="the comment after the outage"
    )

    def bound() -> list[TaskBound]:
        return [
            e for e in bridge.events("binding.>") if isinstance(e, TaskBound) and e.chat_id == unbound_group
        ]

    eventually(bound, timeout_s=90, what="the group bound after the outage")
    stays(
        lambda: len(relayed_comments(fake_planfix, number)) == 1 and len(bound()) == 1,
        for_s=3,
        what="once each",
    )
    assert "written while the store is down" in relayed_comments(fake_planfix, number)[0].description
    assert relay.alive()
    assert binder.alive()
