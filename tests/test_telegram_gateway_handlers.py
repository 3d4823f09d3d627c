"""The gateway's handlers in memory: an update fed through its dispatcher, the Bot API calls it made
recorded, the event it stored kept by a recording publisher. No NATS, no HTTP; milliseconds.

The end-to-end tests (tests/test_telegram_gateway.py) run the same paths through a real process,
NATS and the fake Bot API; these pin each handler's event, subject and message id (the
deduplication key) so a change to a handler is tested at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

import pytest
from aiogram import Bot
from aiogram.methods import GetChatAdministrators, GetChatMember, SendMessage
from aiogram.types import Update, User

from bridge_lib.eventbus import EventPublisher
from contracts import subjects
from contracts.events import (
    AnonymousAdminPosted,
    BindRequested,
    BotMembershipChanged,
    ChatMigrated,
    Event,
    GroupCommand,
    GroupCommandReceived,
    OtherBotCommanded,
    TelegramMessageEdited,
    TelegramMessageReceived,
    TelegramReactionChanged,
    TelegramUser,
    UnbindRequested,
    event_id_for,
    telegram_bind_key,
    telegram_command_key,
    telegram_membership_key,
    telegram_message_key,
    telegram_migration_key,
    telegram_other_bot_key,
    telegram_unbind_key,
    telegram_update_key,
)
from services.telegram_gateway.app import build_dispatcher
from services.telegram_gateway.polling import handle_update
from tests.in_memory import Published, RecordingPublisher, RecordingSession, recording_bot

CHAT = -1001234500001
ME = User(
    id=7000001, is_bot=True, first_name="Bridge", username="bridge_bot", can_read_all_group_messages=True
)
ANN = {"id": 501, "is_bot": False, "first_name": "Ann", "last_name": "Lee", "username": "ann"}
GROUP = {"id": CHAT, "type": "supergroup", "title": "Team"}
DATE = 1_700_000_000
# What ChatMemberAdministrator requires besides its user.
ADMIN_RIGHTS: dict[str, Any] = {
    "can_be_edited": False, "is_anonymous": False, "can_manage_chat": True, "can_delete_messages": True,
    "can_manage_video_chats": False, "can_restrict_members": False, "can_promote_members": False,
    "can_change_info": False, "can_invite_users": False, "can_post_stories": False,
    "can_edit_stories": False, "can_delete_stories": False, "can_send_welcome_messages": False,
}  # fmt: skip


@dataclass
class Gateway:
    bot: Bot
    session: RecordingSession
    publisher: RecordingPublisher

    async def feed(self, raw: dict[str, Any]) -> list[Published]:
        """Handle one update as polling and the webhook do; what it stored."""
        before = len(self.publisher.published)
        dispatcher = build_dispatcher(cast(EventPublisher, self.publisher), ME)
        update = Update.model_validate(raw, context={"bot": self.bot})
        await handle_update(self.bot, dispatcher, update)
        return self.publisher.published[before:]


@pytest.fixture
def gateway() -> Gateway:
    bot, session = recording_bot(ME)
    return Gateway(bot, session, RecordingPublisher())


def message(update_id: int, message_id: int, text: str | None = "hello", **fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"message_id": message_id, "date": DATE, "chat": GROUP, "from": ANN}
    if text is not None:
        body["text"] = text
    if text is not None and text.startswith("/"):
        command = text.split()[0]
        body["entities"] = [{"type": "bot_command", "offset": 0, "length": len(command)}]
    body.update(fields)
    return {"update_id": update_id, "message": body}


def only(stored: list[Published], event_type: type[Event]) -> Published:
    assert [type(each.event) for each in stored] == [event_type]
    return stored[0]


def admin_answer(session: RecordingSession, *, admin: bool) -> None:
    status = {"status": "creator", "is_anonymous": False} if admin else {"status": "member"}
    session.answer(GetChatMember, {**status, "user": ANN})


async def test_a_group_text_is_stored_as_a_message_event_without_a_bot_api_call(gateway: Gateway) -> None:
    stored = await gateway.feed(message(900, 41, "Hello, Planfix"))

    published = only(stored, TelegramMessageReceived)
    event = cast(TelegramMessageReceived, published.event)
    assert published.subject == subjects.telegram_message_received(CHAT)
    assert published.msg_id == telegram_message_key(CHAT, 41)
    assert event.event_id == event_id_for(telegram_message_key(CHAT, 41))
    assert event.causation_id == "tg:update:900"
    assert (event.text, event.chat_title, event.update_id) == ("Hello, Planfix", "Team", 900)
    assert event.sender == TelegramUser(id=501, full_name="Ann Lee", username="ann")
    assert gateway.session.calls == []


async def test_the_same_update_twice_is_one_stored_event(gateway: Gateway) -> None:
    await gateway.feed(message(901, 42))
    await gateway.feed(message(901, 42))

    assert len(gateway.publisher.published) == 2
    assert len(gateway.publisher.stored) == 1


async def test_an_edit_and_a_reaction_are_keyed_by_their_update(gateway: Gateway) -> None:
    edit = message(902, 43, "fixed typo", edit_date=DATE + 60)
    edited = only(
        await gateway.feed({"update_id": 902, "edited_message": edit["message"]}), TelegramMessageEdited
    )
    reaction = {
        "update_id": 903,
        "message_reaction": {
            "chat": GROUP,
            "message_id": 43,
            "user": ANN,
            "date": DATE + 90,
            "old_reaction": [],
            "new_reaction": [{"type": "emoji", "emoji": "👍"}],
        },
    }
    reacted = only(await gateway.feed(reaction), TelegramReactionChanged)

    assert (edited.subject, edited.msg_id) == (
        subjects.telegram_message_edited(CHAT),
        telegram_update_key("edit", CHAT, 902),
    )
    assert cast(TelegramMessageEdited, edited.event).text == "fixed typo"
    assert (reacted.subject, reacted.msg_id) == (
        subjects.telegram_message_reacted(CHAT),
        telegram_update_key("reaction", CHAT, 903),
    )
    assert [r.emoji for r in cast(TelegramReactionChanged, reacted.event).reactions] == ["👍"]


@pytest.mark.parametrize(("admin", "answered"), [(True, True), (False, False)])
async def test_task_asks_telegram_whether_the_sender_is_an_admin(
    gateway: Gateway, admin: bool, answered: bool
) -> None:
    admin_answer(gateway.session, admin=admin)

    published = only(await gateway.feed(message(904, 44, "/task 4821")), BindRequested)

    event = cast(BindRequested, published.event)
    assert (published.subject, published.msg_id) == (
        subjects.telegram_bind_requested(CHAT),
        telegram_bind_key(CHAT, 44),
    )
    assert (event.task_number, event.task_title, event.requester_is_admin) == (4821, None, answered)
    [asked] = gateway.session.calls_of(GetChatMember)
    assert (asked.chat_id, asked.user_id) == (CHAT, 501)


async def test_task_carries_an_unknown_admin_status_when_telegram_cannot_say(gateway: Gateway) -> None:
    gateway.session.answer(GetChatMember, error_code=400, description="Bad Request: chat not found")

    published = only(await gateway.feed(message(905, 45, "/task New website")), BindRequested)

    event = cast(BindRequested, published.event)
    assert (event.task_title, event.requester_is_admin) == ("New website", None)


async def test_unbind_goes_on_the_subject_of_task_so_the_binder_sees_them_in_order(gateway: Gateway) -> None:
    admin_answer(gateway.session, admin=True)

    published = only(await gateway.feed(message(906, 46, "/unbind")), UnbindRequested)

    assert (published.subject, published.msg_id) == (
        subjects.telegram_bind_requested(CHAT),
        telegram_unbind_key(CHAT, 46),
    )


async def test_status_names_the_admin_bots_of_the_group(gateway: Gateway) -> None:
    other = {"id": 9001, "is_bot": True, "first_name": "Planfix", "username": "PlanfixBot"}
    gateway.session.answer(
        GetChatAdministrators,
        [
            {"status": "creator", "is_anonymous": False, "user": ANN},
            {"status": "administrator", "user": other, **ADMIN_RIGHTS},
            {"status": "administrator", "user": ME.model_dump(exclude_none=True), **ADMIN_RIGHTS},
        ],
    )

    published = only(await gateway.feed(message(907, 47, "/status")), GroupCommandReceived)

    event = cast(GroupCommandReceived, published.event)
    assert (published.subject, published.msg_id) == (
        subjects.telegram_group_command(CHAT),
        telegram_command_key(CHAT, 47),
    )
    assert (event.command, event.other_bots, event.bot_username) == (
        GroupCommand.STATUS,
        ["PlanfixBot"],
        "bridge_bot",
    )
    assert event.bot_reads_all_messages is True


async def test_help_asks_telegram_nothing(gateway: Gateway) -> None:
    published = only(await gateway.feed(message(908, 48, "/help")), GroupCommandReceived)

    assert cast(GroupCommandReceived, published.event).command is GroupCommand.HELP
    assert gateway.session.calls == []


async def test_task_for_another_bot_is_a_message_and_a_trace_of_that_bot(gateway: Gateway) -> None:
    stored = await gateway.feed(message(909, 49, "/task@PlanfixBot 12"))

    assert [type(each.event) for each in stored] == [TelegramMessageReceived, OtherBotCommanded]
    commanded = stored[1]
    assert (commanded.subject, commanded.msg_id) == (
        subjects.telegram_other_bot_commanded(CHAT),
        telegram_other_bot_key(CHAT, 49),
    )
    assert cast(OtherBotCommanded, commanded.event).bot_username == "PlanfixBot"
    assert gateway.session.calls == []


@pytest.mark.parametrize(
    ("old", "new", "is_member"), [("left", "member", True), ("administrator", "kicked", False)]
)
async def test_the_bot_joining_or_leaving_is_a_membership_change(
    gateway: Gateway, old: str, new: str, is_member: bool
) -> None:
    me = ME.model_dump(exclude_none=True)
    member: dict[str, dict[str, Any]] = {
        "member": {"status": "member"},
        "left": {"status": "left"},
        "kicked": {"status": "kicked", "until_date": 0},
        "administrator": {"status": "administrator", **ADMIN_RIGHTS},
    }
    raw = {
        "update_id": 910,
        "my_chat_member": {
            "chat": GROUP,
            "from": ANN,
            "date": DATE,
            "old_chat_member": {**member[old], "user": me},
            "new_chat_member": {**member[new], "user": me},
        },
    }

    published = only(await gateway.feed(raw), BotMembershipChanged)

    assert (published.subject, published.msg_id) == (
        subjects.telegram_bot_membership_changed(CHAT),
        telegram_membership_key(CHAT, 910),
    )
    event = cast(BotMembershipChanged, published.event)
    assert (event.is_member, event.status) == (is_member, new)
    assert event.changed_by == TelegramUser(id=501, full_name="Ann Lee", username="ann")


async def test_both_service_messages_of_an_upgrade_are_one_migration(gateway: Gateway) -> None:
    old_chat, new_chat = -4001, CHAT
    in_old = message(
        911, 50, None, chat={"id": old_chat, "type": "group", "title": "Team"}, migrate_to_chat_id=new_chat
    )
    in_new = message(912, 1, None, migrate_from_chat_id=old_chat)

    first = only(await gateway.feed(in_old), ChatMigrated)
    second = only(await gateway.feed(in_new), ChatMigrated)

    assert first.msg_id == second.msg_id == telegram_migration_key(old_chat, new_chat)
    assert first.subject == subjects.telegram_group_migrated(new_chat)
    assert len(gateway.publisher.stored) == 1


async def test_an_anonymous_admin_message_is_stored_as_such_and_nothing_else(gateway: Gateway) -> None:
    raw = message(913, 51, "from the group itself", sender_chat=GROUP)

    published = only(await gateway.feed(raw), AnonymousAdminPosted)

    assert (published.subject, published.msg_id) == (
        subjects.telegram_anonymous_admin_posted(CHAT),
        f"{telegram_message_key(CHAT, 51)}:anonymous",
    )


async def test_private_messages_and_service_messages_store_nothing(gateway: Gateway) -> None:
    private_chat = {"id": 501, "type": "private", "first_name": "Ann"}
    private = message(914, 52, "hi bot", chat=private_chat)
    pinned = message(
        915, 53, None, pinned_message={"message_id": 41, "date": DATE, "chat": GROUP, "text": "x"}
    )
    gateway.session.answer(SendMessage, {"message_id": 1, "date": DATE, "chat": private_chat, "text": "help"})

    assert await gateway.feed(private) == []
    assert await gateway.feed(pinned) == []
    # Answered with the help (how to /link); once an hour per person (tests/test_telegram_gateway.py).
    [answer] = gateway.session.calls_of(SendMessage)
    assert "/link" in answer.text


async def test_a_publish_that_fails_raises_so_the_update_stays_unconfirmed() -> None:
    bot, session = recording_bot(ME)
    failing = Gateway(bot, session, RecordingPublisher(failing=True))

    with pytest.raises(ConnectionError):
        await failing.feed(message(916, 54))
