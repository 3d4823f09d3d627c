"""Russian and English through the real services: a bridge whose default is Russian
(``BRIDGE_LANGUAGE=ru``, as for users), groups that speak what their first binder's Telegram
speaks until ``/lang`` chooses, and the comments the bridge writes into Planfix following the
group. Each test reads as what people see in the group and in the task."""

from __future__ import annotations

from functools import partial
from typing import Any

from contracts.events import GroupLanguageChosen, TelegramMessageReceived
from sandbox.fake_planfix import FakePlanfix
from sandbox.fake_telegram import FakeTelegram
from tests.e2e_bridge import ADMIN_ID, Bridge, bridge_fixture, texts_sent
from tests.support import eventually, relayed_comments, wait_for_binding_notice

MEMBER_ID = 7_716_001  # not an admin of any group here


bridge = bridge_fixture("e2e-lang", extra_env={"BRIDGE_LANGUAGE": "ru"})


def said(fake_telegram: FakeTelegram, chat_id: int, count: int, what: str) -> list[str]:
    """The group's messages once there are ``count`` of them."""
    texts: list[str] = eventually(
        lambda: texts if len(texts := texts_sent(fake_telegram, chat_id)) >= count else [],
        what=what,
    )
    return texts


def answer_to(
    fake_telegram: FakeTelegram, chat_id: int, text: str, *, nth: int, what: str, **sender: Any
) -> str:
    """Someone writes ``text`` in the group; the bot's ``nth`` message there, its answer."""
    fake_telegram.add_group_message(chat_id, text, **sender)
    return said(fake_telegram, chat_id, nth, what)[nth - 1]


def bind(
    fake_telegram: FakeTelegram,
    fake_planfix: FakePlanfix,
    bridge: Bridge,
    chat_id: int,
    title: str,
    code: str | None,
) -> int:
    """The admin, whose Telegram speaks ``code``, writes ``/task <title>``: the new task's number."""
    fake_telegram.set_member_status(chat_id, ADMIN_ID, "administrator")
    fake_telegram.add_group_message(chat_id, f"/task {title}", chat_title=title, language_code=code)
    said(fake_telegram, chat_id, 1, "bind confirmation")
    number = max(task.number for task in fake_planfix.tasks() if task.name == title)
    wait_for_binding_notice(bridge.events, fake_planfix, number)
    return int(number)


def test_a_group_speaks_its_binders_language_and_another_group_stays_english_at_the_same_time(
    bridge: Bridge, fake_telegram: FakeTelegram, fake_planfix: FakePlanfix, unique_chat_id: int
) -> None:
    russian, english = unique_chat_id, unique_chat_id - 1

    ru_task = bind(fake_telegram, fake_planfix, bridge, russian, "Принтер на третьем этаже", "ru")
    en_task = bind(fake_telegram, fake_planfix, bridge, english, "Printer on floor 3", "en-GB")

    [ru_bound] = texts_sent(fake_telegram, russian)
    [en_bound] = texts_sent(fake_telegram, english)
    assert ru_bound.startswith("✅ Создана задача ПланФикса")
    assert "Сообщения отсюда становятся комментариями в задаче" in ru_bound
    assert en_bound.startswith("✅ This group is now created and bound to Planfix task")
    # What the bridge writes into Planfix follows the group too: the new task and the bind notice.
    ru_notice = fake_planfix.comments(ru_task)[0].description
    assert ru_notice.startswith("Привязана к группе Telegram «Принтер на третьем этаже»")
    assert fake_planfix.comments(en_task)[0].description.startswith(
        "Bound to Telegram group «Printer on floor 3»"
    )
    ru_description = fake_planfix.task(ru_task).description  # type: ignore[union-attr]
    assert "Создана из группы Telegram «Принтер на третьем этаже»" in ru_description

    for chat in (russian, english):
        fake_telegram.add_group_message(chat, "/help")
        fake_telegram.add_group_message(chat, "/status")
    ru_help, ru_status = said(fake_telegram, russian, 3, "Russian answers")[1:]
    en_help, en_status = said(fake_telegram, english, 3, "English answers")[1:]
    assert ru_help.startswith("Я переношу сообщения между этой группой и задачей ПланФикса")
    assert "/lang <i>ru</i> или <i>en</i>" in ru_help
    assert en_help.startswith("I carry messages between this group and a Planfix task")
    assert ru_status.startswith("🔗 Эта группа привязана к задаче ПланФикса")
    assert en_status.startswith("🔗 This group is bound to Planfix task")

    # A refusal in each group's language (here: /unbind by someone who is not an admin).
    for chat in (russian, english):
        fake_telegram.add_group_message(
            chat, "/unbind", user_id=MEMBER_ID, first_name="Oleg", username="oleg"
        )
    assert said(fake_telegram, russian, 4, "refusal")[3] == (
        "⚠️ Не удалось отвязать: отвязать группу могут только её администраторы, извините."
    )
    assert said(fake_telegram, english, 4, "refusal")[3] == (
        "⚠️ Could not unbind: only the group&#x27;s admins can unbind it, sorry."
    )


