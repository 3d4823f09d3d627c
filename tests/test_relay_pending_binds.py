"""Which messages of an unbound group wait for a bind request, and for how long (in memory:
the streams' last messages and the directory are stand-ins; the end-to-end test is in
test_bridge_end_to_end)."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import nats.js.errors
import pytest

from contracts.events import (
    BindingRejectionReason,
    BindRejected,
    BindRequested,
    TaskBound,
    TelegramUser,
    UnbindRequested,
    encode_event,
    envelope_after,
    root_envelope,
    utc_now,
)
from contracts.subjects import binding_bound, binding_rejected, telegram_bind_requested
from services.relay.directory import BoundTask
from services.relay.to_planfix.pending_binds import BindOutcome, PendingBinds

CHAT = -1001234
ADMIN = TelegramUser(id=501, full_name="Ivan Admin")


class LastMessages:
    """``get_last_msg`` over a dict of subject -> event."""

    def __init__(self) -> None:
        self.last: dict[str, Any] = {}

    async def get_last_msg(self, stream: str, subject: str) -> Any:
        if subject not in self.last:
            raise nats.js.errors.NotFoundError
        return type("Raw", (), {"data": encode_event(self.last[subject])})()


class Directory:
    def __init__(self) -> None:
        self.bound: BoundTask | None = None

    async def task_for(self, chat_id: int, thread_id: int | None = None) -> BoundTask | None:
        return self.bound


def request(message_id: int = 10, *, thread_id: int | None = None, age_s: float = 0.0) -> BindRequested:
    envelope = root_envelope(f"bind:{CHAT}:{message_id}", caused_by="test")
    envelope["occurred_at"] = utc_now() - timedelta(seconds=age_s)
    return BindRequested(
        **envelope,
        chat_id=CHAT,
        message_id=message_id,
        requested_by=ADMIN,
        task_title="Fix",
        thread_id=thread_id,
    )


def bound(cause: BindRequested) -> TaskBound:
    return TaskBound(
        **envelope_after(cause, "bound"),
        chat_id=CHAT,
        task_number=4821,
        task_title="Fix",
        created_task=True,
        requested_by=ADMIN,
    )


def outcome(
    streams: LastMessages,
    directory: Directory,
    newest: int,
    thread_id: int | None = None,
    wait_s: float = 0.3,
) -> Any:
    async def pause(seconds: float) -> None:
        await asyncio.sleep(0.01)

    binds = PendingBinds(streams, directory, wait_s=wait_s, pause=pause)  # type: ignore[arg-type]
    return asyncio.run(binds.outcome(CHAT, thread_id, newest))


def test_a_group_with_no_bind_request_is_let_go_at_once() -> None:
    assert outcome(LastMessages(), Directory(), newest=11) is None


@pytest.mark.parametrize(
    ("requested", "newest", "thread_id"),
    [
        pytest.param({}, 9, None, id="the message was written before the /task"),
        pytest.param({"age_s": 31.0}, 11, None, id="the request is older than the wait"),
        pytest.param({"thread_id": 5}, 11, 6, id="a bind of another forum topic"),
    ],
)
def test_messages_a_request_is_not_about_do_not_wait(
    requested: dict[str, Any], newest: int, thread_id: int | None
) -> None:
    streams = LastMessages()
    streams.last[telegram_bind_requested(CHAT)] = request(10, **requested)
    assert outcome(streams, Directory(), newest, thread_id, wait_s=30.0) is None


def test_the_last_word_an_unbind_means_nothing_is_pending() -> None:
    streams = LastMessages()
    streams.last[telegram_bind_requested(CHAT)] = UnbindRequested(
        **root_envelope("unbind", caused_by="test"), chat_id=CHAT, message_id=10, requested_by=ADMIN
    )
    assert outcome(streams, Directory(), newest=11) is None


def test_a_refused_request_ends_the_wait_and_the_messages_stay_unbound() -> None:
    streams = LastMessages()
    pending = request(10)
    streams.last[telegram_bind_requested(CHAT)] = pending
    streams.last[binding_rejected(CHAT)] = BindRejected(
        **envelope_after(pending, "rejected"),
        chat_id=CHAT,
        reason=BindingRejectionReason.NOT_ALLOWED,
        detail="no",
    )
    assert outcome(streams, Directory(), newest=11) == BindOutcome(None, 10)


def test_a_message_after_the_request_follows_the_binding_once_it_lands() -> None:
    streams = LastMessages()
    pending = request(10)
    streams.last[telegram_bind_requested(CHAT)] = pending
    directory = Directory()
    directory.bound = BoundTask(4821, "Fix")
    streams.last[binding_bound(CHAT)] = bound(pending)

    assert outcome(streams, directory, newest=11) == BindOutcome(BoundTask(4821, "Fix"), 10)


def test_an_undecided_request_is_waited_for_only_so_long() -> None:
    streams = LastMessages()
    streams.last[telegram_bind_requested(CHAT)] = request(10)

    assert outcome(streams, Directory(), newest=11) == BindOutcome(None, 10)
