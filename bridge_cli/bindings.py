"""``bridge bindings list|show|unbind|audit`` and ``bridge binder rebuild``.

The bindings are what the BINDING stream adds up to, folded with ``contracts.bindings.evolve``
as the relay and the binder fold it. The binder is the only writer of bindings and of its
store: ``unbind`` and ``rebuild`` ask it (``UnbindGroup``, ``RebuildBindingStore``) and print
its answer.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Coroutine, Iterable
from typing import Annotated, Any, TypeVar

import msgspec
import nats.errors
import typer
from nats.js.api import DeliverPolicy

from bridge_cli import context
from bridge_cli.events import _connect_or_exit
from bridge_cli.render import event_line
from bridge_cli.streams import StoredMessage, read_stream
from bridge_lib.eventbus import ConnectionPublisher
from contracts import subjects
from contracts.bindings import Binding, Bindings, evolve, group_key
from contracts.events import (
    AuditBindings,
    BindingsAudited,
    BindingStoreDifference,
    BindingStoreRebuilt,
    Event,
    RebuildBindingStore,
    TaskBound,
    TaskUnbound,
    UnbindGroup,
    UnbindRejected,
    decode_event,
    operator_unbind_key,
    root_envelope,
)
from contracts.subjects import BINDING_STREAM

bindings_app = typer.Typer(help="The group-to-task bindings, as the BINDING stream records them.")
binder_app = typer.Typer(help="Repair the binder's own state.")


class CurrentBinding(msgspec.Struct, frozen=True, kw_only=True):
    """A binding in force, with who bound it and where the event that did is stored."""

    bound: Binding
    seq: int = 0
    by: str = ""

    @property
    def key(self) -> str:
        return self.bound.key


def fold_bindings(messages: Iterable[StoredMessage]) -> dict[str, CurrentBinding]:
    """Group key -> the binding in force after these BINDING events, in stream order."""
    bindings = Bindings()
    made_by: dict[str, tuple[int, str]] = {}  # TaskBound id -> (its sequence, who)
    for message in messages:
        event = message.event()
        if isinstance(event, TaskBound):
            made_by[event.event_id] = (message.seq, event.requested_by.display)
        if event is not None:
            bindings = evolve(bindings, event)
    current = {}
    for binding in bindings:
        seq, by = made_by.get(binding.bound_event_id, (0, ""))
        current[binding.key] = CurrentBinding(bound=binding, seq=seq, by=by)
    return current


async def _binding_messages(js: Any) -> list[StoredMessage]:
    return [message async for message in read_stream(js, BINDING_STREAM.name)]


def _describe(current: CurrentBinding) -> str:
    binding = current.bound
    topic = f" topic {binding.thread_id}" if binding.thread_id is not None else ""
    suspended = " [suspended: the bot is not in the group]" if binding.suspended else ""
    return (
        f"chat {binding.chat_id}{topic} -> task #{binding.task_number} «{binding.task_title}» "
        f"since {binding.bound_at:%Y-%m-%d %H:%M} UTC by {current.by or 'unknown'} "
        f"(BINDING/{current.seq}){suspended}"
    )


A = TypeVar("A")


async def _ask_binder(
    nats_url: str, subject: str, command: Event, answer_type: type[A], timeout_s: float
) -> A:
    """The binder's answer to an operator's request; raises when it does not answer."""
    nc = await _connect_or_exit(nats_url)
    try:
        reply = await nc.request(subject, msgspec.json.encode(command), timeout=timeout_s)
    finally:
        await nc.close()
    return msgspec.json.decode(reply.data, type=answer_type)


async def _ask_binder_to_rebuild(nats_url: str, *, dry_run: bool, timeout_s: float) -> BindingStoreRebuilt:
    operator = context.operator_name()
    command = RebuildBindingStore(
        **root_envelope(f"ops:rebuild:{uuid.uuid4()}", caused_by=operator), operator=operator, dry_run=dry_run
    )
    return await _ask_binder(nats_url, subjects.BINDER_REBUILD_STORE, command, BindingStoreRebuilt, timeout_s)


async def _ask_binder_to_audit(nats_url: str, *, max_planfix_reads: int, timeout_s: float) -> BindingsAudited:
    operator = context.operator_name()
    command = AuditBindings(
        **root_envelope(f"ops:audit:{uuid.uuid4()}", caused_by=operator),
        operator=operator,
        max_planfix_reads=max_planfix_reads,
    )
    return await _ask_binder(nats_url, subjects.BINDER_AUDIT_BINDINGS, command, BindingsAudited, timeout_s)


def _binder_answer(asking: Coroutine[Any, Any, A], *, hint: str) -> A:
    """The binder's answer; when it gives none, the command fails saying so, and ``hint``."""
    try:
        return context.run(asking)
    except (nats.errors.Error, TimeoutError) as error:
        raise context.fail(f"the binder did not answer ({type(error).__name__})", hint=hint) from None


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
    """One group's binding, its history, and whether the binder's store agrees."""
    target = context.target(ctx)
    key = group_key(chat, thread)

    async def run() -> tuple[list[StoredMessage], list[BindingStoreDifference] | None, str | None]:
        nc = await _connect_or_exit(target.nats_url)
        try:
            messages = await _binding_messages(nc.jetstream())
        finally:
            await nc.close()
        try:
            compared = await _ask_binder_to_rebuild(target.nats_url, dry_run=True, timeout_s=15.0)
        except (nats.errors.Error, TimeoutError) as error:
            return messages, None, type(error).__name__
        return messages, [d for d in compared.differences if d.group_key == key], None

    messages, differing, problem = context.run(run())
    out = context.console()
    current = fold_bindings(messages).get(key)
    out.print(f"in force: {_describe(current)}" if current else f"chat {key} is not bound")
    out.print("history:")
    for message in messages:
        event = message.event()
        if getattr(event, "chat_id", None) == chat and getattr(event, "thread_id", None) == thread:
            out.print(event_line(message, event))
    if differing is None:
        out.print(f"binder store: the binder did not answer ({problem})")
    elif differing:
        difference = differing[0]
        out.print(
            f"binder store: differs ({difference.what}: {difference.detail}); "
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
    wait: Annotated[float, typer.Option(help="seconds to wait for the binder's answer")] = 30.0,
) -> None:
    """Ask the binder to remove a group's binding: messages stop flowing both ways until someone
    binds again. The binder refuses if the group was bound to another task in the meantime."""
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
    operator = context.operator_name()
    # One command per binding: running this twice sends one.
    source_key = operator_unbind_key(chat, thread, current.bound.bound_event_id)
    command = UnbindGroup(
        **root_envelope(source_key, caused_by=operator),
        chat_id=chat,
        thread_id=thread,
        task_number=current.bound.task_number,
        operator=operator,
        reason=reason,
    )
    answer = context.run(_unbind(target.nats_url, command, msg_id=source_key, wait_s=wait))
    match answer:
        case TaskUnbound():
            out.print("done: TaskUnbound stored; binder store updated")
        case UnbindRejected(detail=detail):
            out.print(f"the binder refused: {detail}")
            raise typer.Exit(1)
        case None:
            raise context.fail(
                f"the binder did not answer within {wait:g} s; it decides the stored request when it runs",
                hint="check that the binder runs (`bridge doctor`), then `bridge bindings show`",
            )


