"""Links in ``/task``: ``/task https://acme.planfix.com/task/4821`` binds task 4821.

Two pure decisions, one per service. The gateway asks ``is_link``: is the whole argument one
link (as people paste it) rather than a title? It then carries the link as written, never as the
title of a new task. The binder asks ``task_in_link``: which task of *its* account does the link
name? Planfix's web links are ``https://<account>.planfix.com/task/<N>`` (``.planfix.ru`` too),
with ``?comment=<id>`` for a comment; the account's host is the one of ``PLANFIX_BASE_URL``.

A link to another account is refused, not read as a number: task 4821 of another account is not
our task 4821, and binding ours would carry a stranger's group into the wrong task.
"""

from __future__ import annotations

import enum
import re
from typing import NamedTuple
from urllib.parse import SplitResult, urlsplit

_SCHEME = re.compile(r"[a-z][a-z0-9+.-]*://", re.IGNORECASE)
# "acme.planfix.com/task/1" or "t.me/x": a dotted host with a path is a link even without a scheme
# (Telegram makes it one); "node.js" or "v1.2" alone stay words.
_BARE_HOST_WITH_PATH = re.compile(r"(?:[a-z0-9-]+\.)+[a-z]{2,}(?::[0-9]+)?/", re.IGNORECASE)
_PLANFIX_CLOUD = re.compile(r"([a-z0-9][a-z0-9-]*)\.planfix\.(?:com|ru)")
# [0-9] rather than \d: "²" or Arabic-Indic digits are not task numbers (as for /task 4821).
_TASK_PATH = re.compile(r"/task/([0-9]{1,18})/?")
_DEFAULT_PORTS = {"http": 80, "https": 443}


class LinkRefusal(enum.StrEnum):
    NOT_PLANFIX = "not_planfix"  # another site, or no web address at all
    NOT_A_TASK = "not_a_task"  # our account, but not a task's page
    OTHER_ACCOUNT = "other_account"  # a Planfix link, to another account


class TaskLink(NamedTuple):
    """The task a link names, or why it names none of ours."""

    number: int | None
    refusal: LinkRefusal | None = None


def comment_page(planfix_web_url: str, task_number: int, comment_id: int) -> str:
    """Where people open a comment: ``https://acme.planfix.com/task/4821?comment=77``."""
    return f"{planfix_web_url}task/{task_number}?comment={comment_id}"


def is_link(text: str) -> bool:
    """Whether the whole of ``text`` is one link; words with a link among them are not."""
    text = text.strip()
    if not text or any(character.isspace() for character in text):
        return False
    return bool(_SCHEME.match(text) or text.lower().startswith("www.") or _BARE_HOST_WITH_PATH.match(text))


def task_in_link(link: str, *, account_url: str) -> TaskLink:
    """The number of the task of the account at ``account_url`` that ``link`` opens."""
    parts = _parts(link)
    if parts is None:
        return TaskLink(None, LinkRefusal.NOT_PLANFIX)
    account = _parts(account_url)
    if account is None or not _same_account(parts, account):
        cloud = _PLANFIX_CLOUD.fullmatch(_site(parts))
        return TaskLink(None, LinkRefusal.OTHER_ACCOUNT if cloud else LinkRefusal.NOT_PLANFIX)
    task = _TASK_PATH.fullmatch(parts.path)
    if task is None:
        return TaskLink(None, LinkRefusal.NOT_A_TASK)
    return TaskLink(int(task[1]))


def _parts(link: str) -> SplitResult | None:
    """The link's parts, or None for anything but a plain http(s) address of a host."""
    text = link.strip()
    if not _SCHEME.match(text):
        text = "https://" + text
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError:
        return None
    if parts.scheme.lower() not in _DEFAULT_PORTS or not parts.hostname:
        return None
    # "https://acme.planfix.com@elsewhere.example/..." opens elsewhere.example: no user parts.
    if parts.username is not None or parts.password is not None:
        return None
    return parts


def _site(parts: SplitResult) -> str:
    host = (parts.hostname or "").rstrip(".")
    return host.removeprefix("www.")


def _same_account(link: SplitResult, account: SplitResult) -> bool:
    """The account's own host (``www.`` aside); on Planfix's cloud any port or scheme, elsewhere
    (a self-hosted Planfix, the sandbox) the same port too. ``acme.planfix.ru`` is not taken
    for ``acme.planfix.com``: nothing says the two names belong to one company."""
    if _site(link) != _site(account):
        return False
    return bool(_PLANFIX_CLOUD.fullmatch(_site(link))) or _port(link) == _port(account)


def _port(parts: SplitResult) -> int:
    return parts.port or _DEFAULT_PORTS[parts.scheme.lower()]
