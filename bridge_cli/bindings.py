"""``bridge bindings list|show|unbind`` and ``bridge binder rebuild``.

The BINDING stream is the source of truth: the bindings are what its events add up to
(``TaskBound`` binds a group, ``TaskUnbound`` removes that binding). The binder's MongoDB
collection is a copy the binder keeps for its own decisions; ``binder rebuild`` rewrites it from
the events alone and reports every difference it found.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated, Any

import msgspec
import typer
from motor.motor_asyncio import AsyncIOMotorClient

from bridge_cli import context
from bridge_cli.events import _connect_or_exit
from bridge_cli.render import event_line
from bridge_cli.streams import StoredMessage, read_stream
from bridge_lib.eventbus import ConnectionPublisher
from contracts import subjects
from contracts.events import TaskBound, TaskUnbound, envelope_after
from contracts.subjects import BINDING_STREAM
from services.binder.store import Binding, BindingStore, group_key

bindings_app = typer.Typer(help="The group-to-task bindings, as the BINDING stream records them.")
binder_app = typer.Typer(help="Repair the binder's own state.")


class CurrentBinding(msgspec.Struct, frozen=True, kw_only=True):
    """A binding in force, with the event that made it."""

    bound: TaskBound
    seq: int

    @property
    def key(self) -> str:
        return group_key(self.bound.chat_id, self.bound.thread_id)

    def as_stored(self) -> Binding:
        """The binder's document for this binding, rebuilt from the event alone."""
        event = self.bound
        return Binding(
            group_key=self.key,
            chat_id=event.chat_id,
            thread_id=event.thread_id,
            task_number=event.task_number,
            task_title=event.task_title,
            bound_at=event.occurred_at,
            bound_by_user_id=event.requested_by.id,
            # The request's own key is not in the event; its id is (the event's cause).
            request_key=f"event:{event.causation_id}",
        )


def fold_bindings(messages: Iterable[StoredMessage]) -> dict[str, CurrentBinding]:
    """Group key -> the binding in force after these BINDING events, in stream order."""
    current: dict[str, CurrentBinding] = {}
    for message in messages:
        event = message.event()
        if isinstance(event, TaskBound):
            binding = CurrentBinding(bound=event, seq=message.seq)
            current[binding.key] = binding
        elif isinstance(event, TaskUnbound):
            key = group_key(event.chat_id, event.thread_id)
            if key in current and current[key].bound.task_number == event.task_number:
                del current[key]
    return current


async def _binding_messages(js: Any) -> list[StoredMessage]:
    return [message async for message in read_stream(js, BINDING_STREAM.name)]


def _describe(binding: CurrentBinding) -> str:
    event = binding.bound
    topic = f" topic {event.thread_id}" if event.thread_id is not None else ""
    return (
        f"chat {event.chat_id}{topic} -> task #{event.task_number} «{event.task_title}» "
        f"since {event.occurred_at:%Y-%m-%d %H:%M} UTC by {event.requested_by.display} "
        f"(BINDING/{binding.seq})"
    )


def _mongo(target: context.Target) -> tuple[AsyncIOMotorClient[dict[str, Any]], BindingStore]:
    client: AsyncIOMotorClient[dict[str, Any]] = AsyncIOMotorClient(
        target.mongodb_url, serverSelectionTimeoutMS=5000, tz_aware=True
    )
    return client, BindingStore(client[target.mongodb_database])


# --- bindings list / show / unbind --------------------------------------------------------------


@bindings_app.command("list")
def list_bindings(ctx: typer.Context) -> None:
    """Every binding in force, from the BINDING stream."""
    target = context.target(ctx)

    async def run() -> dict[str, CurrentBinding]:
        nc = await _connect_or_exit(target.nats_url)
        try:
            return fold_bindings(await _binding_messages(nc.jetstream()))
        finally:
            await nc.close()

    current = context.run(run())
    out = context.console()
    for binding in sorted(current.values(), key=lambda b: b.key):
        out.print(_describe(binding))
    out.print(f"{len(current)} binding(s)")


# Chat ids of groups are negative: let "-100123" be the argument, not an unknown option.
NEGATIVE_NUMBERS_OK = {"ignore_unknown_options": True}


@bindings_app.command("show", context_settings=NEGATIVE_NUMBERS_OK)
def show_binding(
    ctx: typer.Context,
    chat: Annotated[int, typer.Argument(help="the Telegram chat id")],
    thread: Annotated[int | None, typer.Option(help="a forum topic id")] = None,
) -> None:
    """One group's binding, its history, and what the binder's store says."""
    target = context.target(ctx)
    key = group_key(chat, thread)

    async def run() -> tuple[list[StoredMessage], Binding | None, str | None]:
        nc = await _connect_or_exit(target.nats_url)
        try:
            messages = await _binding_messages(nc.jetstream())
        finally:
            await nc.close()
        client, store = _mongo(target)
        try:
            return messages, await store.binding_for(key), None
        except Exception as error:
            return messages, None, f"{type(error).__name__}"
        finally:
            client.close()

    messages, stored, store_problem = context.run(run())
    out = context.console()
    current = fold_bindings(messages).get(key)
    out.print(f"in force: {_describe(current)}" if current else f"chat {key} is not bound")
    out.print("history:")
    for message in messages:
        event = message.event()
        if getattr(event, "chat_id", None) == chat and getattr(event, "thread_id", None) == thread:
            out.print(event_line(message, event))
    if store_problem:
        out.print(f"binder store: not reachable ({store_problem})")
    elif (stored.task_number if stored else None) != (current.bound.task_number if current else None):
        out.print(
            f"binder store: differs (task #{stored.task_number if stored else '-'}); "
            "`bridge binder rebuild` repairs it"
        )
    else:
        out.print("binder store: agrees")


