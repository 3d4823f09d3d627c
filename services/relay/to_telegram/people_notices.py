"""What the bridge tells a person in their private chat about their link to Planfix, and what
it says in a group to someone who writes /link there."""

from __future__ import annotations

import html

from contracts.events import LinkRefusal

_REFUSALS = {
    LinkRefusal.EXPIRED: "the code had expired. Write /link for a new one.",
    LinkRefusal.NOT_AN_EMPLOYEE: (
        "it was written by a Planfix contact, not an employee. Write the code signed in as yourself."
    ),
    LinkRefusal.EMPLOYEE_INACTIVE: "the Planfix employee who wrote it is not active (fired or deleted).",
    LinkRefusal.ALREADY_LINKED: "you are linked to another Planfix account already. Write /unlink first.",
    LinkRefusal.EMPLOYEE_LINKED_ELSEWHERE: (
        "that Planfix employee is linked to another Telegram account. Unlink it there first (/unlink)."
    ),
}


def linked_text(name: str) -> str:
    return (
        f"✅ Linked: you act in Planfix as <b>{html.escape(name)}</b>. What you write in bound groups "
        "appears in Planfix as yours. /unlink undoes it."
    )


def refused_text(refusal: LinkRefusal) -> str:
    return f"❌ Your code linked nobody: {_REFUSALS[refusal]}"


def link_in_private_text(bot_username: str | None) -> str:
    """A bot cannot start a private chat: the person opens it (the deep link starts /link)."""
    if bot_username:
        url = f"https://t.me/{bot_username}?start=link"
        where = f'<a href="{html.escape(url)}">a private chat with me</a>'
    else:
        where = "a private chat with me"
    return f"🔐 Linking happens in {where}: open it and press Start (or write /link there)."
