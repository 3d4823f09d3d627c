"""``bridge binder rebuild``: the binder's store compared with (and repaired from) the BINDING stream."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import msgspec
from nats.js.api import DeliverPolicy

from contracts.bindings import Binding, Bindings, evolve
from contracts.events import BindingStoreDifference, decode_event
from contracts.subjects import ALL_BINDING_EVENTS, BINDING_STREAM


def differences(desired: Bindings, stored: list[Binding]) -> list[BindingStoreDifference]:
    """What the store must change to hold ``desired``: restored, changed and removed groups."""
    found: list[BindingStoreDifference] = []
    have_by_key = {b.key: b for b in stored}
    want_by_key = {b.key: b for b in desired}
    for key, want in sorted(want_by_key.items()):
        have = have_by_key.get(key)
        if have is None:
            found.append(
                BindingStoreDifference(group_key=key, what="restored", detail=f"task #{want.task_number}")
            )
        elif (have.task_number, have.task_title, have.suspended) != (
            want.task_number,
            want.task_title,
            want.suspended,
        ):
            detail = f"task #{have.task_number} -> #{want.task_number}"
            if have.suspended != want.suspended:
                detail += ", suspended" if want.suspended else ", no longer suspended"
            found.append(BindingStoreDifference(group_key=key, what="changed", detail=detail))
    for key, have in sorted(have_by_key.items()):
        if key not in want_by_key:
            found.append(
                BindingStoreDifference(
                    group_key=key,
                    what="removed",
                    detail=f"task #{have.task_number}: no binding event says so",
                )
            )
    return found


async def bindings_in_stream(js: Any, *, timeout_s: float = 30.0) -> tuple[Bindings, int]:
    """The BINDING stream's events as they stand now, folded; and how many there were."""
    info = await js.stream_info(BINDING_STREAM.name)
    last = info.state.last_seq
    bindings, count = Bindings(), 0
    if info.state.messages == 0:
        return bindings, 0
    done = asyncio.Event()

    async def on_message(msg: Any) -> None:
        nonlocal bindings, count
        # An event this version cannot read binds nothing.
        with contextlib.suppress(msgspec.DecodeError, msgspec.ValidationError):
            bindings = evolve(bindings, decode_event(msg.data))
        count += 1
        if msg.metadata.sequence.stream >= last:
            done.set()

    subscription = await js.subscribe(
        ALL_BINDING_EVENTS, ordered_consumer=True, deliver_policy=DeliverPolicy.ALL, cb=on_message
    )
    try:
        await asyncio.wait_for(done.wait(), timeout_s)
    finally:
        await subscription.unsubscribe()
    return bindings, count
