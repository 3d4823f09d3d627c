"""``bridge erase --chat <id>``: forget a Telegram group (a person's request to be forgotten).

Removes what the bridge stored about the group: its events in the TELEGRAM, EFFECTS and BINDING
streams (every subject whose routing key is the chat id), the dead letters of those events, and
every MongoDB record with its ``chat_id`` (outbox, sent messages, comment plans and the keys that
lead to them, bind decisions, the group's title). A bound group is refused: unbind it first
(``bridge bindings unbind``), so no service acts on a binding whose history is gone. What the
group's messages became in Planfix (the task's comments) is Planfix's data and stays there, as
do the PLANFIX stream's fetched comments (keyed by task; they age out after 30 days).
"""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from bridge_cli import context
from bridge_cli.events import _connect_or_exit
from contracts.subjects import BINDING_STREAM, DEADLETTER_STREAM, EFFECTS_STREAM, TELEGRAM_STREAM

# Streams whose routing key (the last subject token) is a chat id for these subject prefixes.
CHAT_SUBJECTS = {
    TELEGRAM_STREAM.name: ("telegram.*.*.{chat}",),
    EFFECTS_STREAM.name: ("effect.telegram.*.{chat}",),
    BINDING_STREAM.name: ("binding.*.{chat}",),
}
LEADS_COLLECTION = "comment_ledger_leads"
LEDGER_COLLECTION = "comment_ledger"


def erase_command(
    ctx: typer.Context,
    chat: Annotated[int, typer.Option("--chat", help="the Telegram chat id of the group to forget")],
    yes: Annotated[bool, typer.Option("--yes", help="do it without asking")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="only count what would go")] = False,
) -> None:
    """Remove a group's stored messages and records (streams and MongoDB)."""
    target = context.target(ctx)
    out = context.console()
    if context.run(_is_bound(target, chat)):
        raise context.fail(
            f"group {chat} is bound to a task", hint=f"unbind it first: bridge bindings unbind {chat}"
        )
    if not dry_run and not yes:
        typer.confirm(f"Erase everything stored about group {chat}? This cannot be undone", abort=True)
    removed = context.run(_erase(target, chat, dry_run=dry_run))
    verb = "would remove" if dry_run else "removed"
    for place, count in removed.items():
        out.print(f"{verb} {count:>6}  {place}")
    out.print(f"group {chat}: {sum(removed.values())} item(s) {verb}")


async def _is_bound(target: context.Target, chat: int) -> bool:
    client = _mongo(target)
    try:
        found = await client[target.mongodb_database]["bindings"].find_one({"chat_id": chat}, {"_id": 1})
        return found is not None
    finally:
        client.close()


async def _erase(target: context.Target, chat: int, *, dry_run: bool) -> dict[str, int]:
    removed: dict[str, int] = {}
    nc = await _connect_or_exit(target.nats_url)
    try:
        js = nc.jetstream()
        for stream, patterns in CHAT_SUBJECTS.items():
            for pattern in patterns:
                subject = pattern.format(chat=chat)
                info = await js.stream_info(stream, subjects_filter=subject)
                count = sum((info.state.subjects or {}).values())
                if count and not dry_run:
                    await js.purge_stream(stream, subject=subject)
                removed[f"stream {stream} {subject}"] = count
        removed[
            f"stream {DEADLETTER_STREAM.name} (dead letters of the group's events)"
        ] = await _dead_letters(js, chat, dry_run=dry_run)
    finally:
        await nc.close()
    client = _mongo(target)
    try:
        database = client[target.mongodb_database]
        for name in sorted(await database.list_collection_names()):
            removed.update(await _erase_collection(database, name, chat, dry_run=dry_run))
    finally:
        client.close()
    return removed


async def _dead_letters(js: Any, chat: int, *, dry_run: bool) -> int:
    """Dead letters of events keyed by the chat (their original subject ends with its id)."""
    try:
        info = await js.stream_info(DEADLETTER_STREAM.name)
    except Exception:
        return 0
    suffix = f".{chat}"
    keyed_by_chat = tuple(prefix.split("*")[0] for patterns in CHAT_SUBJECTS.values() for prefix in patterns)
    found = 0
    for seq in range(info.state.first_seq, info.state.last_seq + 1):
        try:
            stored = await js.get_msg(DEADLETTER_STREAM.name, seq)
            subject = str(json.loads(stored.data or b"{}").get("original_subject", ""))
        except Exception:
            continue  # deleted already, or not a dead letter we can read
        if subject.endswith(suffix) and subject.startswith(keyed_by_chat):
            found += 1
            if not dry_run:
                await js.delete_msg(DEADLETTER_STREAM.name, seq)
    return found


async def _erase_collection(database: Any, name: str, chat: int, *, dry_run: bool) -> dict[str, int]:
    collection = database[name]
    if name == LEADS_COLLECTION:
        return {}  # with the ledger, below
    query: dict[str, Any] = {"chat_id": chat}
    if name == "group_titles":
        query = {"_id": chat}
    counts: dict[str, int] = {}
    if name == LEDGER_COLLECTION:
        runs = [document["_id"] async for document in collection.find(query, {"_id": 1})]
        leads = database[LEADS_COLLECTION]
        lead_query = {"run": {"$in": runs}}
        counts[f"mongodb {LEADS_COLLECTION}"] = await leads.count_documents(lead_query) if runs else 0
        if runs and not dry_run:
            await leads.delete_many(lead_query)
    count = await collection.count_documents(query)
    if count and not dry_run:
        await collection.delete_many(query)
    counts[f"mongodb {name}"] = count
    return {place: n for place, n in counts.items() if n}


def _mongo(target: context.Target) -> Any:
    from motor.motor_asyncio import AsyncIOMotorClient

    return AsyncIOMotorClient(target.mongodb_url, serverSelectionTimeoutMS=5000, tz_aware=True)
