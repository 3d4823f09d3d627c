"""The fake Bot API keeps Telegram's promises: what the real aiogram client gets from it is what
Telegram would answer (limits, 429 with retry_after, migration, kicked, webhook delivery).

Each test starts its own fake (the session's one is shared by the service tests) and drives it
with a real ``aiogram.Bot`` on the test loop.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

import httpx
import pytest
from aiogram import Bot
from aiogram.exceptions import (
    TelegramBadRequest,
    TelegramConflictError,
    TelegramEntityTooLarge,
    TelegramForbiddenError,
    TelegramMigrateToChat,
    TelegramRetryAfter,
)
from aiogram.types import (
    BotCommand,
    BotCommandScopeAllGroupChats,
    BufferedInputFile,
    InputMediaDocument,
    InputMediaPhoto,
)
from aiohttp import web

from bridge_lib.telegram import make_bot
from devtools import devstack
from sandbox.fake_telegram import FakeTelegram
from sandbox.fake_telegram_media import BotAPIError, check_media_group
from tests.conftest import BOT_TOKEN
from tests.support import LoopThread, eventually, serving

T = TypeVar("T")
GROUP = -1005550000001


@pytest.fixture
def fake(loop: LoopThread) -> Iterator[FakeTelegram]:
    with serving(loop, FakeTelegram(token=BOT_TOKEN, group_pace=(3, 60.0))) as fake:
        yield fake


@pytest.fixture
def with_bot(loop: LoopThread, fake: FakeTelegram) -> Iterator[Callable[[Callable[[Bot], Awaitable[T]]], T]]:
    """Run ``action(bot)`` on the loop with one real aiogram Bot for the whole test."""
    bot = make_bot(BOT_TOKEN, api_base_url=fake.base_url)

    def run(action: Callable[[Bot], Awaitable[T]]) -> T:
        return loop.run(action(bot))

    try:
        yield run
    finally:
        loop.run(bot.session.close())


def file(name: str, size: int = 100) -> BufferedInputFile:
    return BufferedInputFile(b"x" * size, filename=name)


def test_texts_and_captions_are_limited_after_parsing(with_bot: Any, fake: FakeTelegram) -> None:
    fake.set_group_pace(None)
    with_bot(lambda bot: bot.send_message(GROUP, "<b>" + "a" * 4096 + "</b>"))
    with_bot(lambda bot: bot.send_photo(GROUP, file("p.jpg"), caption="&lt;" * 1024))

    with pytest.raises(TelegramBadRequest, match="message is too long"):
        with_bot(lambda bot: bot.send_message(GROUP, "😀" * 2049))
    with pytest.raises(TelegramBadRequest, match="caption is too long"):
        with_bot(lambda bot: bot.send_document(GROUP, file("d.pdf"), caption="c" * 1025))
    with pytest.raises(TelegramBadRequest, match="Unsupported start tag"):
        with_bot(lambda bot: bot.send_message(GROUP, "<p>no</p>"))

    [text, photo] = fake.chat_messages(GROUP)
    assert (text["type"], len(text["text"])) == ("text", 4096)
    assert (photo["type"], photo["file_name"], photo["text"]) == ("photo", "p.jpg", "<" * 1024)


def test_files_go_by_kind_and_a_media_group_takes_2_to_10_of_one_family(
    with_bot: Any, fake: FakeTelegram
) -> None:
    fake.set_group_pace(None)
    sent = with_bot(
        lambda bot: bot.send_media_group(
            GROUP,
            [
                InputMediaPhoto(media=file("a.jpg"), caption="<b>album</b>"),
                InputMediaPhoto(media=file("b.png")),
            ],
        )
    )
    with_bot(lambda bot: bot.send_audio(GROUP, file("song.mp3")))
    with_bot(lambda bot: bot.send_video(GROUP, file("clip.mp4")))

    assert [m.photo is not None for m in sent] == [True, True]
    assert sent[0].media_group_id == sent[1].media_group_id
    with pytest.raises(TelegramBadRequest, match="wrong number of media"):
        with_bot(lambda bot: bot.send_media_group(GROUP, [InputMediaPhoto(media=file("a.jpg"))]))
    with pytest.raises(TelegramBadRequest, match="grouped only"):
        with_bot(
            lambda bot: bot.send_media_group(
                GROUP, [InputMediaPhoto(media=file("a.jpg")), InputMediaDocument(media=file("d.pdf"))]
            )
        )
    with pytest.raises(TelegramEntityTooLarge):
        with_bot(lambda bot: bot.send_photo(GROUP, file("huge.jpg", 10 * 1024 * 1024 + 1)))
    kinds = [(m["type"], m["file_name"], m["text"]) for m in fake.chat_messages(GROUP)]
    assert kinds == [
        ("photo", "a.jpg", "album"),
        ("photo", "b.png", ""),
        ("audio", "song.mp3", ""),
        ("video", "clip.mp4", ""),
    ]


def test_send_voice_shows_ogg_as_a_voice_message_and_another_format_as_a_document(
    with_bot: Any, fake: FakeTelegram
) -> None:
    fake.set_group_pace(None)
    voice = with_bot(lambda bot: bot.send_voice(GROUP, file("note.ogg"), caption="<i>listen</i>"))
    other = with_bot(lambda bot: bot.send_voice(GROUP, file("note.wav")))

    assert voice.voice is not None
    assert (voice.voice.mime_type, voice.document, voice.caption) == ("audio/ogg", None, "listen")
    assert (other.voice, other.document is not None) == (None, True)
    # aiogram has no InputMediaVoice to put in a media group; the fake refuses one all the same.
    with pytest.raises(BotAPIError, match="unsupported media type"):
        check_media_group([{"type": "voice", "media": "attach://a"}, {"type": "document", "media": "x"}])
    kinds = [(m["type"], m["file_name"]) for m in fake.chat_messages(GROUP)]
    assert kinds == [("voice", "note.ogg"), ("document", "note.wav")]


def test_the_group_pace_is_enforced_with_retry_after(with_bot: Any, fake: FakeTelegram) -> None:
    for n in range(3):
        with_bot(lambda bot, n=n: bot.send_message(GROUP, f"message {n}"))

    with pytest.raises(TelegramRetryAfter) as refused:
        with_bot(lambda bot: bot.send_message(GROUP, "one too many"))

    assert 1 <= refused.value.retry_after <= 60
    assert fake.flood_refusals(GROUP) == 1
    assert [c.error_code for c in fake.calls if c.method == "sendMessage"] == [None, None, None, 429]
    # Private chats and other groups have their own allowance.
    with_bot(lambda bot: bot.send_message(GROUP - 1, "another group"))


def test_edits_and_deletes_act_on_the_bots_own_messages(with_bot: Any, fake: FakeTelegram) -> None:
    message = with_bot(lambda bot: bot.send_message(GROUP, "first"))

    with_bot(lambda bot: bot.edit_message_text("<i>second</i>", chat_id=GROUP, message_id=message.message_id))
    with pytest.raises(TelegramBadRequest, match="not modified"):
        with_bot(
            lambda bot: bot.edit_message_text("<i>second</i>", chat_id=GROUP, message_id=message.message_id)
        )
    [edited] = fake.chat_messages(GROUP)
    assert (edited["text"], edited["edited"]) == ("second", True)

    assert with_bot(lambda bot: bot.delete_message(GROUP, message.message_id)) is True
    with pytest.raises(TelegramBadRequest, match="message to delete not found"):
        with_bot(lambda bot: bot.delete_message(GROUP, message.message_id))
    assert fake.chat_messages(GROUP) == []


def test_an_upgraded_group_answers_with_its_new_id_and_a_left_group_with_403(
    with_bot: Any, fake: FakeTelegram
) -> None:
    old_group = -5550000002
    new_group = fake.migrate_to_supergroup(old_group)

    with pytest.raises(TelegramMigrateToChat) as moved:
        with_bot(lambda bot: bot.send_message(old_group, "hello?"))
    assert moved.value.migrate_to_chat_id == new_group == -1005550000002
    with_bot(lambda bot: bot.send_message(new_group, "hello!"))

    fake.set_bot_membership(new_group, "kicked")
    with pytest.raises(TelegramForbiddenError, match="kicked"):
        with_bot(lambda bot: bot.send_message(new_group, "still there?"))


def test_chat_members_and_commands(with_bot: Any, fake: FakeTelegram) -> None:
    fake.set_member_status(GROUP, 42, "administrator")

    admin = with_bot(lambda bot: bot.get_chat_member(GROUP, 42))
    member = with_bot(lambda bot: bot.get_chat_member(GROUP, 43))
    with_bot(
        lambda bot: bot.set_my_commands(
            [BotCommand(command="status", description="Which task this group is bound to")],
            scope=BotCommandScopeAllGroupChats(),
        )
    )

    assert (admin.status, member.status) == ("administrator", "member")
    commands, scope = fake.commands
    assert commands == [{"command": "status", "description": "Which task this group is bound to"}]
    assert scope == {"type": "all_group_chats"}


def test_commands_are_kept_per_language_code_as_the_bot_api_does(with_bot: Any, fake: FakeTelegram) -> None:
    everyone = [BotCommand(command="help", description="What this bot does")]
    russian = [BotCommand(command="help", description="Что умеет бот")]
    with_bot(lambda bot: bot.set_my_commands(everyone, scope=BotCommandScopeAllGroupChats()))
    with_bot(
        lambda bot: bot.set_my_commands(russian, scope=BotCommandScopeAllGroupChats(), language_code="ru")
    )

    asked_ru = with_bot(
        lambda bot: bot.get_my_commands(scope=BotCommandScopeAllGroupChats(), language_code="ru")
    )
    asked_de = with_bot(
        lambda bot: bot.get_my_commands(scope=BotCommandScopeAllGroupChats(), language_code="de")
    )
    assert [c.description for c in asked_ru] == ["Что умеет бот"]
    assert asked_de == []  # getMyCommands answers for exactly that language
    assert fake.commands_shown_to("ru-RU") == [{"command": "help", "description": "Что умеет бот"}]
    assert fake.commands_shown_to("de") == [{"command": "help", "description": "What this bot does"}]
    with pytest.raises(TelegramBadRequest, match="LANG_CODE_INVALID"):
        with_bot(lambda bot: bot.set_my_commands(everyone, language_code="russian"))


def test_with_a_webhook_set_updates_are_posted_with_the_secret_until_answered_200(
    with_bot: Any, fake: FakeTelegram, loop: LoopThread
) -> None:
    received: list[tuple[str | None, dict[str, Any]]] = []
    answers = [500, 200, 200]

    async def endpoint(request: web.Request) -> web.Response:
        received.append((request.headers.get("X-Telegram-Bot-Api-Secret-Token"), await request.json()))
        return web.Response(status=answers.pop(0) if answers else 200)

    port = devstack.free_port()

    async def serve() -> web.AppRunner:
        app = web.Application()
        app.router.add_post("/hook", endpoint)
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        return runner

    runner = loop.run(serve())
    try:
        with_bot(
            lambda bot: bot.set_webhook(
                f"http://127.0.0.1:{port}/hook", secret_token="s3cret_token-1", allowed_updates=["message"]
            )
        )
        first = fake.add_group_message(GROUP, "one")
        second = fake.add_group_message(GROUP, "two")

        eventually(lambda: len(received) == 3, what="three deliveries (one retried)")
        with pytest.raises(TelegramConflictError):
            with_bot(lambda bot: bot.get_updates())
    finally:
        loop.run(runner.cleanup())

    assert [secret for secret, _ in received] == ["s3cret_token-1"] * 3
    assert [update["update_id"] for _, update in received] == [
        first["update_id"],
        first["update_id"],
        second["update_id"],
    ]
    assert fake.webhook["allowed_updates"] == ["message"]


def test_webhook_info_tells_the_address_whoever_set_it_and_the_last_delivery_error(
    with_bot: Any, fake: FakeTelegram
) -> None:
    assert with_bot(lambda bot: bot.get_webhook_info()).url == ""

    # Another program (Planfix's own integration, say) set the webhook for this token.
    with_bot(lambda bot: bot.set_webhook(f"http://127.0.0.1:{devstack.free_port()}/elsewhere"))
    fake.add_group_message(GROUP, "nobody listens there")
    info = eventually(
        lambda: (i := with_bot(lambda bot: bot.get_webhook_info())).last_error_message and i,
        what="a failed delivery reported",
    )
    assert info.url.endswith("/elsewhere")
    assert info.pending_update_count == 1
    assert info.last_error_date is not None

    # An empty URL removes it, as deleteWebhook does (sent as JSON: aiogram leaves empty fields out).
    answer = httpx.post(f"{fake.base_url}/bot{BOT_TOKEN}/setWebhook", json={"url": ""}, timeout=10)
    assert answer.json() == {"ok": True, "result": True}
    assert with_bot(lambda bot: bot.get_webhook_info()).url == ""
    with_bot(lambda bot: bot.set_webhook("http://127.0.0.1:1/again"))
    with_bot(lambda bot: bot.delete_webhook())
    cleared = with_bot(lambda bot: bot.get_webhook_info())
    assert (cleared.url, cleared.last_error_message) == ("", None)


def test_other_bots_are_listed_among_the_admins_only_when_asked_for(
    with_bot: Any, fake: FakeTelegram
) -> None:
    fake.set_member_status(GROUP, 501, "creator")
    planfix_bot = fake.add_other_bot(GROUP, "planfix_bot")
    fake.add_other_bot(GROUP, "quiet_bot", status="member")

    default = with_bot(lambda bot: bot.get_chat_administrators(GROUP))
    with_bots = with_bot(lambda bot: bot.get_chat_administrators(GROUP, return_bots=True))

    assert [m.user.id for m in default] == [501]
    assert [(m.user.username, m.user.is_bot, m.status) for m in with_bots if m.user.is_bot] == [
        ("planfix_bot", True, "administrator")
    ]
    member = with_bot(lambda bot: bot.get_chat_member(GROUP, planfix_bot["id"]))
    assert member.user.is_bot
    with pytest.raises(TelegramBadRequest, match="no administrators in the private chat"):
        with_bot(lambda bot: bot.get_chat_administrators(501))
