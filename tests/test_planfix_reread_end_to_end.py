"""Edits and deletions made in Planfix with no scenario telling the bridge, comments whose
webhook never came, and a task change with its scenario off, end to end.

Planfix's help shows no scenario event for "comment changed" or "comment deleted", so the
fake Planfix here changes comments without any webhook (``fire_webhook=False``) and the
planfix_gateway's paced re-read must notice it: the four services as processes, real NATS and
store, the re-read every 3 seconds instead of 10 minutes (reconciliation's grace 1 s).
"""

from __future__ import annotations

from contracts.events import PlanfixCommentAdded, PlanfixCommentDeleted, PlanfixCommentUpdated, TaskStateSeen
from contracts.subjects import PLANFIX_COMMENT_MARKS_BUCKET
from sandbox.fake_planfix import FakePlanfix
from sandbox.fake_planfix_tasks import STATUS_IN_PROGRESS
from sandbox.fake_telegram import FakeTelegram, RecordedCall
from tests.e2e_bridge import Bridge, bind_new_task, bridge_fixture
from tests.support import eventually, jetstream, stays
from tests.test_task_life_end_to_end import bound_with_its_card, card_of, state_events

REREAD_INTERVAL_S = 3.0


# A task read at every pass: its daily cap raised to what passes every 3 seconds need.
bridge = bridge_fixture(
    "reread",
    extra_env={
        "PLANFIX_REREAD_INTERVAL_MIN": str(REREAD_INTERVAL_S / 60),
        "PLANFIX_REREAD_MAX_PER_DAY": "100000",
        "PLANFIX_RECONCILE_QUIET_INTERVAL_MIN": str(REREAD_INTERVAL_S / 60),
        "PLANFIX_RECONCILE_GRACE_S": "1",
        "RELAY_TASK_CARDS": "true",
    },
)


def shown(fake_telegram: FakeTelegram, chat_id: int) -> list[str]:
    return [message["text"] for message in fake_telegram.chat_messages(chat_id)]


def calls_to(fake_telegram: FakeTelegram, method: str, chat_id: int) -> list[RecordedCall]:
    return [c for c in fake_telegram.calls if c.method == method and c.params.get("chat_id") == chat_id]


def edits_of(fake_telegram: FakeTelegram, chat_id: int, message_id: object) -> list[RecordedCall]:
    return [
        c
        for c in calls_to(fake_telegram, "editMessageText", chat_id)
        if c.params.get("message_id") == message_id
    ]


def changes_of(bridge: Bridge, comment_id: int) -> list[object]:
    return [
        event
        for event in bridge.events("planfix.comment.>")
        if isinstance(event, PlanfixCommentUpdated | PlanfixCommentDeleted) and event.comment_id == comment_id
    ]


def test_a_comment_edited_then_deleted_without_a_scenario_is_edited_then_deleted_in_the_group(
    bridge: Bridge, fake_telegram: FakeTelegram, fake_planfix: FakePlanfix, unique_chat_id: int
) -> None:
    number = bind_new_task(bridge, fake_telegram, unique_chat_id, "Silent edits")
    fake_planfix.add_employee_comment(number, "<p>this one stays</p>")
    # Shown before the next one is written: two comments in one message are edited differently.
    eventually(lambda: any("this one stays" in t for t in shown(fake_telegram, unique_chat_id)))
    changing = fake_planfix.add_employee_comment(number, "<p>first version</p>")
    original = eventually(
        lambda: [m for m in fake_telegram.chat_messages(unique_chat_id) if "first version" in m["text"]],
        what="the comment in the group",
    )[0]

    fake_planfix.edit_comment(changing, "<p>second <b>version</b></p>", fire_webhook=False)

    [edited] = eventually(
        lambda: [m for m in fake_telegram.chat_messages(unique_chat_id) if "second version" in m["text"]],
        timeout_s=30,
        what="the edit noticed by the re-read",
    )
    assert edited["message_id"] == original["message_id"]
    assert edited["edited"] is True
    # Two more passes read the task again: nothing more is published, nothing more is edited.
    stays(
        lambda: (
            len(changes_of(bridge, changing)) == 1
            and len(edits_of(fake_telegram, unique_chat_id, original["message_id"])) == 1
        ),
        for_s=2.5 * REREAD_INTERVAL_S,
        what="one edit, however many passes",
    )

    fake_planfix.delete_comment(changing, fire_webhook=False)

    eventually(
        lambda: not [t for t in shown(fake_telegram, unique_chat_id) if "version" in t],
        timeout_s=30,
        what="the deletion noticed by the re-read",
    )
    assert any("this one stays" in t for t in shown(fake_telegram, unique_chat_id))
    stays(
        lambda: len(calls_to(fake_telegram, "deleteMessage", unique_chat_id)) == 1,
        for_s=2 * REREAD_INTERVAL_S,
        what="deleted once",
    )
    assert [type(e).__name__ for e in changes_of(bridge, changing)] == [
        "PlanfixCommentUpdated",
        "PlanfixCommentDeleted",
    ]
    assert "reread_pass_done" in bridge.processes["planfix_gateway"].log_text()