async def _unbind(
    nats_url: str, command: UnbindGroup, *, msg_id: str, wait_s: float
) -> TaskUnbound | UnbindRejected | None:
    """Send the command; the binder's answer (found by its cause), or None after ``wait_s``."""
    nc = await _connect_or_exit(nats_url)
    try:
        js = nc.jetstream()
        await ConnectionPublisher(nc, give_up_after_s=10.0).publish(
            command,
            subject=subjects.telegram_bind_requested(command.chat_id),
            msg_id=msg_id,
        )
        answered: asyncio.Future[TaskUnbound | UnbindRejected] = asyncio.get_running_loop().create_future()

        async def on_message(msg: Any) -> None:
            try:
                event = decode_event(msg.data)
            except (msgspec.DecodeError, msgspec.ValidationError):
                return
            if not isinstance(event, TaskUnbound | UnbindRejected) or answered.done():
                return
            if event.causation_id == command.event_id:
                answered.set_result(event)

        # The chat's binding events from the first: a command sent before was answered before.
        subscription = await js.subscribe(
            f"binding.*.{command.chat_id}",
            ordered_consumer=True,
            deliver_policy=DeliverPolicy.ALL,
            cb=on_message,
        )
        try:
            return await asyncio.wait_for(answered, wait_s)
        except TimeoutError:
            return None
        finally:
            await subscription.unsubscribe()
    finally:
        await nc.close()


# --- binder rebuild -----------------------------------------------------------------------------


@bindings_app.command("audit")
def audit(
    ctx: typer.Context,
    max_planfix_reads: Annotated[
        int, typer.Option(help="task reads the binder may spend (paced, ~1 a second); the rest: unchecked")
    ] = 200,
    wait: Annotated[float, typer.Option(help="seconds to wait for the binder's answer")] = 600.0,
) -> None:
    """The bindings the binder would refuse today under its bind policy (who bound them is not
    linked, not an employee, not on the task; the chat is not allowed; too many groups on a task).
    Exits 1 when there is any: they keep working until an operator unbinds them."""
    target = context.target(ctx)
    answer = _binder_answer(
        _ask_binder_to_audit(target.nats_url, max_planfix_reads=max_planfix_reads, timeout_s=wait),
        hint="the binder audits with its own policy and Planfix budget: start it and run this again",
    )
    out = context.console()
    for finding in answer.findings:
        by = finding.bound_by_user_id if finding.bound_by_user_id is not None else "unknown"
        out.print(f"{finding.refusal:<26} {finding.group_key} -> task #{finding.task_number} (bound by {by})")
    out.print(
        f"{len(answer.findings)} of {answer.bindings} binding(s) would be refused today under the "
        f"'{answer.policy}' policy ({answer.planfix_reads} Planfix task read(s)); "
        "`bridge bindings unbind <chat>` removes one"
    )
    if answer.findings:
        raise typer.Exit(1)


@binder_app.command("rebuild")
def rebuild(
    ctx: typer.Context,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="report the differences; change nothing")
    ] = False,
    wait: Annotated[float, typer.Option(help="seconds to wait for the binder's answer")] = 120.0,
) -> None:
    """Ask the binder to rewrite its bindings from the binding events alone; report differences."""
    target = context.target(ctx)
    answer = _binder_answer(
        _ask_binder_to_rebuild(target.nats_url, dry_run=dry_run, timeout_s=wait),
        hint="the binder rebuilds its own store: start it (python -m services.binder) and run this again",
    )
    out = context.console()
    found = answer.differences
    for difference in found:
        out.print(f"{difference.what:<9} {difference.group_key}: {difference.detail}")
    counts = {what: sum(1 for d in found if d.what == what) for what in ("restored", "changed", "removed")}
    verb = "would be" if dry_run else ""
    out.print(
        f"{answer.bindings} binding(s) from {answer.events} binding event(s); "
        + ", ".join(f"{count} {verb} {what}".replace("  ", " ") for what, count in counts.items())
        + f", {answer.bindings - counts['restored'] - counts['changed']} unchanged"
    )
