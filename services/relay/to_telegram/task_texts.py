"""What the bridge says in a group about its task's life (issue 18): the task card, one line per
change, the answers to /done, /deadline and /assign. Every such text is here, so translating
them is one file's work.
"""

from __future__ import annotations

import html
from datetime import date

from contracts.events import PlanfixPerson, PlanfixTaskState, TaskCommand, TaskCommandAnswered

NO_ONE = "—"


def _people(people: list[PlanfixPerson]) -> str:
    names = [html.escape(person.name or person.id or "?") for person in people]
    return ", ".join(names) if names else NO_ONE


def show_deadline(deadline: str | None) -> str:
    """``2026-12-15`` as ``15.12.2026`` (a time after it stays)."""
    if not deadline:
        return "none"
    day, _, time = deadline.partition(" ")
    try:
        shown = date.fromisoformat(day).strftime("%d.%m.%Y")
    except ValueError:
        shown = day
    return f"{shown} {time}".strip()


def is_closed(state: PlanfixTaskState) -> bool:
    """A final status (Planfix's ``isActive: false``: completed, cancelled...)."""
    return state.status_active is False


def card_text(task_number: int, state: PlanfixTaskState, task_url: str) -> str:
    title = html.escape(state.name) if state.name else f"#{task_number}"
    status = html.escape(state.status_name or "?")
    lines = [
        f'📋 <b>Task <a href="{html.escape(task_url)}">#{task_number}</a></b>: {title}',
        f"Status: <b>{status}</b>" + (" (closed)" if is_closed(state) else ""),
        f"Assigner: {html.escape(state.assigner.name) if state.assigner else NO_ONE}",
        f"Assignees: {_people(state.assignees)}",
        f"Deadline: {show_deadline(state.deadline)}",
    ]
    if state.is_deleted:
        lines.append("⚠️ The task was deleted in Planfix.")
    elif is_closed(state):
        lines.append("The task is closed; messages are still carried while the group stays bound.")
    return "\n".join(lines)


def change_lines(previous: PlanfixTaskState, state: PlanfixTaskState, task_url: str = "") -> list[str]:
    """One short line per change a group cares about (pure; empty when none). New files of the
    task are named with a link to the task, where people open them (a file's own address needs
    the API token)."""
    lines: list[str] = []
    if previous.status_id != state.status_id or previous.status_name != state.status_name:
        was, now = html.escape(previous.status_name or "?"), html.escape(state.status_name or "?")
        if is_closed(state) and not is_closed(previous):
            lines.append(f"🏁 The task is closed: {was} → <b>{now}</b>")
        else:
            lines.append(f"🔄 Status: {was} → <b>{now}</b>")
    before = {person.id: person for person in previous.assignees}
    after = {person.id: person for person in state.assignees}
    added = [after[key] for key in after if key not in before]
    removed = [before[key] for key in before if key not in after]
    if added:
        lines.append(f"👤 Assignees added: {_people(added)}")
    if removed:
        lines.append(f"👤 Assignees removed: {_people(removed)}")
    if (previous.assigner and previous.assigner.id) != (state.assigner and state.assigner.id):
        lines.append(f"👤 Assigner: {html.escape(state.assigner.name) if state.assigner else NO_ONE}")
    if previous.deadline != state.deadline:
        if state.deadline is None:
            lines.append("📅 Deadline removed")
        elif previous.deadline is None:
            lines.append(f"📅 Deadline set: <b>{show_deadline(state.deadline)}</b>")
        else:
            was, now = show_deadline(previous.deadline), show_deadline(state.deadline)
            lines.append(f"📅 Deadline moved: {was} → <b>{now}</b>")
    known = {file.id for file in previous.files}
    added_files = [file for file in state.files if file.id not in known]
    if added_files:
        names = ", ".join(html.escape(file.name or f"#{file.id}") for file in added_files)
        where = f' (<a href="{html.escape(task_url)}">open the task</a>)' if task_url else ""
        lines.append(f"📎 New file in the task: {names}{where}")
    if state.is_deleted and not previous.is_deleted:
        lines.append("🗑 The task was deleted in Planfix")
    return lines


def comment_files_added_text(names: list[str], task_url: str) -> str:
    """A reply to a comment whose files were added to in Planfix after it was carried."""
    shown = ", ".join(html.escape(name or "a file") for name in names)
    return (
        f'📎 Added in Planfix to this comment: {shown} (<a href="{html.escape(task_url)}">open the task</a>)'
    )


PIN_RIGHT_WANTED = (
    "📌 I could not pin the task card: I need the right to pin messages. An admin opens the group "
    "settings → Administrators → me → switches on <b>Pin messages</b>."
)

# Why a task command was refused (``TaskCommandAnswered.outcome``); an unknown outcome (a newer
# binder) shows the binder's ``detail``.
REFUSALS = {
    "not_bound": "this group is not bound to a Planfix task. /task binds it first",
    "not_admin": "only the group's admins may change the task from here",
    "not_linked": (
        "your Telegram is not linked to a Planfix employee. Write /link to me in a private chat, "
        "then try again"
    ),
    "not_an_employee": "only Planfix employees may change the task from here",
    "not_on_the_task": (
        "you are not among the task's people in Planfix (assigner, assignees, participants, auditors)"
    ),
    "bad_date": (
        "I could not read that date. Examples: /deadline 15.12, /deadline 15 декабря, /deadline Dec 15"
    ),
    "no_completed_status": "the task's process has no status I can tell is the completed one",
    "unknown_person": (
        "I do not know that person: they must be a Planfix employee who linked their Telegram "
        "(/link in a private chat with me)"
    ),
    "no_person": "name the person: /assign @username",
    "already_done": "the task is completed already",
    "task_not_found": "Planfix does not show me the task",
    "planfix_refused": "Planfix refused the change",
}


def command_answer_text(event: TaskCommandAnswered) -> str:
    who = html.escape(event.requested_by) if event.requested_by else "someone"
    detail = html.escape(event.detail)
    if event.done:
        if event.command is TaskCommand.DONE:
            return f"✅ {who} marked the task completed (status <b>{detail}</b>)."
        if event.command is TaskCommand.DEADLINE:
            return f"📅 {who} set the deadline to <b>{detail}</b>."
        return f"👤 {who} made <b>{detail}</b> an assignee of the task."
    why = REFUSALS.get(event.outcome, event.detail or event.outcome)
    if event.outcome == "planfix_refused" and event.detail:
        why = f"{why}: {event.detail}"
    names = {TaskCommand.DONE: "/done", TaskCommand.DEADLINE: "/deadline", TaskCommand.ASSIGN: "/assign"}
    return f"⚠️ {names[event.command]} not done: {html.escape(why)}."
