"""What the bridge says in a group about itself: answers to commands, greetings, guidance.

Every text is in the group's language (``t``, a ``bridge_lib.i18n.Translator``): msgids are the
English texts, catalogues in ``bridge_lib/locales``.
"""

from __future__ import annotations

import html
from collections.abc import Sequence

from bridge_lib.i18n import N_, Translator
from contracts.events import (
    BindingResumed,
    BindRejected,
    GroupLanguageChosen,
    GroupLanguageRejected,
    TaskBound,
    TaskUnbound,
    UnbindRejected,
)
from services.relay.directory import BoundTask

PRIVACY_FIX = N_(
    "⚠️ <b>Group Privacy is on</b>, so I only see commands and replies to me, not the group's "
    "messages. To fix it, the bot's owner opens @BotFather → /setprivacy → chooses this bot → "
    "<b>Disable</b>, then removes me from this group and adds me again (Telegram applies the "
    "change only then)."
)

HOW_TO_BIND = N_(
    "An admin binds the group to a task with <code>/task title of a new task</code> or "
    "<code>/task 4821</code> (the number of an existing task)."
)

ANONYMOUS_ADMIN_GUIDANCE = N_(
    "⚠️ Messages sent anonymously on behalf of the group are <b>not</b> passed on to Planfix: "
    "Telegram does not tell the bot who wrote them.\n"
    "To fix it, a group owner opens the group settings → Administrators → the admin's entry and "
    "switches off <b>Remain anonymous</b>. (I say this at most once a day.)"
)

# An anonymous admin's command: nobody can be checked (may they bind?) or named.
ANONYMOUS_BIND_COMMAND = N_(
    "⚠️ I cannot act on this {command}: it was sent anonymously on behalf of the group, and "
    "Telegram does not tell me who wrote it, so I cannot check that they may do it.\n"
    "Switch off <b>Remain anonymous</b> (group settings → Administrators → your entry) and send "
    "{command} again, or ask an admin who is not anonymous to send it."
)
ANONYMOUS_NOT_CARRIED = N_(
    "Note: what you write anonymously on behalf of the group is <b>not</b> passed on to Planfix; "
    "switch off <b>Remain anonymous</b> (group settings → Administrators → your entry) for that."
)


def anonymous_command_answer(command: str, *, status: str, help_: str, t: Translator) -> str:
    """The answer to an anonymous admin's ``/task``, ``/unbind``, ``/status`` or ``/help``:
    ``/status`` and ``/help`` are answered (they need nobody's name) with a note; the others say
    what to do instead."""
    if command == "status":
        return f"{status}\n\n{t.gettext(ANONYMOUS_NOT_CARRIED)}"
    if command == "help":
        return f"{help_}\n\n{t.gettext(ANONYMOUS_NOT_CARRIED)}"
    return t.gettext(ANONYMOUS_BIND_COMMAND).format(command=f"/{html.escape(command)}")


# The languages by name, in the language being spoken (the /lang confirmation names the new one).
LANGUAGE_NAMES = {"ru": N_("Russian"), "en": N_("English")}


def anonymous_admin_guidance(t: Translator) -> str:
    return t.gettext(ANONYMOUS_ADMIN_GUIDANCE)


def other_bots_warning(other_bots: Sequence[str], t: Translator) -> str:
    """What another bot answering /task in the same group leads to, and the way out."""
    names = ", ".join(html.escape(name if " " in name else f"@{name}") for name in other_bots)
    return t.ngettext(
        "⚠️ Another bot here may answer /task too: {names}. If it is bound to a Planfix task as well "
        "(Planfix's own Telegram bot binds with /task), <b>every message written here reaches "
        "Planfix twice</b>. Keep one of us: remove the other bot from the group, or /unbind me.",
        "⚠️ {count} other bots here may answer /task too: {names}. If one of them is bound to a Planfix "
        "task as well (Planfix's own Telegram bot binds with /task), <b>every message written here "
        "reaches Planfix twice</b>. Keep one of us: remove the other bot from the group, or /unbind me.",
        len(other_bots),
    ).format(names=names, count=len(other_bots))


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
    t: Translator,
    other_bots: Sequence[str] = (),
) -> str:
    if bound is None:
        not_bound = (
            t.gettext("ℹ️ This topic is not bound to a Planfix task.")
            if in_topic
            else t.gettext("ℹ️ This group is not bound to a Planfix task.")
        )
        lines = [not_bound, t.gettext(HOW_TO_BIND)]
    else:
        task = link(task_url, f"#{bound.task_number}")
        is_bound = (
            t.gettext("🔗 This topic is bound to Planfix task {task} «{title}».")
            if in_topic
            else t.gettext("🔗 This group is bound to Planfix task {task} «{title}».")
        )
        lines = [
            is_bound.format(task=task, title=html.escape(bound.task_title)),
            t.gettext(
                "Messages written here become comments in the task; new comments in the task appear here."
            ),
            t.gettext("/unbind stops that."),
        ]
    if not bot_reads_all_messages:
        lines.append(t.gettext(PRIVACY_FIX))
    if other_bots:
        lines.append(other_bots_warning(other_bots, t))
    return "\n".join(lines)


