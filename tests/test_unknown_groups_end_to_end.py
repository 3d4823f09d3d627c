"""TELEGRAM_LEAVE_UNKNOWN_GROUPS through the real services: the bot leaves a group a stranger
adds it to, saying why and how to link; it stays where a linked employee adds it."""

from __future__ import annotations

from sandbox.fake_planfix import FakePlanfix
from sandbox.fake_telegram import FakeTelegram
from tests.e2e_bridge import Bridge, bridge_fixture, texts_sent
from tests.support import eventually, stays

PERSON = 7_717_001


# --- TELEGRAM_LEAVE_UNKNOWN_GROUPS ----------------------------------------------------------------


guarded_bridge = bridge_fixture(
    "guarded", extra_env={"TELEGRAM_LEAVE_UNKNOWN_GROUPS": "true"}, fixture_name="guarded_bridge"
)


def test_the_bot_leaves_a_group_a_stranger_adds_it_to_and_says_why(
    guarded_bridge: Bridge, fake_telegram: FakeTelegram, unique_chat_id: int
) -> None:
    fake_telegram.set_bot_membership(unique_chat_id, "member", old_status="left", by_user_id=PERSON)

    eventually(lambda: unique_chat_id in fake_telegram.left_chats, what="left")
    [said] = texts_sent(fake_telegram, unique_chat_id)
    assert "not linked to a Planfix employee" in said
    assert "/link" in said
    stays(lambda: len(texts_sent(fake_telegram, unique_chat_id)) == 1, for_s=2.0, what="no greeting")


def test_the_bot_stays_in_a_group_a_linked_employee_adds_it_to(
    guarded_bridge: Bridge, fake_telegram: FakeTelegram, fake_planfix: FakePlanfix, unique_chat_id: int
) -> None:
    fake_planfix.add_employee("Pavel Present", telegram_id=PERSON + 1)

    fake_telegram.set_bot_membership(unique_chat_id, "member", old_status="left", by_user_id=PERSON + 1)

    [greeting] = eventually(lambda: texts_sent(fake_telegram, unique_chat_id), what="greeting")
    assert "/task" in greeting
    assert unique_chat_id not in fake_telegram.left_chats
