"""Another bot in the group answers /task too (Planfix's own): the pure pieces of how the gateway
sees it and how /status words it. The gateway and ``bridge doctor`` end to end are in
``test_telegram_gateway`` and ``test_ops``."""

from __future__ import annotations

import pytest
from aiogram.types import User

from bridge_lib.i18n import translator
from services.relay.directory import BoundTask
from services.relay.to_telegram.notices import status_text
from services.telegram_gateway.other_bots import command_for_other_bot, merged, named

ME = "planfix_bridge_bot"


EN = translator("en")


@pytest.mark.parametrize(
    ("text", "addressed"),
    [
        ("/task@planfix_bot Fix the printer", "planfix_bot"),
        ("/task@PlanfixBot", "PlanfixBot"),
        ("/TASK@planfix_bot 4821", "planfix_bot"),
        ("/task@planfix_bot\nFix it", "planfix_bot"),
        # Ours, in any case: a bind request, not another bot.
        ("/task@planfix_bridge_bot Fix it", None),
        ("/task@Planfix_Bridge_Bot", None),
        # Another command, or no bot named, or not at the start: nothing to say.
        ("/status@planfix_bot", None),
        ("/task Fix it", None),
        ("/taskforce@planfix_bot", None),
        ("please /task@planfix_bot", None),
        ("/task@planfix_bot.", None),
        ("", None),
        (None, None),
    ],
)
def test_task_addressed_to_another_bot_names_that_bot(text: str | None, addressed: str | None) -> None:
    assert command_for_other_bot(text, "task", ME) == addressed


def test_other_bots_are_the_bots_but_us_each_named_once() -> None:
    admins = [
        User(id=1, is_bot=False, first_name="Anna"),
        User(id=7000001, is_bot=True, first_name="Bridge", username=ME),
        User(id=2, is_bot=True, first_name="Planfix", username="planfix_bot"),
        User(id=3, is_bot=True, first_name="No Username"),
    ]

    assert named(admins, 7000001) == ["planfix_bot", "No Username"]
    assert merged(["planfix_bot"], ["Planfix_Bot", "helper_bot"]) == ["planfix_bot", "helper_bot"]


@pytest.mark.parametrize(
    ("other_bots", "expected"),
    [
        ([], None),
        (["planfix_bot"], "⚠️ Another bot here may answer /task too: @planfix_bot. If it is bound"),
        (["planfix_bot", "x<y"], "⚠️ 2 other bots here may answer /task too: @planfix_bot, @x&lt;y. If one"),
    ],
)
def test_status_says_another_bot_answers_task_too_and_what_that_leads_to(
    other_bots: list[str], expected: str | None
) -> None:
    bound = BoundTask(task_number=12, task_title="Printer")
    text = status_text(
        bound, task_url="https://acme.planfix.com/task/12", in_topic=False, bot_reads_all_messages=True,
        other_bots=other_bots, t=EN,
    )  # fmt: skip

    if expected is None:
        assert "⚠️" not in text
    else:
        assert expected in text
        assert "every message written here reaches Planfix twice" in text
        assert "/unbind" in text
