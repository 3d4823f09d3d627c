"""What happens to a group as a whole, as events: the bot added or removed, the group upgraded
to a supergroup, a message sent by an anonymous admin.

* ``my_chat_member`` -> ``BotMembershipChanged`` when the bot joins or leaves (a promotion to
  admin is not a change of membership); the binder suspends or resumes the group's binding,
  the relay greets a group that has none.
* a service message with ``migrate_to_chat_id`` (in the old group) or ``migrate_from_chat_id``
  (in the new supergroup) -> one ``ChatMigrated`` (both give the same key); the binder moves
  the binding to the new id.
* a message sent as the group itself (``sender_chat`` is the chat: an admin with "Remain
  anonymous" on) cannot be attributed, so it is not relayed: ``AnonymousAdminPosted``, and the
  relay tells the group how to fix it (again after a quiet day). When it was one of the bot's
  commands (``/task``, ``/unbind``, ``/status``, ``/help``) the event names it, and the relay
  answers it with what to do: this router sees such a message before the commands router.
"""

from __future__ import annotations

import contextlib
import html

import msgspec
import structlog
from aiogram import Bot, Router
from aiogram.enums import ChatMemberStatus
from aiogram.exceptions import TelegramAPIError
from aiogram.types import ChatMemberUpdated, Message, Update
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeout

from bridge_lib.i18n import DEFAULT_LANGUAGE, N_, Translator, language_or_default, translator
from contracts import subjects
from contracts.events import (
    AdmitGroup,
    AnonymousAdminPosted,
    BotMembershipChanged,
    ChatMigrated,
    GroupAdmissionDecided,
    TelegramUser,
    telegram_membership_key,
    telegram_message_key,
    telegram_migration_key,
)
from services.telegram_gateway import content, filters
from services.telegram_gateway.commands import BotProfile, our_command
from services.telegram_gateway.record import Record, envelope

log = structlog.get_logger("telegram_gateway.group_life")

_PRESENT = {ChatMemberStatus.CREATOR, ChatMemberStatus.ADMINISTRATOR, ChatMemberStatus.MEMBER}


def _is_member(member: object) -> bool:
    status = getattr(member, "status", None)
    # A restricted bot is still in the group when its is_member says so.
    return status in _PRESENT or (
        status == ChatMemberStatus.RESTRICTED and bool(getattr(member, "is_member", False))
    )


async def on_bot_membership(
    update: ChatMemberUpdated,
    event_update: Update,
    record: Record,
    bot: Bot,
    admit_group: AdmitAsker | None = None,
    default_language: str = DEFAULT_LANGUAGE,
) -> None:
    was, now = _is_member(update.old_chat_member), _is_member(update.new_chat_member)
    if was == now:
        log.info(
            "bot_member_status_changed", chat_id=update.chat.id, status=str(update.new_chat_member.status)
        )
        return
    key = telegram_membership_key(update.chat.id, event_update.update_id)
    changed_by = content.user_of(update.from_user) if update.from_user else None
    refusal = None
    if now and admit_group is not None:
        refusal = await admit_group.refusal(update.chat.id, changed_by, key=key, update=event_update)
    event = BotMembershipChanged(
        **envelope(event_update, key),
        chat_id=update.chat.id,
        status=str(update.new_chat_member.status),
        is_member=now,
        chat_title=update.chat.title,
        changed_by=changed_by,
        left_unknown_group=refusal is not None,
    )
    await record(
        event, subject=subjects.telegram_bot_membership_changed(update.chat.id), key=key, is_member=now
    )
    if refusal is not None:
        # The group has no language yet: the one of whoever added the bot, else the default.
        language = language_or_default(
            update.from_user.language_code if update.from_user else None, default_language
        )
        await _leave(bot, update.chat.id, refusal, changed_by, translator(language))


async def _leave(bot: Bot, chat_id: int, why: str, added_by: TelegramUser | None, t: Translator) -> None:
    """Say why, once, and leave (the explanation is best effort: leaving is what matters)."""
    with contextlib.suppress(TelegramAPIError):
        await bot.send_message(chat_id, unknown_group_text(why, added_by, (await bot.me()).username, t))
    try:
        await bot.leave_chat(chat_id)
        log.info("unknown_group_left", chat_id=chat_id, why=why)
    except TelegramAPIError as error:
        log.warning("unknown_group_not_left", chat_id=chat_id, error=type(error).__name__)


