"""The sandbox's pieces without a browser: its state survives a restart, its page shows no markup
people wrote."""

from __future__ import annotations

from pathlib import Path

import pytest
from aiohttp import web

from sandbox.config import PEOPLE, SandboxConfig
from sandbox.fake_planfix import FakePlanfix
from sandbox.fake_telegram import FakeTelegram
from sandbox.html_clean import clean_html, text_to_html
from sandbox.page import Group, Sandbox, _telegram_language
from sandbox.persistence import StateFile


def saved_and_loaded(
    tmp_path: Path, telegram: FakeTelegram, planfix: FakePlanfix
) -> tuple[FakeTelegram, FakePlanfix]:
    """Save both fakes' state to disk, then load it into fresh fakes (a restart)."""
    telegram_state, telegram_files = telegram.snapshot()
    planfix_state, planfix_files = planfix.snapshot()
    store = StateFile(tmp_path)
    store.save(
        {"telegram": telegram_state, "planfix": planfix_state},
        {"telegram": telegram_files, "planfix": planfix_files},
    )
    state, files = StateFile(tmp_path).load()
    restarted_telegram, restarted_planfix = FakeTelegram(token="1:t"), FakePlanfix(token="t")
    restarted_telegram.restore(state["telegram"], files["telegram"])
    restarted_planfix.restore(state["planfix"], files["planfix"])
    return restarted_telegram, restarted_planfix


def test_after_a_restart_ids_go_on_and_groups_tasks_comments_and_files_are_kept(tmp_path: Path) -> None:
    telegram, planfix = FakeTelegram(token="1:t"), FakePlanfix(token="t")
    chat_id = -1001000000001
    telegram.set_member_status(chat_id, 1001, "creator")
    photo = telegram.add_file(b"\x89PNG fake bytes")
    first = telegram.add_group_message(chat_id, "hello", chat_title="Support group")
    task = planfix.add_task("Fix the printer")
    file_id = planfix.add_file("scan.pdf", b"%PDF-1.4")
    comment = planfix.add_employee_comment(task, "<b>on it</b>", files=(file_id,), fire_webhook=False)

    telegram, planfix = saved_and_loaded(tmp_path, telegram, planfix)

    second = telegram.add_group_message(chat_id, "again", chat_title="Support group")
    assert second["update_id"] > first["update_id"]
    assert second["message"]["message_id"] > first["message"]["message_id"]
    assert telegram.file_bytes(photo["file_id"]) == b"\x89PNG fake bytes"
    assert [c.description for c in planfix.comments(task)] == ["<b>on it</b>"]
    assert planfix.comments(task)[0].files == (file_id,)
    stored = planfix.file(file_id)
    assert stored is not None
    assert stored.data == b"%PDF-1.4"
    later = planfix.add_employee_comment(task, "done", fire_webhook=False)
    assert later > comment
    assert planfix.add_task("Another") > task


def test_saving_an_unchanged_state_writes_nothing(tmp_path: Path) -> None:
    store = StateFile(tmp_path)
    assert store.save({"a": 1}, {}) is True
    assert store.save({"a": 1}, {}) is False
    assert store.save({"a": 2}, {}) is True


def test_markup_people_wrote_is_shown_as_text_and_only_harmless_formatting_is_kept() -> None:
    cleaned = clean_html(
        "<b>bold</b><script>alert(1)</script><img src=x onerror=alert(1)>"
        '<a href="javascript:alert(1)">js</a><a href="https://example.com" onclick="x()">ok</a><i>open'
    )
    assert "<script" not in cleaned
    assert "alert(1)" not in cleaned
    assert "<img" not in cleaned
    assert "javascript:" not in cleaned
    assert "onclick" not in cleaned
    assert "<b>bold</b>" in cleaned
    assert 'href="https://example.com"' in cleaned
    assert cleaned.endswith("<i>open</i>")
    assert text_to_html("<b>not bold</b>\nline") == "&lt;b&gt;not bold&lt;/b&gt;<br>line"


def test_the_page_writes_in_the_telegram_language_chosen_and_refuses_others(tmp_path: Path) -> None:
    config = SandboxConfig(
        state_dir=tmp_path, host="127.0.0.1", port=0, telegram_port=0, planfix_port=0,
        nats_url="nats://127.0.0.1:1", planfix_webhook_url="http://127.0.0.1:1/planfix/webhook/x",
    )  # fmt: skip
    sandbox = Sandbox(config)
    group = Group(chat_id=-1001000000009, title="Ops")

    russian = sandbox.post_message(group, PEOPLE[0], "/task Принтер", language_code="ru")
    english = sandbox.post_message(group, PEOPLE[0], "/task Printer")

    assert russian["from"]["language_code"] == "ru"
    assert english["from"]["language_code"] == "en"
    assert _telegram_language({"language": "ru"}) == "ru"
    with pytest.raises(web.HTTPBadRequest):
        _telegram_language({"language": "fr"})
