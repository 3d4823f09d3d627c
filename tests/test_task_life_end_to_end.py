"""The task's life in its group through the real services (issue 18): the task card posted,
pinned and kept current, one line per change (a repeated notice adds nothing), and the task
commands /done, /deadline and /assign, refused with the reason when they may not be done."""

from __future__ import annotations

from typing import Any

from contracts.events import PlanfixTaskStateChanged, TaskCommandAnswered
from sandbox.fake_planfix import FakePlanfix
from sandbox.fake_planfix_tasks import STATUS_COMPLETED, STATUS_IN_PROGRESS
from sandbox.fake_telegram import FakeTelegram
from tests.e2e_bridge import ADMIN_ID, Bridge, bind_new_task, bridge_fixture, texts_sent
from tests.support import eventually, stays

bridge = bridge_fixture("task-life", extra_env={"RELAY_TASK_CARDS": "true"})


def card_of(fake_telegram: FakeTelegram, chat_id: int) -> dict[str, Any]:
    """The group's task card as the chat shows it now (edits applied)."""
    cards = [m for m in fake_telegram.chat_messages(chat_id) if "Assigner:" in str(m["text"])]
    assert len(cards) == 1, [m["text"] for m in cards]
    return cards[0]


def shown(fake_telegram: FakeTelegram, chat_id: int) -> list[str]:
    """The chat's messages from the bot as people read them (no markup, edits applied)."""
    return [str(m["text"]) for m in fake_telegram.chat_messages(chat_id)]


def has_card(fake_telegram: FakeTelegram, chat_id: int) -> bool:
    return any("Assigner:" in str(m["text"]) for m in fake_telegram.chat_messages(chat_id))


def bound_with_its_card(
    bridge: Bridge, fake_telegram: FakeTelegram, fake_planfix: FakePlanfix, chat_id: int, title: str
) -> int:
    """The group bound to a new task titled ``title`` and the task's card posted; its number."""
    number = bind_new_task(bridge, fake_telegram, chat_id, title, fake_planfix)
    eventually(lambda: has_card(fake_telegram, chat_id), what="card posted")
    return number


def task_reads(fake_planfix: FakePlanfix, task: int) -> int:
    return sum(1 for c in fake_planfix.calls if c.method == "GET" and c.path == f"/rest/task/{task}")


def state_events(bridge: Bridge, task: int) -> list[PlanfixTaskStateChanged]:
    return [
        e for e in bridge.events(f"planfix.task.changed.{task}") if isinstance(e, PlanfixTaskStateChanged)
    ]


def answers(bridge: Bridge, chat_id: int) -> list[TaskCommandAnswered]:
    return [
        e for e in bridge.events("binding.>") if isinstance(e, TaskCommandAnswered) and e.chat_id == chat_id
    ]


def test_bind_posts_and_pins_the_card_and_a_change_is_one_line_and_an_edit(
    bridge: Bridge, fake_telegram: FakeTelegram, fake_planfix: FakePlanfix, unique_chat_id: int
) -> None:
    chat = unique_chat_id
    fake_telegram.set_bot_admin(chat)
    task = bind_new_task(bridge, fake_telegram, chat, "Fix the boiler", fake_planfix)

    eventually(lambda: has_card(fake_telegram, chat), what="card posted")
    card = card_of(fake_telegram, chat)
    assert "Fix the boiler" in card["text"]
    assert "New" in card["text"]
    eventually(lambda: fake_telegram.pinned_messages(chat) == [card["message_id"]], what="card pinned")

    sent_before, reads_before = len(texts_sent(fake_telegram, chat)), task_reads(fake_planfix, task)
    fake_planfix.set_task_status(task, STATUS_IN_PROGRESS)

    eventually(
        lambda: any("Status: New → In progress" in t for t in shown(fake_telegram, chat)), what="one line"
    )
    eventually(lambda: "In progress" in card_of(fake_telegram, chat)["text"], what="card edited")
    assert card_of(fake_telegram, chat)["message_id"] == card["message_id"]
    assert card_of(fake_telegram, chat)["edited"]
    # One new message (the line); the card was edited, not posted again. One GET for the change.
    assert len(texts_sent(fake_telegram, chat)) == sent_before + 1
    assert task_reads(fake_planfix, task) - reads_before == 1
    changes = len(state_events(bridge, task))

    # The same notice again: nothing new in the group, nothing new stored.
    fake_planfix.post_task_webhook(task)
    eventually(
        lambda: bridge.processes["planfix_gateway"].log_text().count("task_state_unchanged") >= 1,
        what="repeated notice read",
    )
    stays(lambda: len(texts_sent(fake_telegram, chat)) == sent_before + 1, for_s=2.0, what="nothing new sent")
    assert len(state_events(bridge, task)) == changes