UNKNOWN_GROUP = {
    "not_linked": N_("{who} is not linked to a Planfix employee"),
    "not_an_employee": N_("{who} is a Planfix contact, not an employee"),
    "chat_not_allowed": N_("this group is not on the bridge's list of groups"),
}
ANY_OTHER_REASON = N_("this group may not use the bridge")


def unknown_group_text(
    why: str, added_by: TelegramUser | None, bot_username: str | None, t: Translator | None = None
) -> str:
    texts = t or translator()
    who = html.escape(added_by.full_name) if added_by else texts.gettext("The person who added me")
    reason = texts.gettext(UNKNOWN_GROUP.get(why, ANY_OTHER_REASON)).format(who=who)
    link = f" (https://t.me/{bot_username}?start=link)" if bot_username else ""
    return texts.gettext(
        "👋 I carry messages between Telegram groups and Planfix tasks, for groups added by linked "
        "Planfix employees, and {reason}. Leaving. To add me: link your Telegram first with /link "
        "in a private chat with me{link}, then add me again."
    ).format(reason=reason, link=link)


class AdmitAsker:
    """Asks the binder whether the bot may stay in a group (``TELEGRAM_LEAVE_UNKNOWN_GROUPS``)."""

    def __init__(self, connection: object, *, timeout_s: float = 10.0) -> None:
        self._nc = connection
        self._timeout_s = timeout_s

    async def refusal(
        self, chat_id: int, added_by: TelegramUser | None, *, key: str, update: Update
    ) -> str | None:
        """Why the bot must leave; None to stay (also when the binder does not answer: binding
        stays guarded by the bind policy)."""
        command = AdmitGroup(**envelope(update, f"{key}:admit"), chat_id=chat_id, added_by=added_by)
        try:
            reply = await self._nc.request(  # type: ignore[attr-defined]
                subjects.BINDER_ADMIT_GROUP, msgspec.json.encode(command), timeout=self._timeout_s
            )
            decided = msgspec.json.decode(reply.data, type=GroupAdmissionDecided)
        except (NatsTimeout, NoRespondersError, msgspec.DecodeError, msgspec.ValidationError) as error:
            log.warning("binder_did_not_decide_admission", chat_id=chat_id, error=type(error).__name__)
            return None
        return None if decided.admitted else decided.why


async def on_migration(message: Message, event_update: Update, record: Record) -> None:
    if message.migrate_to_chat_id is not None:
        old_chat_id, new_chat_id = message.chat.id, message.migrate_to_chat_id
    else:
        assert message.migrate_from_chat_id is not None  # filters.is_migration: one of the two is set
        old_chat_id, new_chat_id = message.migrate_from_chat_id, message.chat.id
    key = telegram_migration_key(old_chat_id, new_chat_id)
    event = ChatMigrated(**envelope(event_update, key), old_chat_id=old_chat_id, chat_id=new_chat_id)
    await record(
        event, subject=subjects.telegram_group_migrated(new_chat_id), key=key, old_chat_id=old_chat_id
    )


async def on_anonymous_admin(
    message: Message, event_update: Update, record: Record, bot_profile: BotProfile
) -> None:
    key = f"{telegram_message_key(message.chat.id, message.message_id)}:anonymous"
    event = AnonymousAdminPosted(
        **envelope(event_update, key),
        chat_id=message.chat.id,
        message_id=message.message_id,
        thread_id=content.thread_of(message),
        command=our_command(message.text, bot_profile.username),
    )
    await record(event, subject=subjects.telegram_anonymous_admin_posted(message.chat.id), key=key)


def build_group_life_router() -> Router:
    router = Router(name="telegram_gateway.group_life")
    router.my_chat_member.register(on_bot_membership, filters.in_group_chat)
    router.message.register(on_migration, filters.in_group_chat, filters.is_migration)
    router.message.register(on_anonymous_admin, filters.in_group_chat, filters.sent_as_the_group)
    return router