def mark_of(bridge: Bridge, task_number: int) -> int | None:
    async def read() -> int | None:
        async with jetstream(bridge.nats_url) as js:
            try:
                kv = await js.key_value(PLANFIX_COMMENT_MARKS_BUCKET.name)
                entry = await kv.get(f"task_{task_number}")
                return int(entry.value or b"0")
            except Exception:
                return None

    return bridge.loop.run(read())


def test_a_comment_whose_webhook_never_came_is_found_and_shown_once(
    bridge: Bridge, fake_telegram: FakeTelegram, fake_planfix: FakePlanfix, unique_chat_id: int
) -> None:
    number = bind_new_task(bridge, fake_telegram, unique_chat_id, "Lost webhooks")
    # The task's first reading sets where reconciliation starts; what comes after is checked.
    eventually(lambda: mark_of(bridge, number) is not None, timeout_s=30, what="the task's mark")

    lost = fake_planfix.add_employee_comment(number, "<p>never announced</p>", fire_webhook=False)
    after = fake_planfix.add_employee_comment(number, "<p>announced after it</p>", fire_webhook=False)

    eventually(
        lambda: [t for t in shown(fake_telegram, unique_chat_id) if "announced after it" in t],
        timeout_s=40,
        what="both comments found by reconciliation",
    )
    texts = "\n".join(shown(fake_telegram, unique_chat_id))
    assert texts.index("never announced") < texts.index("announced after it")
    # The webhooks come after all (Planfix retrying late): nothing more is stored or shown.
    fake_planfix.post_webhook(number, lost)
    fake_planfix.post_webhook(number, after)
    stays(
        lambda: (
            texts.count("never announced")
            == "\n".join(shown(fake_telegram, unique_chat_id)).count("never announced")
        ),
        for_s=2 * REREAD_INTERVAL_S,
        what="shown once",
    )
    added_events = [
        e
        for e in bridge.events(f"planfix.comment.added.{number}")
        if isinstance(e, PlanfixCommentAdded) and e.comment_id in (lost, after)
    ]
    assert [e.comment_id for e in added_events] == [lost, after]
    log = bridge.processes["planfix_gateway"].log_text()
    assert log.count("comment_found_by_reconciliation") == 2


def test_a_status_change_no_scenario_announced_reaches_the_card_and_is_told_in_a_line(
    bridge: Bridge, fake_telegram: FakeTelegram, fake_planfix: FakePlanfix, unique_chat_id: int
) -> None:
    chat = unique_chat_id
    number = bound_with_its_card(bridge, fake_telegram, fake_planfix, chat, "Silent status")
    card = card_of(fake_telegram, chat)
    assert "New" in card["text"]

    fake_planfix.set_task_status(number, STATUS_IN_PROGRESS, fire_webhook=False)  # the task scenario is off

    eventually(
        lambda: "In progress" in card_of(fake_telegram, chat)["text"],
        timeout_s=30,
        what="the card edited after the pass read the task",
    )
    assert card_of(fake_telegram, chat)["message_id"] == card["message_id"]
    eventually(
        lambda: any("Status: New → In progress" in text for text in shown(fake_telegram, chat)),
        what="the change told in a line",
    )
    found = [e for e in state_events(bridge, number) if e.seen_on is TaskStateSeen.RECONCILE]
    assert [(e.previous.status_name if e.previous else None, e.state.status_name) for e in found] == [
        ("New", "In progress")
    ]
    # Later passes read the task again and find nothing new.
    stays(lambda: len(state_events(bridge, number)) == 2, for_s=2.5 * REREAD_INTERVAL_S, what="stored once")
    assert "task_change_found_by_reconciliation" in bridge.processes["planfix_gateway"].log_text()
