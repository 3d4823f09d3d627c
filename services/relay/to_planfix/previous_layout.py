"""The relay's records from before the comment ledger, copied into it once at start and dropped.

Before, one comment's facts were spread over ``inbound_comments`` (the plan), ``message_comments``
(message and album keys -> the plan), ``own_comments`` (comment ids the relay posted) and
``effects`` (``planfix-file:<run>:<file>`` upload records). Copying them keeps what a running
install knows: edits of messages carried before still reach their comments, and a plan cut off
mid-post is still resumed. Delete this module once no install has those collections.
"""

from __future__ import annotations

import contextlib
from typing import Any

import structlog
from motor.motor_asyncio import AsyncIOMotorDatabase
from pymongo.errors import DuplicateKeyError

from contracts.events import planfix_comment_key
from services.relay.effects import COMMENT_LEADS
from services.relay.to_planfix.plan import album_key

log = structlog.get_logger("relay.to_planfix")

_PREVIOUS = ("inbound_comments", "message_comments", "own_comments", "effects")
_UPLOADS = "planfix-file:"


async def adopt_previous_layout(database: AsyncIOMotorDatabase[Any]) -> None:
    if "inbound_comments" not in set(await database.list_collection_names()):
        return
    leads_by_run: dict[str, list[str]] = {}
    async for link in database["message_comments"].find({}):
        leads_by_run.setdefault(str(link["run"]), []).append(str(link["_id"]))
    uploads_by_run: dict[str, dict[str, dict[str, Any]]] = {}
    # ``_UPLOADS`` + ";" is the first key after every ``planfix-file:...`` one.
    async for record in database["effects"].find({"_id": {"$gte": _UPLOADS, "$lt": "planfix-file;"}}):
        run_key, _, file_unique_id = str(record["_id"])[len(_UPLOADS) :].rpartition(":")
        uploads_by_run.setdefault(run_key, {})[file_unique_id] = {
            "file_id": record.get("file_id"),
            "note": record.get("note"),
        }
    entries, leads = database["comment_ledger"], database[COMMENT_LEADS]
    copied = 0
    async for plan in database["inbound_comments"].find({}):
        run_key = str(plan["_id"])
        linked = leads_by_run.get(run_key, [])
        album = [album_key(plan["chat_id"], plan["media_group_id"])] if plan.get("media_group_id") else []
        planned = [str(block["message_key"]) for block in plan.get("blocks", [])]
        entry = {**plan, "uploads": uploads_by_run.get(run_key, {})}
        entry["keys"] = list(dict.fromkeys([*planned, *album, *linked]))
        with contextlib.suppress(DuplicateKeyError):  # copied by a start cut off before the drop
            await entries.insert_one(entry)
        posted = [planfix_comment_key(plan["comment_id"])] if plan.get("comment_id") is not None else []
        for key in [*linked, *posted]:
            with contextlib.suppress(DuplicateKeyError):
                await leads.insert_one({"_id": key, "run": run_key})
        copied += 1
    for name in _PREVIOUS:
        await database.drop_collection(name)
    log.info("previous_records_adopted_into_the_comment_ledger", comments=copied)