def help_text(bot_username: str | None, t: Translator) -> str:
    mention = t.gettext(" (or /task@{bot})").format(bot=html.escape(bot_username)) if bot_username else ""
    return "\n".join(
        [
            t.gettext("I carry messages between this group and a Planfix task, both ways."),
            t.gettext("/task <i>title</i> — create a task and bind this group to it{mention}").format(
                mention=mention
            ),
            t.gettext("/task <i>number</i> — bind this group to an existing task"),
            t.gettext("/task <i>link</i> — the same, with the task's link from Planfix"),
            t.gettext("/status — which task this group is bound to"),
            t.gettext("/unbind — stop carrying messages"),
            t.gettext("/lang <i>ru</i> or <i>en</i> — the language I speak in this group"),
            t.gettext("/help — this list"),
            t.gettext("Binding and unbinding are for the group's admins."),
        ]
    )


def greeting_text(t: Translator) -> str:
    return "\n".join(
        [
            t.gettext("👋 Hello! I carry messages between this group and a Planfix task, both ways."),
            t.gettext(HOW_TO_BIND),
            t.gettext("/help lists the commands."),
        ]
    )


def unbound_notice(event: TaskUnbound, t: Translator) -> str:
    return t.gettext(
        "🔓 This group is no longer bound to Planfix task #{number}; messages are not "
        "carried any more. /task binds it again."
    ).format(number=event.task_number)


def unbind_rejected_notice(event: UnbindRejected, t: Translator) -> str:
    return t.gettext("⚠️ Could not unbind: {why}.").format(why=html.escape(event.detail))


def resumed_notice(event: BindingResumed, task_url: str, t: Translator) -> str:
    task = link(task_url, f"#{event.task_number}")
    return t.gettext(
        "✅ Welcome back: this group is bound to Planfix task {task} «{title}» "
        "again. Comments written in the task meanwhile follow."
    ).format(task=task, title=html.escape(event.task_title))


def bound_notice(event: TaskBound, task_url: str, t: Translator) -> str:
    title = html.escape(event.task_title)
    task = link(task_url, f"#{event.task_number}")
    now_bound = (
        t.gettext("✅ This group is now created and bound to Planfix task {task} «{title}».")
        if event.created_task
        else t.gettext("✅ This group is now bound to Planfix task {task} «{title}».")
    )
    lines = [
        now_bound.format(task=task, title=title),
        t.gettext("Messages written here become comments in the task; new comments in the task appear here."),
    ]
    if event.previous_task_number is not None:
        lines.append(
            t.gettext("(It was bound to task #{number} before.)").format(number=event.previous_task_number)
        )
    return "\n".join(lines)


def language_chosen_notice(event: GroupLanguageChosen, t: Translator) -> str:
    """Said in the language just chosen."""
    name = t.gettext(LANGUAGE_NAMES.get(event.language, event.language))
    return t.gettext("🌐 From now on I speak {language} in this group.").format(language=name)


def language_rejected_notice(event: GroupLanguageRejected, t: Translator) -> str:
    return t.gettext("⚠️ Could not change the language: {why}.").format(why=html.escape(event.detail))


# The binder's bind policy (``BindRejected.refusal``); a value not listed here (a newer binder)
# falls back to the binder's own ``detail`` (worded in the group's language by the binder).
REFUSALS = {
    "not_linked": N_(
        "your Telegram is not linked to a Planfix employee, so I cannot tell whether the task is "
        "yours to share. Link it: write /link to me in a private chat (I give you a code to "
        "write in Planfix), or ask your Planfix admin to add your Telegram to your Planfix "
        "profile (Planfix → profile → Telegram); then write /task again"
    ),
    "not_an_employee": N_("only Planfix employees can bind a group to a task"),
    "not_on_the_task": N_(
        "you are not among the task's people in Planfix (its assigner, assignees, participants "
        "or auditors). Ask one of them to bind it here, or to add you to the task, then write "
        "/task again"
    ),
    "task_already_bound": N_(
        "the task is already bound to another Telegram group (one group per task). Write /unbind "
        "in that group first"
    ),
    "chat_not_allowed": N_("this group may not bind Planfix tasks. Ask the bridge's operator to allow it"),
    "not_admin": N_("only the group's admins can bind it, sorry"),
}
# task_already_bound with the task's number known.
ALREADY_BOUND_NUMBERED = N_(
    "task #{number} is already bound to another Telegram group (one group per task). Write /unbind "
    "in that group first"
)


def rejected_notice(event: BindRejected, t: Translator) -> str:
    known = REFUSALS.get(event.refusal or "")
    if event.refusal == "task_already_bound" and event.task_number is not None:
        why = t.gettext(ALREADY_BOUND_NUMBERED).format(number=event.task_number)
    else:
        why = t.gettext(known) if known is not None else event.detail
    return t.gettext("⚠️ Could not bind this group: {why}.").format(why=html.escape(why))
