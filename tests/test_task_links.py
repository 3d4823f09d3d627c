"""``/task <link>``: which arguments are links, and which task of the bridge's account a link
names (``bridge_lib.task_links``; the end-to-end tests bind through it)."""

from __future__ import annotations

import pytest

from bridge_lib.task_links import LinkRefusal, TaskLink, is_link, task_in_link

ACCOUNT = "https://acme.planfix.com/rest/"


@pytest.mark.parametrize(
    ("text", "link"),
    [
        ("https://acme.planfix.com/task/4821", True),
        ("  http://acme.planfix.ru/task/4821/  ", True),
        ("HTTPS://ACME.PLANFIX.COM/TASK/4821", True),
        ("acme.planfix.com/task/4821", True),  # pasted without the scheme
        ("www.acme.planfix.com/task/4821", True),
        ("www.example.com", True),
        ("t.me/joinchat/abc", True),
        ("ftp://files.example/x", True),
        ("tg://resolve?domain=somebot", True),
        # Words, even with a link among them, are a title; a dotted word alone is a word.
        ("Fix https://example.com/page please", False),
        ("Printer https://acme.planfix.com/task/4821", False),
        ("node.js", False),
        ("v1.2", False),
        ("README.md", False),
        ("1.5/2", False),
        ("and/or", False),
        ("", False),
    ],
)
def test_a_link_is_the_whole_argument_and_nothing_else(text: str, link: bool) -> None:
    assert is_link(text) is link


@pytest.mark.parametrize(
    ("link", "expected"),
    [
        ("https://acme.planfix.com/task/4821", TaskLink(4821)),
        ("https://acme.planfix.com/task/4821/", TaskLink(4821)),
        ("https://acme.planfix.com/task/4821?comment=77", TaskLink(4821)),
        ("https://acme.planfix.com/task/4821/?comment=77#c77", TaskLink(4821)),
        ("https://acme.planfix.com/task/4821#top", TaskLink(4821)),
        ("https://www.acme.planfix.com/task/4821", TaskLink(4821)),
        ("http://ACME.planfix.com:443/task/4821", TaskLink(4821)),
        ("acme.planfix.com/task/4821", TaskLink(4821)),
        ("https://acme.planfix.com./task/0042", TaskLink(42)),
        # Our account, but not a task's page.
        ("https://acme.planfix.com/", TaskLink(None, LinkRefusal.NOT_A_TASK)),
        ("https://acme.planfix.com/project/12", TaskLink(None, LinkRefusal.NOT_A_TASK)),
        ("https://acme.planfix.com/task/", TaskLink(None, LinkRefusal.NOT_A_TASK)),
        ("https://acme.planfix.com/task/48x21", TaskLink(None, LinkRefusal.NOT_A_TASK)),
        ("https://acme.planfix.com/task/²", TaskLink(None, LinkRefusal.NOT_A_TASK)),
        ("https://acme.planfix.com/task/4821/comments", TaskLink(None, LinkRefusal.NOT_A_TASK)),
        ("https://acme.planfix.com/rest/task/4821", TaskLink(None, LinkRefusal.NOT_A_TASK)),
        # Another account's task 4821 is not ours: never read as a number.
        ("https://other.planfix.com/task/4821", TaskLink(None, LinkRefusal.OTHER_ACCOUNT)),
        ("https://acme.planfix.ru/task/4821", TaskLink(None, LinkRefusal.OTHER_ACCOUNT)),
        ("https://www.other.planfix.ru/task/4821", TaskLink(None, LinkRefusal.OTHER_ACCOUNT)),
        # Anything else is not a Planfix link at all.
        ("https://example.com/task/4821", TaskLink(None, LinkRefusal.NOT_PLANFIX)),
        ("https://acme.planfix.com.evil.example/task/4821", TaskLink(None, LinkRefusal.NOT_PLANFIX)),
        ("https://evil-acme.planfix.com.example/task/1", TaskLink(None, LinkRefusal.NOT_PLANFIX)),
        ("https://planfix.com/task/4821", TaskLink(None, LinkRefusal.NOT_PLANFIX)),
        # A user part makes the browser open the host after "@", whatever comes before it.
        ("https://acme.planfix.com@evil.example/task/4821", TaskLink(None, LinkRefusal.NOT_PLANFIX)),
        ("https://evil.example@acme.planfix.com/task/4821", TaskLink(None, LinkRefusal.NOT_PLANFIX)),
        ("ftp://acme.planfix.com/task/4821", TaskLink(None, LinkRefusal.NOT_PLANFIX)),
        ("javascript://acme.planfix.com/task/4821", TaskLink(None, LinkRefusal.NOT_PLANFIX)),
        ("https://acme.planfix.com:port/task/4821", TaskLink(None, LinkRefusal.NOT_PLANFIX)),
        ("https://[::1/task/4821", TaskLink(None, LinkRefusal.NOT_PLANFIX)),
        ("t.me/joinchat/abc", TaskLink(None, LinkRefusal.NOT_PLANFIX)),
    ],
)
def test_a_link_binds_a_task_of_the_bridges_own_account_only(link: str, expected: TaskLink) -> None:
    assert task_in_link(link, account_url=ACCOUNT) == expected


@pytest.mark.parametrize(
    ("link", "account", "expected"),
    [
        # A self-hosted Planfix, or the sandbox's fake: the same host and port.
        ("http://127.0.0.1:8931/task/7", "http://127.0.0.1:8931/rest/", TaskLink(7)),
        (
            "http://127.0.0.1:8932/task/7",
            "http://127.0.0.1:8931/rest/",
            TaskLink(None, LinkRefusal.NOT_PLANFIX),
        ),
        ("https://pf.example.org/task/7", "https://pf.example.org/rest/", TaskLink(7)),
        ("https://pf.example.org:443/task/7", "https://pf.example.org/rest/", TaskLink(7)),
        (
            "http://pf.example.org/task/7",
            "https://pf.example.org/rest/",
            TaskLink(None, LinkRefusal.NOT_PLANFIX),
        ),
        # A .ru account binds its own links, and refuses the .com name.
        ("https://acme.planfix.ru/task/7", "https://acme.planfix.ru/rest/", TaskLink(7)),
        (
            "https://acme.planfix.com/task/7",
            "https://acme.planfix.ru/rest/",
            TaskLink(None, LinkRefusal.OTHER_ACCOUNT),
        ),
    ],
)
def test_off_the_cloud_the_account_is_its_host_and_port(link: str, account: str, expected: TaskLink) -> None:
    assert task_in_link(link, account_url=account) == expected