@bindings_app.command("unbind", context_settings=NEGATIVE_NUMBERS_OK)
def unbind(
    ctx: typer.Context,
    chat: Annotated[int, typer.Argument(help="the Telegram chat id")],
    thread: Annotated[int | None, typer.Option(help="a forum topic id")] = None,
    reason: Annotated[str, typer.Option(help="why, kept in the event")] = "",
    yes: Annotated[bool, typer.Option("--yes", "-y", help="do not ask")] = False,
) -> None:
    """Remove a group's binding: messages stop flowing both ways until someone binds again."""
    target = context.target(ctx)
    key = group_key(chat, thread)

    async def find() -> CurrentBinding | None:
        nc = await _connect_or_exit(target.nats_url)
        try:
            return fold_bindings(await _binding_messages(nc.jetstream())).get(key)
        finally:
            await nc.close()

    current = context.run(find())
    out = context.console()
    if current is None:
        out.print(f"chat {key} is not bound; nothing to do")
        return
    out.print(f"unbinding {_describe(current)}")
    if not yes and not typer.confirm("Go ahead?"):
        raise typer.Exit(1)
    removed = context.run(_unbind(target, current, reason))
    out.print("done: TaskUnbound stored" + ("; binder store updated" if removed else ""))


async def _unbind(target: context.Target, current: CurrentBinding, reason: str) -> bool:
    bound = current.bound
    # One unbind per binding: running the command twice stores one event.
    key = f"unbind:{current.key}:{bound.event_id}"
    event = TaskUnbound(
        **envelope_after(bound, key),
        chat_id=bound.chat_id,
        task_number=bound.task_number,
        unbound_by=context.operator_name(),
        reason=reason,
        thread_id=bound.thread_id,
    )
    nc = await _connect_or_exit(target.nats_url)
    try:
        await ConnectionPublisher(nc, give_up_after_s=10.0).publish(
            event, subject=subjects.binding_unbound(bound.chat_id), msg_id=key
        )
    finally:
        await nc.close()
    client, store = _mongo(target)
    try:
        return await store.unbind(current.key, task_number=bound.task_number)
    finally:
        client.close()


# --- binder rebuild -----------------------------------------------------------------------------


class Difference(msgspec.Struct, frozen=True):
    group_key: str
    what: str  # "restored" | "changed" | "removed"
    detail: str


def differences(desired: dict[str, CurrentBinding], stored: list[Binding]) -> list[Difference]:
    found: list[Difference] = []
    by_key = {binding.group_key: binding for binding in stored}
    for key, binding in sorted(desired.items()):
        have = by_key.get(key)
        want = binding.bound
        if have is None:
            found.append(Difference(key, "restored", f"task #{want.task_number}"))
        elif (have.task_number, have.task_title, have.thread_id) != (
            want.task_number,
            want.task_title,
            want.thread_id,
        ):
            found.append(Difference(key, "changed", f"task #{have.task_number} -> #{want.task_number}"))
    for key, have in sorted(by_key.items()):
        if key not in desired:
            found.append(Difference(key, "removed", f"task #{have.task_number}: no binding event says so"))
    return found


@binder_app.command("rebuild")
def rebuild(
    ctx: typer.Context,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="report the differences; change nothing")
    ] = False,
) -> None:
    """Rewrite the binder's bindings collection from the binding events alone; report differences."""
    target = context.target(ctx)
    found, total, events = context.run(_rebuild(target, dry_run=dry_run))
    out = context.console()
    for difference in found:
        out.print(f"{difference.what:<9} {difference.group_key}: {difference.detail}")
    counts = {what: sum(1 for d in found if d.what == what) for what in ("restored", "changed", "removed")}
    verb = "would be" if dry_run else ""
    out.print(
        f"{total} binding(s) from {events} binding event(s); "
        + ", ".join(f"{count} {verb} {what}".replace("  ", " ") for what, count in counts.items())
        + f", {total - counts['restored'] - counts['changed']} unchanged"
    )


async def _rebuild(target: context.Target, *, dry_run: bool) -> tuple[list[Difference], int, int]:
    nc = await _connect_or_exit(target.nats_url)
    try:
        messages = await _binding_messages(nc.jetstream())
    finally:
        await nc.close()
    desired = fold_bindings(messages)
    client, store = _mongo(target)
    try:
        try:
            stored = await store.all_bindings()
        except Exception as error:
            raise context.fail(
                f"cannot read the binder's store ({type(error).__name__})",
                hint="check MONGODB_URL / MONGODB_DATABASE and that MongoDB runs",
            ) from None
        found = differences(desired, stored)
        if not dry_run:
            by_key = {binding.group_key: binding for binding in stored}
            for difference in found:
                if difference.what == "removed":
                    await store.unbind(
                        difference.group_key, task_number=by_key[difference.group_key].task_number
                    )
                else:
                    await store.bind(desired[difference.group_key].as_stored())
    finally:
        client.close()
    return found, len(desired), len(messages)