def test_lang_switches_a_group_and_what_follows_is_in_the_language_chosen(
    bridge: Bridge, fake_telegram: FakeTelegram, fake_planfix: FakePlanfix, unique_chat_id: int
) -> None:
    # Bound by someone whose Telegram says no language: the bridge's default, Russian.
    number = bind(fake_telegram, fake_planfix, bridge, unique_chat_id, "Переезд офиса", None)
    assert texts_sent(fake_telegram, unique_chat_id)[0].startswith("✅ Создана задача ПланФикса")

    refused = answer_to(
        fake_telegram, unique_chat_id, "/lang en", nth=2, what="refusal", user_id=MEMBER_ID, first_name="Oleg"
    )
    assert (
        refused == "⚠️ Не удалось сменить язык: сменить язык группы могут только её администраторы, извините."
    )

    assert (
        answer_to(fake_telegram, unique_chat_id, "/lang EN", nth=3, what="confirmation")
        == "🌐 From now on I speak English in this group."
    )
    [chosen] = [
        e
        for e in bridge.events("binding.>")
        if isinstance(e, GroupLanguageChosen) and e.chat_id == unique_chat_id
    ]
    assert (chosen.language, chosen.chosen_by and chosen.chosen_by.id) == ("en", ADMIN_ID)

    assert answer_to(fake_telegram, unique_chat_id, "/status", nth=4, what="status").startswith(
        "🔗 This group is bound to Planfix task"
    )
    assert answer_to(fake_telegram, unique_chat_id, "/lang fr", nth=5, what="refusal") == (
        "⚠️ Could not change the language: the bridge speaks ru, en: write /lang ru or /lang en."
    )

    # The unbind notice in the task follows the group's new language, and so does the group's answer.
    assert answer_to(fake_telegram, unique_chat_id, "/unbind", nth=6, what="unbind confirmation").startswith(
        "🔓 This group is no longer bound to Planfix task"
    )
    eventually(
        lambda: any(
            c.description.startswith("Unbound from Telegram group «Переезд офиса»")
            for c in fake_planfix.comments(number)
        ),
        what="English unbind notice in the task",
    )

    # Back to Russian: the next answer is Russian again.
    assert answer_to(fake_telegram, unique_chat_id, "/lang ru", nth=7, what="confirmation") == (
        "🌐 Теперь я говорю в этой группе на русском языке."
    )
    assert answer_to(fake_telegram, unique_chat_id, "/status", nth=8, what="status").startswith(
        "ℹ️ Эта группа не привязана к задаче ПланФикса."
    )


def test_messages_combined_into_one_comment_are_counted_with_russian_plurals(
    bridge: Bridge, fake_telegram: FakeTelegram, fake_planfix: FakePlanfix, unique_chat_id: int
) -> None:
    groups = {unique_chat_id: ("Два сообщения", "ru", 2), unique_chat_id - 1: ("Пять сообщений", "ru", 5),
              unique_chat_id - 2: ("Two messages", "en", 2)}  # fmt: skip
    tasks = {
        chat: bind(fake_telegram, fake_planfix, bridge, chat, title, code)
        for chat, (title, code, _) in groups.items()
    }

    # The relay down while they write: what waits for it is combined into one comment per group.
    bridge.processes["relay"].stop()
    for chat, (_, _, count) in groups.items():
        for index in range(count):
            fake_telegram.add_group_message(
                chat, f"message {index + 1}", user_id=7_716_100, first_name="Anna"
            )
    eventually(
        lambda: len([e for e in bridge.events("telegram.>") if isinstance(e, TelegramMessageReceived)
                     and e.chat_id in groups and e.text.startswith("message ")]) == 9,
        what="the messages stored in the stream",
    )  # fmt: skip
    bridge.processes["relay"].start()

    headers = {}
    for chat, number in tasks.items():
        [comment] = eventually(partial(relayed_comments, fake_planfix, number), timeout_s=30, what="comment")
        headers[chat] = comment.description.split("</p>", 1)[0]
    assert headers == {
        unique_chat_id: "<p><i>2 сообщения из Telegram</i>",
        unique_chat_id - 1: "<p><i>5 сообщений из Telegram</i>",
        unique_chat_id - 2: "<p><i>2 messages from Telegram</i>",
    }
