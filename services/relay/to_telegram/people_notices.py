"""What the bridge tells a person in their private chat about their link to Planfix, and what
it says in a group to someone who writes /link there (in the person's or the group's language)."""

from __future__ import annotations

import html

from bridge_lib.i18n import N_, Translator
from contracts.events import LinkRefusal

_REFUSALS = {
    LinkRefusal.EXPIRED: N_("the code had expired. Write /link for a new one."),
    LinkRefusal.NOT_AN_EMPLOYEE: N_(
        "it was written by a Planfix contact, not an employee. Write the code signed in as yourself."
    ),
    LinkRefusal.EMPLOYEE_INACTIVE: N_("the Planfix employee who wrote it is not active (fired or deleted)."),
    LinkRefusal.ALREADY_LINKED: N_("you are linked to another Planfix account already. Write /unlink first."),
    LinkRefusal.EMPLOYEE_LINKED_ELSEWHERE: N_(
        "that Planfix employee is linked to another Telegram account. Unlink it there first (/unlink)."
    ),
}


def linked_text(name: str, t: Translator) -> str:
    return t.gettext(
        "✅ Linked: you act in Planfix as <b>{name}</b>. What you write in bound groups "
        "appears in Planfix as yours. /unlink undoes it."
    ).format(name=html.escape(name))


def refused_text(refusal: LinkRefusal, t: Translator) -> str:
    return t.gettext("❌ Your code linked nobody: {why}").format(why=t.gettext(_REFUSALS[refusal]))


def link_in_private_text(bot_username: str | None, t: Translator) -> str:
    """A bot cannot start a private chat: the person opens it (the deep link starts /link)."""
    if bot_username:
        url = f"https://t.me/{bot_username}?start=link"
        where = '<a href="{url}">{text}</a>'.format(
            url=html.escape(url), text=t.gettext("a private chat with me")
        )
    else:
        where = t.gettext("a private chat with me")
    return t.gettext("🔐 Linking happens in {where}: open it and press Start (or write /link there).").format(
        where=where
    )
