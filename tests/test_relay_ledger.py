"""The comment ledger against the store: records of the relay from before it are adopted once,
so what a running install knew (which comment a message became, the relay's own comments, a plan
cut off mid-post and its uploads) is still known after the upgrade."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from motor.motor_asyncio import AsyncIOMotorClient, AsyncIOMotorDatabase

from services.relay.effects import OwnComments
from services.relay.to_planfix.ledger import CommentLedger, Upload
from services.relay.to_planfix.previous_layout import adopt_previous_layout
from tests.support import LoopThread

CHAT = -100321


def block(message_id: int) -> dict[str, Any]:
    return {
        "message_key": f"tg:msg:{CHAT}:{message_id}",
        "message_id": message_id,
        "head": "<p>h</p>",
        "body": "",
    }


@pytest.fixture
def database(loop: LoopThread, mongo_url: str) -> Iterator[AsyncIOMotorDatabase[Any]]:
    client: AsyncIOMotorClient[dict[str, Any]] = AsyncIOMotorClient(
        mongo_url, tz_aware=True, io_loop=loop.loop
    )
    name = f"test_ledger_{uuid.uuid4().hex[:8]}"
    try:
        yield client[name]
    finally:
        loop.run(client.drop_database(name))
        client.close()


def test_the_records_of_the_relay_before_the_ledger_are_adopted_once(
    loop: LoopThread, database: AsyncIOMotorDatabase[Any]
) -> None:
    posted, cut_off = f"tg:msg:{CHAT}:1", f"tg:msg:{CHAT}:3"

    async def before() -> None:
        await database["inbound_comments"].insert_many(
            [
                {
                    "_id": posted,
                    "task_number": 7,
                    "chat_id": CHAT,
                    "blocks": [block(1), block(2)],
                    "comment_id": 55,
                },
                {"_id": cut_off, "task_number": 7, "chat_id": CHAT, "blocks": [block(3)], "file_ids": [9]},
            ]
        )
        await database["message_comments"].insert_many(
            [{"_id": f"tg:msg:{CHAT}:1", "run": posted}, {"_id": f"tg:msg:{CHAT}:2", "run": posted}]
        )
        await database["own_comments"].insert_one({"_id": 55, "task_number": 7, "source_object_id": "x"})
        await database["effects"].insert_one(
            {"_id": f"planfix-file:{cut_off}:AgADx", "file_id": 9, "note": None}
        )

    async def after() -> dict[str, Any]:
        await adopt_previous_layout(database)
        await adopt_previous_layout(database)  # the next start finds nothing to adopt
        ledger = CommentLedger(database)
        return {
            "leads": await ledger.leads([f"tg:msg:{CHAT}:{n}" for n in (1, 2, 3)]),
            "posted": await ledger.load(posted),
            "cut_off": await ledger.load(cut_off),
            "own": await OwnComments(database).includes(55),
            "collections": set(await database.list_collection_names()),
        }

    loop.run(before())
    seen = loop.run(after())

    assert seen["leads"] == {f"tg:msg:{CHAT}:1": posted, f"tg:msg:{CHAT}:2": posted}
    assert seen["posted"].comment_id == 55
    assert seen["cut_off"].comment_id is None
    assert seen["cut_off"].keys == [cut_off]
    assert seen["cut_off"].uploads == {"AgADx": Upload(file_id=9)}
    assert seen["own"]
    assert not seen["collections"] & {"inbound_comments", "message_comments", "own_comments", "effects"}
