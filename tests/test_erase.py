"""``bridge erase --chat <id>``: a group forgotten (a person's request to be forgotten): its
events gone from the streams, its records from MongoDB; a bound group is refused."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

from motor.motor_asyncio import AsyncIOMotorClient

from sandbox.fake_planfix import FakePlanfix
from sandbox.fake_telegram import FakeTelegram
from tests.e2e_bridge import Bridge, bind_new_task, bridge_fixture, texts_sent
from tests.support import REPO_ROOT, eventually, relayed_comments

bridge = bridge_fixture("erase")


def bridge_cli(bridge: Bridge, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "NATS_URL": bridge.nats_url,
        "MONGODB_URL": bridge.mongo_url,
        "MONGODB_DATABASE": bridge.database,
        "COLUMNS": "250",
    }
    return subprocess.run(
        [sys.executable, "-m", "bridge_cli", *args],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def documents_about(bridge: Bridge, chat_id: int) -> dict[str, int]:
    async def count() -> dict[str, int]:
        client: AsyncIOMotorClient[dict[str, Any]] = AsyncIOMotorClient(bridge.mongo_url)
        try:
            database = client[bridge.database]
            found = {}
            for name in await database.list_collection_names():
                query: dict[str, Any] = {"_id": chat_id} if name == "group_titles" else {"chat_id": chat_id}
                found[name] = await database[name].count_documents(query)
            return {name: n for name, n in found.items() if n}
        finally:
            client.close()

    return bridge.loop.run(count())


def test_erase_removes_a_groups_events_and_records_and_refuses_a_bound_group(
    bridge: Bridge, fake_telegram: FakeTelegram, fake_planfix: FakePlanfix, unique_chat_id: int
) -> None:
    number = bind_new_task(bridge, fake_telegram, unique_chat_id, "Forget me", fake_planfix)
    fake_telegram.add_group_message(unique_chat_id, "a message to be forgotten")
    eventually(lambda: relayed_comments(fake_planfix, number), what="message carried")
    fake_planfix.add_employee_comment(number, "<p>an answer to be forgotten</p>")
    eventually(
        lambda: any("to be forgotten" in text for text in texts_sent(fake_telegram, unique_chat_id)),
        what="answer carried",
    )
    other_chat = unique_chat_id - 1
    fake_telegram.add_group_message(other_chat, "another group's message stays")
    eventually(lambda: [e for e in bridge.events(f"telegram.*.*.{other_chat}")], what="other group stored")

    refused = bridge_cli(bridge, "erase", "--chat", str(unique_chat_id), "--yes")
    assert refused.returncode == 1
    assert "unbind it first" in refused.stderr

    unbound = bridge_cli(bridge, "bindings", "unbind", str(unique_chat_id), "--yes", "--reason", "erase test")
    assert unbound.returncode == 0, unbound.stderr
    eventually(lambda: bridge.binding_document(unique_chat_id) is None, what="binder store updated")
    assert documents_about(bridge, unique_chat_id)  # there is something to erase

    counted = bridge_cli(bridge, "erase", "--chat", str(unique_chat_id), "--dry-run")
    assert counted.returncode == 0, counted.stderr
    assert "would remove" in counted.stdout
    assert bridge.events(f"telegram.*.*.{unique_chat_id}")  # a dry run changes nothing

    erased = bridge_cli(bridge, "erase", "--chat", str(unique_chat_id), "--yes")

    assert erased.returncode == 0, erased.stderr
    assert f"group {unique_chat_id}:" in erased.stdout
    for subjects in ("telegram.*.*", "effect.telegram.*", "binding.*"):
        assert bridge.events(f"{subjects}.{unique_chat_id}") == [], subjects
    assert documents_about(bridge, unique_chat_id) == {}
    assert bridge.events(f"telegram.*.*.{other_chat}"), "another group's events stay"