def test_without_the_right_to_pin_the_card_is_posted_and_the_right_asked_for(
    bridge: Bridge, fake_telegram: FakeTelegram, fake_planfix: FakePlanfix, unique_chat_id: int
) -> None:
    chat = unique_chat_id
    bind_new_task(bridge, fake_telegram, chat, "No pin here", fake_planfix)

    eventually(lambda: has_card(fake_telegram, chat), what="card posted")
    eventually(
        lambda: any("pin the task card" in t for t in texts_sent(fake_telegram, chat)), what="right asked for"
    )
    assert fake_telegram.pinned_messages(chat) == []


def command(fake_telegram: FakeTelegram, chat: int, text: str, **sender: Any) -> None:
    fake_telegram.add_group_message(chat, text, **sender)


def test_done_sets_the_completed_status_and_tells_the_group(
    bridge: Bridge, fake_telegram: FakeTelegram, fake_planfix: FakePlanfix, unique_chat_id: int
) -> None:
    chat = unique_chat_id
    task = bound_with_its_card(bridge, fake_telegram, fake_planfix, chat, "Close me")

    calls_before = len(fake_planfix.calls)
    command(fake_telegram, chat, "/done")

    eventually(lambda: [a for a in answers(bridge, chat) if a.done], what="done answered")
    stored = fake_planfix.task(task)
    assert stored is not None
    assert stored.status_id == STATUS_COMPLETED
    eventually(
        lambda: any("marked the task completed" in t for t in texts_sent(fake_telegram, chat)),
        what="group told",
    )
    eventually(lambda: "Completed" in card_of(fake_telegram, chat)["text"], what="card says closed")
    # The cost: the binder reads the task and its process's statuses and changes it; the change
    # comes back through the scenario as one read by the gateway.
    made = [
        (c.method, c.operation_id)
        for c in fake_planfix.calls[calls_before:]
        if c.path in (f"/rest/task/{task}", "/rest/process/task/1/statuses")
    ]
    assert sorted(made) == sorted(
        [
            ("GET", "get-task-by-id"),
            ("GET", "get-task-status-list"),
            ("POST", "post-task-by-id"),
            ("GET", "get-task-by-id"),
        ]
    ), made


def test_deadline_in_russian_and_english_forms_is_the_same_date(
    bridge: Bridge, fake_telegram: FakeTelegram, fake_planfix: FakePlanfix, unique_chat_id: int
) -> None:
    chat = unique_chat_id
    task = bind_new_task(bridge, fake_telegram, chat, "Due soon", fake_planfix)

    command(fake_telegram, chat, "/deadline 15.12")
    eventually(lambda: [a for a in answers(bridge, chat) if a.done], what="first deadline")
    first = fake_planfix.task(task)
    assert first is not None
    assert first.deadline is not None
    fake_planfix.set_task_deadline(task, None, fire_webhook=False)

    command(fake_telegram, chat, "/deadline Dec 15")
    eventually(lambda: len([a for a in answers(bridge, chat) if a.done]) == 2, what="second deadline")
    second = fake_planfix.task(task)
    assert second is not None
    assert second.deadline == first.deadline
    assert first.deadline.startswith("15-12-")


def test_a_refused_command_says_why(
    bridge: Bridge, fake_telegram: FakeTelegram, fake_planfix: FakePlanfix, unique_chat_id: int
) -> None:
    chat = unique_chat_id
    task = bind_new_task(bridge, fake_telegram, chat, "Not yours", fake_planfix)

    # Someone whose Telegram is linked to nobody in Planfix.
    command(fake_telegram, chat, "/done", user_id=ADMIN_ID + 7_000_000, first_name="Stranger", username=None)
    [refused] = eventually(lambda: answers(bridge, chat), what="refused")
    assert not refused.done
    assert refused.outcome == "not_linked"
    eventually(
        lambda: any("/done not done" in t and "not linked" in t for t in texts_sent(fake_telegram, chat)),
        what="reason told",
    )
    stored = fake_planfix.task(task)
    assert stored is not None
    assert stored.status_id != STATUS_COMPLETED

    command(fake_telegram, chat, "/deadline someday")
    eventually(lambda: any(a.outcome == "bad_date" for a in answers(bridge, chat)), what="bad date refused")


