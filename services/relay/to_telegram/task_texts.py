"""What the bridge says in a group about its task's life (issue 18): the task card, one line per
change, the answers to /done, /deadline and /assign. Every such text is here, marked for the
gettext catalogues and said in the group's language (``t``).
"""

from __future__ import annotations

import html
from datetime import date

from bridge_lib.i18n import N_, Translator
from contracts.events import PlanfixPerson, PlanfixTaskState, TaskCommand, TaskCommandAnswered

NO_ONE = "—"


def _people(people: list[PlanfixPerson]) -> str:
    names = [html.escape(person.name or person.id or "?") for person in people]
    return ", ".join(names) if names else NO_ONE


def show_deadline(deadline: str | None, t: Translator) -> str:
    """``2026-12-15`` as ``15.12.2026`` (a time after it stays)."""
    if not deadline:
        return t.gettext("none")
    day, _, time = deadline.partition(" ")
    try:
        shown = date.fromisoformat(day).strftime("%d.%m.%Y")
    except ValueError:
        shown = day
    return f"{shown} {time}".strip()


def is_closed(state: PlanfixTaskState) -> bool:
    """A final status (Planfix's ``isActive: false``: completed, cancelled...)."""
    return state.status_active is False


def card_text(task_number: int, state: PlanfixTaskState, task_url: str, t: Translator) -> str:
    title = html.escape(state.name) if state.name else f"#{task_number}"
    task = f'<a href="{html.escape(task_url)}">#{task_number}</a>'
    status = html.escape(state.status_name or "?")
    status_line = (
        t.gettext("Status: <b>{status}</b> (closed)")
        if is_closed(state)
        else t.gettext("Status: <b>{status}</b>")
    )
    lines = [
        t.gettext("📋 <b>Task {task}</b>: {title}").format(task=task, title=title),
        status_line.format(status=status),
        t.gettext("Assigner: {person}").format(
            person=html.escape(state.assigner.name) if state.assigner else NO_ONE
        ),
        t.gettext("Assignees: {people}").format(people=_people(state.assignees)),
        t.gettext("Deadline: {deadline}").format(deadline=show_deadline(state.deadline, t)),
    ]
    if state.is_deleted:
        lines.append(t.gettext("⚠️ The task was deleted in Planfix."))
    elif is_closed(state):
        lines.append(t.gettext("The task is closed; messages are still carried while the group stays bound."))
    return "\n".join(lines)


def change_lines(
    previous: PlanfixTaskState, state: PlanfixTaskState, t: Translator, task_url: str = ""
) -> list[str]:
    """One short line per change a group cares about (pure; empty when none). New files of the
    task are named with a link to the task, where people open them (a file's own address needs
    the API token)."""
    lines: list[str] = []
    if previous.status_id != state.status_id or previous.status_name != state.status_name:
        was, now = html.escape(previous.status_name or "?"), html.escape(state.status_name or "?")
        if is_closed(state) and not is_closed(previous):
            lines.append(t.gettext("🏁 The task is closed: {was} → <b>{now}</b>").format(was=was, now=now))
        else:
            lines.append(t.gettext("🔄 Status: {was} → <b>{now}</b>").format(was=was, now=now))
    before = {person.id: person for person in previous.assignees}
    after = {person.id: person for person in state.assignees}
    added = [after[key] for key in after if key not in before]
    removed = [before[key] for key in before if key not in after]
    if added:
        lines.append(t.gettext("👤 Assignees added: {people}").format(people=_people(added)))
    if removed:
        lines.append(t.gettext("👤 Assignees removed: {people}").format(people=_people(removed)))
    if (previous.assigner and previous.assigner.id) != (state.assigner and state.assigner.id):
        person = html.escape(state.assigner.name) if state.assigner else NO_ONE
        lines.append(t.gettext("👤 Assigner: {person}").format(person=person))
    if previous.deadline != state.deadline:
        if state.deadline is None:
            lines.append(t.gettext("📅 Deadline removed"))
        elif previous.deadline is None:
            lines.append(
                t.gettext("📅 Deadline set: <b>{deadline}</b>").format(
                    deadline=show_deadline(state.deadline, t)
                )
            )
        else:
            was, now = show_deadline(previous.deadline, t), show_deadline(state.deadline, t)
            lines.append(t.gettext("📅 Deadline moved: {was} → <b>{now}</b>").format(was=was, now=now))
    known = {file.id for file in previous.files}
    added_files = [file for file in state.files if file.id not in known]
    if added_files:
        names = ", ".join(html.escape(file.name or f"#{file.id}") for file in added_files)
        if task_url:
            lines.append(
                t.gettext('📎 New file in the task: {names} (<a href="{url}">open the task</a>)').format(
                    names=names, url=html.escape(task_url)
                )
            )
        else:
            lines.append(t.gettext("📎 New file in the task: {names}").format(names=names))
    if state.is_deleted and not previous.is_deleted:
        lines.append(t.gettext("🗑 The task was deleted in Planfix"))
    return lines


