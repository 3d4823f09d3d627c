"""What the bridge says in a group about itself: answers to commands, greetings, guidance."""

from __future__ import annotations

import html
from collections.abc import Sequence

from contracts.events import BindingResumed, BindRejected, TaskBound, TaskUnbound, UnbindRejected
from services.relay.directory import BoundTask

PRIVACY_FIX = (
    "⚠️ <b>Group Privacy is on</b>, so I only see commands and replies to me, not the group's "
    "messages. To fix it, the bot's owner opens @BotFather → /setprivacy → chooses this bot → "
    "<b>Disable</b>, then removes me from this group and adds me again (Telegram applies the "
    "change only then)."
)

HOW_TO_BIND = (
    "An admin binds the group to a task with <code>/task title of a new task</code> or "
    "<code>/task 4821</code> (the number of an existing task)."
)

ANONYMOUS_ADMIN_GUIDANCE = (
    "⚠️ Messages sent anonymously on behalf of the group are <b>not</b> passed on to Planfix: "
    "Telegram does not tell the bot who wrote them.\n"
    "To fix it, a group owner opens the group settings → Administrators → the admin's entry and "
    "switches off <b>Remain anonymous</b>. (I say this once per group.)"
)


def other_bots_warning(other_bots: Sequence[str]) -> str:
    """What another bot answering /task in the same group leads to, and the way out."""
    names = ", ".join(html.escape(name if " " in name else f"@{name}") for name in other_bots)
    who, one = ("Another bot", "it") if len(other_bots) == 1 else ("Other bots", "one of them")
    return (
        f"⚠️ {who} here may answer /task too: {names}. If {one} is bound to a Planfix task as well "
        "(Planfix's own Telegram bot binds with /task), <b>every message written here reaches "
        "Planfix twice</b>. Keep one of us: remove the other bot from the group, or /unbind me."
    )


def task_page(planfix_web_url: str, task_number: int) -> str:
    """Where people open a task: ``https://acc.planfix.com/task/4821``."""
    return f"{planfix_web_url}task/{task_number}"


def link(url: str, text: str) -> str:
    return f'<a href="{html.escape(url)}">{html.escape(text)}</a>'


def status_text(
    bound: BoundTask | None,
    *,
    task_url: str,
    in_topic: bool,
    bot_reads_all_messages: bool,
    other_bots: Sequence[str] = (),
) -> str:
    where = "This topic" if in_topic else "This group"
    if bound is None:
        lines = [f"ℹ️ {where} is not bound to a Planfix task.", HOW_TO_BIND]
    else:
        task = link(task_url, f"#{bound.task_number}")
        lines = [
            f"🔗 {where} is bound to Planfix task {task} «{html.escape(bound.task_title)}».",
            "Messages written here become comments in the task; new comments in the task appear here.",
            "/unbind stops that.",
        ]
    if not bot_reads_all_messages:
        lines.append(PRIVACY_FIX)
    if other_bots:
        lines.append(other_bots_warning(other_bots))
    return "\n".join(lines)


def help_text(bot_username: str | None) -> str:
    mention = f" (or /task@{html.escape(bot_username)})" if bot_username else ""
    return "\n".join(
        [
            "I carry messages between this group and a Planfix task, both ways.",
            f"/task <i>title</i> — create a task and bind this group to it{mention}",
            "/task <i>number</i> — bind this group to an existing task",
            "/task <i>link</i> — the same, with the task's link from Planfix",
            "/status — which task this group is bound to",
            "/unbind — stop carrying messages",
            "/help — this list",
            "Binding and unbinding are for the group's admins.",
        ]
    )


def greeting_text() -> str:
    return "\n".join(
        [
            "👋 Hello! I carry messages between this group and a Planfix task, both ways.",
            HOW_TO_BIND,
            "/help lists the commands.",
        ]
    )


def unbound_notice(event: TaskUnbound) -> str:
    return (
        f"🔓 This group is no longer bound to Planfix task #{event.task_number}; messages are not "
        "carried any more. /task binds it again."
    )


def unbind_rejected_notice(event: UnbindRejected) -> str:
    return f"⚠️ Could not unbind: {html.escape(event.detail)}."


def resumed_notice(event: BindingResumed, task_url: str) -> str:
    task = link(task_url, f"#{event.task_number}")
    return (
        f"✅ Welcome back: this group is bound to Planfix task {task} «{html.escape(event.task_title)}» "
        "again. Comments written in the task meanwhile follow."
    )


def bound_notice(event: TaskBound, task_url: str) -> str:
    title = html.escape(event.task_title)
    how = "created and bound" if event.created_task else "bound"
    task = link(task_url, f"#{event.task_number}")
    lines = [
        f"✅ This group is now {how} to Planfix task {task} «{title}».",
        "Messages written here become comments in the task; new comments in the task appear here.",
    ]
    if event.previous_task_number is not None:
        lines.append(f"(It was bound to task #{event.previous_task_number} before.)")
    return "\n".join(lines)


# The binder's bind policy (``BindRejected.refusal``); a value not listed here (a newer binder)
# falls back to the binder's own ``detail``.
REFUSALS = {
    "not_linked": (
        "your Telegram is not linked to a Planfix employee, so I cannot tell whether the task is "
        "yours to share. Link it: write /link to me in a private chat (I give you a code to "
        "write in Planfix), or ask your Planfix admin to add your Telegram to your Planfix "
        "profile (Planfix → profile → Telegram); then write /task again"
    ),
    "not_an_employee": "only Planfix employees can bind a group to a task",
    "not_on_the_task": (
        "you are not among the task's people in Planfix (its assigner, assignees, participants "
        "or auditors). Ask one of them to bind it here, or to add you to the task, then write "
        "/task again"
    ),
    "task_already_bound": (
        "the task is already bound to another Telegram group (one group per task). Write /unbind "
        "in that group first"
    ),
    "chat_not_allowed": "this group may not bind Planfix tasks. Ask the bridge's operator to allow it",
    "not_admin": "only the group's admins can bind it, sorry",
}


def rejected_notice(event: BindRejected) -> str:
    why = REFUSALS.get(event.refusal or "", event.detail)
    if event.refusal == "task_already_bound" and event.task_number is not None:
        why = why.replace("the task", f"task #{event.task_number}", 1)
    return f"⚠️ Could not bind this group: {html.escape(why)}."