def test_assign_makes_a_linked_employee_an_assignee_and_the_card_says_so(
    bridge: Bridge, fake_telegram: FakeTelegram, fake_planfix: FakePlanfix, unique_chat_id: int
) -> None:
    chat = unique_chat_id
    maria_tg = 7_718_001
    maria = fake_planfix.add_employee("Maria Lebedeva", telegram_id=maria_tg)
    task = bound_with_its_card(bridge, fake_telegram, fake_planfix, chat, "Needs hands")
    # Maria writes a task command once: the binder learns who she is from her Planfix profile.
    command(
        fake_telegram, chat, "/deadline someday", user_id=maria_tg, first_name="Maria", username="maria_l"
    )
    eventually(lambda: answers(bridge, chat), what="maria known")

    command(fake_telegram, chat, "/assign @maria_l")

    eventually(
        lambda: [a for a in answers(bridge, chat) if a.done and a.outcome == "assigned"], what="assigned"
    )
    stored = fake_planfix.task(task)
    assert stored is not None
    assert maria in stored.assignees
    eventually(
        lambda: any("Assignees added: Maria Lebedeva" in t for t in shown(fake_telegram, chat)),
        what="change line",
    )
    eventually(lambda: "Maria Lebedeva" in card_of(fake_telegram, chat)["text"], what="card lists her")

    command(fake_telegram, chat, "/assign @nobody_here")
    eventually(
        lambda: any(a.outcome == "unknown_person" for a in answers(bridge, chat)), what="unknown refused"
    )


def test_a_file_added_to_the_task_in_planfix_is_named_in_the_group_with_a_link(
    bridge: Bridge, fake_telegram: FakeTelegram, fake_planfix: FakePlanfix, unique_chat_id: int
) -> None:
    chat = unique_chat_id
    task = bound_with_its_card(bridge, fake_telegram, fake_planfix, chat, "Drawings")

    fake_planfix.add_task_file(task, "floor plan.pdf", b"%PDF-1.7 plan")

    eventually(
        lambda: any("New file in the task: floor plan.pdf" in t for t in shown(fake_telegram, chat)),
        what="file named",
    )
    line = next(t for t in texts_sent(fake_telegram, chat) if "floor plan.pdf" in t)
    assert f"/task/{task}" in line
    # The card shows no files: its text is the same, and no call of the group's 20 a minute is spent.
    stays(
        lambda: (
            not [
                c
                for c in fake_telegram.calls
                if c.method == "editMessageText" and c.params.get("chat_id") == chat
            ]
        ),
        for_s=1.5,
        what="the card not edited",
    )

    # /status shows the card too.
    command(fake_telegram, chat, "/status")
    eventually(
        lambda: any("is bound to Planfix task" in t and "Assigner:" in t for t in shown(fake_telegram, chat)),
        what="status with the card",
    )


def test_a_file_added_in_planfix_to_a_carried_comment_is_named_with_a_link(
    bridge: Bridge, fake_telegram: FakeTelegram, fake_planfix: FakePlanfix, unique_chat_id: int
) -> None:
    chat = unique_chat_id
    task = bind_new_task(bridge, fake_telegram, chat, "Comment files", fake_planfix)
    comment = fake_planfix.add_employee_comment(task, "<p>the estimate</p>")
    eventually(lambda: any("the estimate" in t for t in shown(fake_telegram, chat)), what="comment carried")

    added = fake_planfix.add_file("estimate v2.xlsx", b"PK sheet")
    fake_planfix.edit_comment(comment, "<p>the estimate</p>", files=(added,))

    eventually(
        lambda: any(
            "Added in Planfix to this comment: estimate v2.xlsx" in t for t in shown(fake_telegram, chat)
        ),
        what="file named",
    )
    line = next(t for t in texts_sent(fake_telegram, chat) if "estimate v2.xlsx" in t)
    assert f"/task/{task}" in line