def comment_files_added_text(names: list[str], task_url: str, t: Translator) -> str:
    """A reply to a comment whose files were added to in Planfix after it was carried."""
    shown = ", ".join(html.escape(name) if name else t.gettext("a file") for name in names)
    return t.gettext(
        '📎 Added in Planfix to this comment: {names} (<a href="{url}">open the task</a>)'
    ).format(names=shown, url=html.escape(task_url))


PIN_RIGHT_WANTED = N_(
    "📌 I could not pin the task card: I need the right to pin messages. An admin opens the group "
    "settings → Administrators → me → switches on <b>Pin messages</b>."
)

# Why a task command was refused (``TaskCommandAnswered.outcome``); an unknown outcome (a newer
# binder) shows the binder's ``detail``.
REFUSALS = {
    "not_bound": N_("this group is not bound to a Planfix task. /task binds it first"),
    "not_admin": N_("only the group's admins may change the task from here"),
    "not_linked": N_(
        "your Telegram is not linked to a Planfix employee. Write /link to me in a private chat, "
        "then try again"
    ),
    "not_an_employee": N_("only Planfix employees may change the task from here"),
    "not_on_the_task": N_(
        "you are not among the task's people in Planfix (assigner, assignees, participants, auditors)"
    ),
    "bad_date": N_(
        "I could not read that date. Examples: /deadline 15.12, /deadline 15 декабря, /deadline Dec 15"
    ),
    "no_completed_status": N_("the task's process has no status I can tell is the completed one"),
    "unknown_person": N_(
        "I do not know that person: they must be a Planfix employee who linked their Telegram "
        "(/link in a private chat with me)"
    ),
    "no_person": N_("name the person: /assign @username"),
    "already_done": N_("the task is completed already"),
    "task_not_found": N_("Planfix does not show me the task"),
    "planfix_refused": N_("Planfix refused the change"),
}


def command_answer_text(event: TaskCommandAnswered, t: Translator) -> str:
    who = html.escape(event.requested_by) if event.requested_by else t.gettext("someone")
    detail = html.escape(event.detail)
    if event.done:
        if event.command is TaskCommand.DONE:
            text = t.gettext("✅ {who} marked the task completed (status <b>{status}</b>).")
            return text.format(who=who, status=detail)
        if event.command is TaskCommand.DEADLINE:
            return t.gettext("📅 {who} set the deadline to <b>{date}</b>.").format(who=who, date=detail)
        return t.gettext("👤 {who} made <b>{person}</b> an assignee of the task.").format(
            who=who, person=detail
        )
    known = REFUSALS.get(event.outcome)
    why = t.gettext(known) if known else (event.detail or event.outcome)
    if event.outcome == "planfix_refused" and event.detail:
        why = f"{why}: {event.detail}"
    names = {TaskCommand.DONE: "/done", TaskCommand.DEADLINE: "/deadline", TaskCommand.ASSIGN: "/assign"}
    return t.gettext("⚠️ {command} not done: {why}.").format(
        command=names[event.command], why=html.escape(why)
    )
