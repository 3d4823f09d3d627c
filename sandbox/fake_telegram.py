"""A fake Telegram Bot API server that the real aiogram ``Bot`` talks to over HTTP.

Point the bot at it with ``TelegramAPIServer.from_base(fake.base_url)``. It answers
``GET|POST /bot<token>/<method>`` the way the Bot API does: params as a query string, JSON,
form-urlencoded or multipart (aiogram 3 sends form-urlencoded, or multipart when a file goes
along, every value a string and nested objects as JSON text); answers ``{"ok": true, "result":
...}`` or ``{"ok": false, "error_code": N, "description": ...}`` with the same HTTP status.

The server runs on one event loop (the tests' background loop) while tests drive and observe it
from their own thread, so every public method takes ``_lock`` and wakes long polls through
``loop.call_soon_threadsafe``.

Files: ``add_file`` stores bytes under a new ``file_id``; ``getFile`` answers a ``File`` with a
``file_path`` served at ``/file/bot<token>/<file_path>``, or, over the Bot API's 20 MB download
limit, ``400 Bad Request: file is too big`` as Telegram does (a file may *declare* a bigger size
than its bytes, so tests need not allocate 20 MB).

Deliberate differences from Telegram: any chat id is accepted (positive = private chat,
``-100...`` = supergroup, other negative = group), and ``offset`` confirms only updates that
were delivered at least once, so ``add_update`` of an already confirmed update delivers it once
more (how tests simulate Telegram redelivering an update).

Like Telegram, it refuses what the real API refuses: texts over 4096 and captions over 1024
UTF-16 units after parsing, HTML it cannot parse, oversized uploads and media groups of the
wrong size or mix (``fake_telegram_media``). It enforces the per-group pace (``group_pace``:
at most N new messages in any window of W seconds, 20 per 60 s by default) with a 429 and
``retry_after``; answers a send to a group that became a supergroup with a 400 carrying
``migrate_to_chat_id``, and a send to a group the bot left with a 403. With a webhook set it
POSTs updates there one at a time with ``X-Telegram-Bot-Api-Secret-Token``, and getUpdates
answers 409, as Telegram does; getWebhookInfo tells the address (whoever set it) and the last
delivery error, and deleteWebhook or setWebhook with an empty URL removes it.

Other bots can be put into a group (``add_other_bot``): getChatAdministrators leaves them out
unless asked with ``return_bots``, as Telegram does (the bot itself is always listed when it is
an admin), and, as in Telegram, the bot never receives their messages.
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import json
import math
import re
import socket
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Any

import aiohttp
from aiohttp import web

from bridge_lib.cancel import cancelled
from sandbox.fake_telegram_media import (
    FILE_KINDS,
    MAX_CAPTION_UTF16,
    BotAPIError,
    chat_member,
    check_media_group,
    file_object,
    resolve_file,
    sent_kind,
)

# Fixed ids Telegram uses as ``from`` of messages written on behalf of a chat.
GROUP_ANONYMOUS_BOT = {
    "id": 1087968824,
    "is_bot": True,
    "first_name": "Group",
    "username": "GroupAnonymousBot",
}
CHANNEL_BOT = {"id": 136817688, "is_bot": True, "first_name": "Channel", "username": "Channel_Bot"}

MAX_MESSAGE_UTF16 = 4096
# getFile refuses bigger files: bots can download at most 20 MB through the Bot API.
MAX_DOWNLOAD_BYTES = 20 * 1024 * 1024
MAX_UPDATES_PER_CALL = 100
# Without allowed_updates Telegram sends every update type except these.
NOT_SENT_BY_DEFAULT = frozenset({"chat_member", "message_reaction", "message_reaction_count"})
# Tags Telegram's HTML parse mode knows; anything else is a 400.
HTML_TAGS = frozenset(
    {"b", "strong", "i", "em", "u", "ins", "s", "strike", "del", "span", "tg-spoiler", "a", "code", "pre"}
    | {"blockquote", "tg-emoji", "tg-time"}
)

# Form values all arrive as strings; these say how the Bot API reads them back.
INT_PARAMS = frozenset(
    {"chat_id", "message_thread_id", "offset", "limit", "timeout", "message_id", "reply_to_message_id"}
    | {"from_chat_id", "user_id", "direct_messages_topic_id", "max_connections", "duration"}
)
BOOL_PARAMS = frozenset(
    {"disable_notification", "protect_content", "allow_paid_broadcast", "drop_pending_updates"}
    | {"disable_web_page_preview", "allow_sending_without_reply", "show_caption_above_media"}
    | {"return_bots"}
)
JSON_PARAMS = frozenset(
    {"allowed_updates", "reply_markup", "entities", "caption_entities", "link_preview_options"}
    | {"reply_parameters", "media", "message_ids", "commands", "scope"}
)
_SECRET_TOKEN = re.compile(r"[A-Za-z0-9_-]{1,256}")
_INT_TEXT = re.compile(r"-?\d+")
_COMMAND = re.compile(r"/[A-Za-z0-9_]+(@[A-Za-z0-9_]+)?")


@dataclass(frozen=True)
class RecordedCall:
    method: str
    params: dict[str, Any]
    at: float  # time.time() when the request arrived
    error_code: int | None = None  # None when the call succeeded


@dataclass
class _Failure:
    error_code: int
    description: str
    parameters: dict[str, Any] | None


@dataclass
class _Queued:
    update: dict[str, Any]
    delivered: bool = False


@dataclass(frozen=True)
class _StoredFile:
    file_id: str
    file_unique_id: str
    data: bytes
    size: int  # what Telegram reports (may be more than len(data), see add_file)


@dataclass
class _ChatState:
    chat: dict[str, Any]
    last_message_id: int = 0
    # The bot's own status in the chat: member, administrator, left or kicked.
    bot_status: str = "member"
    # Set once the group became a supergroup: sends to this id then fail with a 400.
    migrated_to: int | None = None
    # Statuses getChatMember answers for people; anyone else is a plain "member".
    members: dict[int, str] = field(default_factory=dict)
    # Other bots in the chat: their user object and status (member, administrator).
    other_bots: dict[int, tuple[dict[str, Any], str]] = field(default_factory=dict)
    # Pinned messages, oldest first (pinChatMessage); the bot's administrator right to pin.
    pinned: list[int] = field(default_factory=list)
    bot_can_pin: bool = True
    # What the bot posted that is still there (message_id -> the message as stored).
    messages: dict[int, dict[str, Any]] = field(default_factory=dict)
    # Arrival times of the bot's new messages, for the per-group pace.
    sent_at: deque[float] = field(default_factory=deque)
    flood_refusals: int = 0


@dataclass
class _State:
    queue: list[_Queued] = field(default_factory=list)
    chats: dict[int, _ChatState] = field(default_factory=dict)
    sent: list[dict[str, Any]] = field(default_factory=list)
    calls: list[RecordedCall] = field(default_factory=list)
    failures: dict[str, list[_Failure]] = field(default_factory=dict)
    allowed_updates: frozenset[str] | None = None  # None: Telegram's default set
    webhook_url: str = ""
    webhook_secret: str = ""
    webhook_max_connections: int = 40
    # (unix time, what went wrong) of the last failed webhook delivery, as getWebhookInfo tells.
    webhook_last_error: tuple[int, str] | None = None
    poll_generation: int = 0
    files: dict[str, _StoredFile] = field(default_factory=dict)
    downloads: list[str] = field(default_factory=list)  # file_ids whose bytes were fetched
    # file_id -> HTTP statuses its next downloads answer, one each (a test's broken file server).
    download_failures: dict[str, list[int]] = field(default_factory=dict)
    commands: list[dict[str, Any]] = field(default_factory=list)
    commands_scope: dict[str, Any] | None = None
    # As Telegram keeps them: one list per scope and language ("" for every language).
    commands_by_scope: dict[tuple[str, str], list[dict[str, Any]]] = field(default_factory=dict)


class FakeTelegram:
    def __init__(
        self,
        *,
        token: str,
        bot_id: int = 7000001,
        bot_username: str = "planfix_bridge_bot",
        can_read_all_group_messages: bool = True,
        group_pace: tuple[int, float] | None = (20, 60.0),
        keep_sent_files: bool = False,
    ) -> None:
        self.token = token
        # Keep the bytes of files the bot sends (the sandbox shows them; tests need not hold them).
        self.keep_sent_files = keep_sent_files
        # (messages, seconds): at most that many new bot messages per group in any such window.
        self.group_pace = group_pace
        self.bot_user: dict[str, Any] = {
            "id": bot_id,
            "is_bot": True,
            "first_name": "Planfix Bridge",
            "username": bot_username,
        }
        self.can_read_all_group_messages = can_read_all_group_messages
        self.base_url = ""
        # (update_id, HTTP status answered; 0 = no answer) for each webhook delivery attempt.
        self.webhook_deliveries: list[tuple[int, int]] = []
        self._lock = threading.Lock()
        self._state = _State()
        self._next_update_id = 1
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._stopping = False
        # Replaced after each wake-up; a long poll waits on the one current when it found nothing.
        self._new_updates = asyncio.Event()
        self._webhook_wake = asyncio.Event()
        self._webhook_worker: asyncio.Task[None] | None = None
        self._http: aiohttp.ClientSession | None = None
        # Chats the bot left by leaveChat, in order.
        self.left_chats: list[int] = []
        self._methods: dict[str, Callable[[dict[str, Any]], Awaitable[Any]]] = {
            "getme": self._get_me,
            "getupdates": self._get_updates,
            "sendmessage": self._send_message,
            "deletewebhook": self._delete_webhook,
            "setwebhook": self._set_webhook,
            "getwebhookinfo": self._get_webhook_info,
            "getchat": self._get_chat,
            "getfile": self._get_file,
            "getchatmember": self._get_chat_member,
            "getchatadministrators": self._get_chat_administrators,
            "setmycommands": self._set_my_commands,
            "getmycommands": self._get_my_commands,
            "editmessagetext": self._edit_message_text,
            "pinchatmessage": self._pin_chat_message,
            "editmessagecaption": self._edit_message_caption,
            "deletemessage": self._delete_message,
            "leavechat": self._leave_chat,
            "sendmediagroup": self._send_media_group,
            **{f"send{kind}": self._file_sender(kind) for kind in FILE_KINDS},
        }

    # --- life-cycle --------------------------------------------------------------------------

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._loop = asyncio.get_running_loop()
        self._new_updates = asyncio.Event()
        self._stopping = False
        # Multipart uploads go up to 50 MB on the real Bot API.
        app = web.Application(client_max_size=60 * 1024 * 1024)
        app.router.add_route("*", "/{bot:bot[^/]*}/{method}", self._handle)
        app.router.add_get("/file/{bot:bot[^/]*}/{path:.+}", self._download)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=2.0)
        await self._runner.setup()
        # Bind the socket here so port 0 gives a free port we can read back.
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        await web.SockSite(self._runner, sock).start()
        self.base_url = f"http://{host}:{sock.getsockname()[1]}"
        self._webhook_wake = asyncio.Event()
        self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
        self._webhook_worker = asyncio.create_task(self._deliver_to_webhook())

    async def stop(self) -> None:
        self._stopping = True
        self._wake_pollers()  # pending long polls answer [] at once instead of holding shutdown
        await cancelled(self._webhook_worker)
        if self._http is not None:
            await self._http.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # --- driving (any thread) ----------------------------------------------------------------

    def add_group_message(
        self,
        chat_id: int,
        text: str | None,
        *,
        user_id: int = 501,
        first_name: str = "Ivan",
        last_name: str | None = "Petrov",
        username: str | None = "ivan_p",
        chat_title: str = "Support group",
        thread_id: int | None = None,
        sender_chat: dict[str, Any] | None = None,
        extra: dict[str, Any] | None = None,
        language_code: str | None = "en",
    ) -> dict[str, Any]:
        """Queue an Update with a ``message`` in ``chat_id`` and return it (Bot API JSON).

        ``text`` None makes a message without text (media, location...); ``extra`` adds Bot API
        Message fields as they are (``photo``, ``caption``, ``media_group_id``...)."""
        sender: dict[str, Any] = {"id": user_id, "is_bot": False, "first_name": first_name}
        if last_name:
            sender["last_name"] = last_name
        if username:
            sender["username"] = username
        if language_code:
            # The sender's Telegram app language: a group's first bind speaks it.
            sender["language_code"] = language_code
        if sender_chat is not None:
            # Telegram hides the person: ``from`` becomes a placeholder bot.
            sender = dict(GROUP_ANONYMOUS_BOT if sender_chat.get("id") == chat_id else CHANNEL_BOT)
        with self._lock:
            chat = self._chat_locked(chat_id, title=chat_title, person=sender, forum=thread_id is not None)
            message: dict[str, Any] = {
                "message_id": self._next_message_id_locked(chat_id),
                "from": sender,
                "chat": copy.deepcopy(chat.chat),
                "date": int(time.time()),
            }
            if text is not None:
                message["text"] = text
            message.update(copy.deepcopy(extra or {}))
            if sender_chat is not None:
                message["sender_chat"] = copy.deepcopy(sender_chat)
            if thread_id is not None:
                message["message_thread_id"] = thread_id
                message["is_topic_message"] = True
            if text is not None and (command := _COMMAND.match(text)):
                message["entities"] = [{"type": "bot_command", "offset": 0, "length": _utf16_len(command[0])}]
            update = {"update_id": self._take_update_id_locked(None), "message": message}
            self._enqueue_locked(update)
        return copy.deepcopy(update)

    def add_update(self, update: dict[str, Any]) -> dict[str, Any]:
        """Queue a raw update as-is (its ``update_id`` kept when present) and return it."""
        update = copy.deepcopy(update)
        with self._lock:
            update["update_id"] = self._take_update_id_locked(update.get("update_id"))
            message = update.get("message") or update.get("edited_message") or {}
            chat_id = (message.get("chat") or {}).get("id")
            if isinstance(chat_id, int) and isinstance(message.get("message_id"), int):
                state = self._chat_locked(chat_id)
                state.last_message_id = max(state.last_message_id, message["message_id"])
            self._enqueue_locked(update)
        return copy.deepcopy(update)

    def edit_group_message(
        self,
        original: dict[str, Any],
        text: str,
        *,
        entities: list[dict[str, Any]] | None = None,
        media: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Queue an ``edited_message`` update for a message queued before (its update's JSON).

        ``media``: the message's file after the edit (e.g. ``{"photo": [...]}``), as when someone
        swaps the photo or document of a message: it replaces the one the message had."""
        message = copy.deepcopy(original["message"])
        if media:
            for kind in ("photo", "document", "video", "audio", "animation", "voice"):
                message.pop(kind, None)
            message.update(copy.deepcopy(media))
        key = "text" if "text" in message else "caption"
        message[key] = text
        message.pop("entities" if key == "text" else "caption_entities", None)
        if entities:
            message["entities" if key == "text" else "caption_entities"] = entities
        message["edit_date"] = int(time.time())
        with self._lock:
            update = {"update_id": self._take_update_id_locked(None), "edited_message": message}
            self._enqueue_locked(update)
        return copy.deepcopy(update)

    def add_reaction(
        self,
        chat_id: int,
        message_id: int,
        emojis: list[str],
        *,
        user_id: int = 502,
        first_name: str = "Anna",
        username: str | None = "anna_iv",
    ) -> dict[str, Any]:
        """Queue a ``message_reaction`` update: ``emojis`` is the user's whole new set.

        Telegram sends these only to an admin bot that asked for them in allowed_updates; the
        fake drops them, as Telegram does, unless the last getUpdates listed them."""
        user: dict[str, Any] = {"id": user_id, "is_bot": False, "first_name": first_name}
        if username:
            user["username"] = username
        with self._lock:
            chat = copy.deepcopy(self._chat_locked(chat_id).chat)
            update = {
                "update_id": self._take_update_id_locked(None),
                "message_reaction": {
                    "chat": chat,
                    "message_id": message_id,
                    "user": user,
                    "date": int(time.time()),
                    "old_reaction": [],
                    "new_reaction": [{"type": "emoji", "emoji": emoji} for emoji in emojis],
                },
            }
            self._enqueue_locked(update)
        return copy.deepcopy(update)

    def set_member_status(self, chat_id: int, user_id: int, status: str) -> None:
        """What getChatMember answers for ``user_id`` (creator, administrator, member, ...)."""
        with self._lock:
            self._chat_locked(chat_id).members[user_id] = status

    def set_bot_admin(self, chat_id: int, *, can_pin_messages: bool = True) -> None:
        """Make the bot an administrator of the group (no update is sent), with or without the
        right to pin messages."""
        with self._lock:
            chat = self._chat_locked(chat_id)
            chat.bot_status = "administrator"
            chat.bot_can_pin = can_pin_messages

    def pinned_messages(self, chat_id: int) -> list[int]:
        with self._lock:
            chat = self._state.chats.get(chat_id)
            return list(chat.pinned) if chat is not None else []

    def add_other_bot(
        self, chat_id: int, username: str, *, status: str = "administrator", bot_id: int | None = None
    ) -> dict[str, Any]:
        """Put another bot into a group (e.g. Planfix's own, as an admin); its user object."""
        with self._lock:
            chat = self._chat_locked(chat_id)
            user_id = bot_id if bot_id is not None else 8_000_000 + len(chat.other_bots)
            user = {"id": user_id, "is_bot": True, "first_name": username, "username": username}
            chat.other_bots[user_id] = (user, status)
        return dict(user)

    def set_bot_membership(
        self,
        chat_id: int,
        status: str,
        *,
        old_status: str | None = None,
        by_user_id: int = 501,
        chat_title: str = "Support group",
        forum: bool = False,
    ) -> dict[str, Any]:
        """The bot was added (``member``/``administrator``) or removed (``left``/``kicked``): queue
        the ``my_chat_member`` update Telegram sends, and return it. ``old_status`` overrides
        what the bot was before (a chat the fake has not seen counts as one the bot is in);
        ``forum`` makes a supergroup a forum (topics)."""
        with self._lock:
            chat = self._chat_locked(chat_id, title=chat_title, forum=forum)
            old = old_status or chat.bot_status
            chat.bot_status = status
            by = {"id": by_user_id, "is_bot": False, "first_name": "Ivan", "last_name": "Petrov"}
            update = {
                "update_id": self._take_update_id_locked(None),
                "my_chat_member": {
                    "chat": copy.deepcopy(chat.chat),
                    "from": by,
                    "date": int(time.time()),
                    "old_chat_member": chat_member(dict(self.bot_user), old),
                    "new_chat_member": chat_member(dict(self.bot_user), status),
                },
            }
            self._enqueue_locked(update)
        return copy.deepcopy(update)

    def add_file(self, data: bytes, *, declared_size: int | None = None) -> dict[str, Any]:
        """Store a file; its ``file_id``/``file_unique_id``/``file_size`` for a message's JSON."""
        with self._lock:
            stored = self._add_file_locked(data, declared_size if declared_size is not None else len(data))
        return {"file_id": stored.file_id, "file_unique_id": stored.file_unique_id, "file_size": stored.size}

    def fail_downloads(self, file_id: str, status: int, *, times: int = 1) -> None:
        """The next ``times`` downloads of ``file_id`` answer ``status`` instead of the bytes."""
        with self._lock:
            self._state.download_failures.setdefault(file_id, []).extend([status] * times)

    def downloads(self) -> list[str]:
        """The file_ids whose bytes were downloaded, in order."""
        with self._lock:
            return list(self._state.downloads)

    def migrate_to_supergroup(self, chat_id: int, *, by_user_id: int = 501) -> int:
        """Upgrade a group: queue the two service messages (``migrate_to_chat_id`` in the old chat,
        ``migrate_from_chat_id`` in the new one); from now on a send to the old id is a 400."""
        new_chat_id = int(f"-100{abs(chat_id)}")
        with self._lock:
            old = self._chat_locked(chat_id)
            old.migrated_to = new_chat_id
            new = self._chat_locked(new_chat_id, title=old.chat.get("title"))
            new.members = dict(old.members)
            by = {"id": by_user_id, "is_bot": False, "first_name": "Ivan", "last_name": "Petrov"}
            for chat, service in (
                (old, {"migrate_to_chat_id": new_chat_id}),
                (new, {"migrate_from_chat_id": chat_id}),
            ):
                message = {
                    "message_id": self._next_message_id_locked(int(chat.chat["id"])),
                    "from": by,
                    "chat": copy.deepcopy(chat.chat),
                    "date": int(time.time()),
                    **service,
                }
                self._enqueue_locked({"update_id": self._take_update_id_locked(None), "message": message})
        return new_chat_id

    def create_forum_topic(
        self, chat_id: int, name: str, *, user_id: int = 501, first_name: str = "Ivan"
    ) -> int:
        """Someone opens a topic in a forum supergroup: queue the ``forum_topic_created`` service
        message and return the topic's thread id (Telegram uses that message's id)."""
        sender = {"id": user_id, "is_bot": False, "first_name": first_name}
        with self._lock:
            chat = self._chat_locked(chat_id, forum=True)
            message_id = self._next_message_id_locked(chat_id)
            message = {
                "message_id": message_id,
                "from": sender,
                "chat": copy.deepcopy(chat.chat),
                "date": int(time.time()),
                "message_thread_id": message_id,
                "is_topic_message": True,
                "forum_topic_created": {"name": name, "icon_color": 7322096},
            }
            self._enqueue_locked({"update_id": self._take_update_id_locked(None), "message": message})
        return message_id

    def set_group_pace(self, pace: tuple[int, float] | None) -> None:
        with self._lock:
            self.group_pace = pace

    def fail_next(
        self,
        method: str,
        *,
        error_code: int = 429,
        retry_after: int | None = None,
        description: str | None = None,
        parameters: dict[str, Any] | None = None,
        times: int = 1,
    ) -> None:
        """Make the next ``times`` calls of ``method`` fail (a 429 carries ``retry_after``)."""
        params = dict(parameters or {})
        if retry_after is not None:
            params["retry_after"] = retry_after
        if description is None:
            description = (
                f"Too Many Requests: retry after {retry_after or 1}"
                if error_code == 429
                else f"Error {error_code}"
            )
        if error_code == 429 and "retry_after" not in params:
            params["retry_after"] = 1
        failure = _Failure(error_code=error_code, description=description, parameters=params or None)
        with self._lock:
            self._state.failures.setdefault(method.lower(), []).extend([failure] * times)

    # --- observing (any thread) ---------------------------------------------------------------

    def sent_messages(self, chat_id: int | None = None) -> list[dict[str, Any]]:
        """Every successful sendMessage (normalised params plus the assigned ``message_id``)."""
        with self._lock:
            sent = [m for m in self._state.sent if chat_id is None or m.get("chat_id") == chat_id]
            return copy.deepcopy(sent)

    @property
    def calls(self) -> list[RecordedCall]:
        """Every API call so far, oldest first (a snapshot)."""
        with self._lock:
            return list(self._state.calls)

    def chat_messages(self, chat_id: int) -> list[dict[str, Any]]:
        """What the bot posted in a chat and is still there, oldest first, as edits left it.

        Each: ``message_id``, ``type`` (text, photo, document, audio, video, voice), ``text`` (the
        text or caption as people see it), ``html`` (as sent), ``file_name``, ``file_size``,
        ``media_group_id``, ``message_thread_id``, ``edited``.
        """
        with self._lock:
            state = self._state.chats.get(chat_id)
            messages = [state.messages[key] for key in sorted(state.messages)] if state else []
            return copy.deepcopy(messages)

    def file_bytes(self, file_id: str) -> bytes | None:
        """The bytes of a file stored with ``add_file`` (None for an unknown id)."""
        with self._lock:
            stored = self._state.files.get(file_id)
            return stored.data if stored else None

    # --- saving and loading (the sandbox keeps its state across restarts) ---------------------

    def snapshot(self) -> tuple[dict[str, Any], dict[str, bytes]]:
        """Everything a restart must keep, as JSON-ready data, and the files' bytes by name.

        Update ids and message ids go on from where they were, so a gateway that already saw
        update N does not take a new update numbered N for a duplicate."""
        with self._lock:
            state = self._state
            data: dict[str, Any] = {
                "next_update_id": self._next_update_id,
                "queue": [copy.deepcopy(queued.update) for queued in state.queue],
                "chats": [
                    {
                        "chat": copy.deepcopy(chat.chat),
                        "last_message_id": chat.last_message_id,
                        "bot_status": chat.bot_status,
                        "migrated_to": chat.migrated_to,
                        "members": {str(user): status for user, status in chat.members.items()},
                        "other_bots": [
                            {"user": copy.deepcopy(user), "status": status}
                            for user, status in chat.other_bots.values()
                        ],
                        "messages": [copy.deepcopy(chat.messages[key]) for key in sorted(chat.messages)],
                    }
                    for chat in state.chats.values()
                ],
                "files": [
                    {"file_id": f.file_id, "file_unique_id": f.file_unique_id, "size": f.size}
                    for f in state.files.values()
                ],
                "allowed_updates": sorted(state.allowed_updates)
                if state.allowed_updates is not None
                else None,
                "commands": copy.deepcopy(state.commands),
                "commands_scope": copy.deepcopy(state.commands_scope),
                "commands_by_scope": [
                    [scope, language, copy.deepcopy(listed)]
                    for (scope, language), listed in state.commands_by_scope.items()
                ],
            }
            files = {f.file_unique_id: f.data for f in state.files.values()}
        return data, files

    def restore(self, data: dict[str, Any], files: dict[str, bytes]) -> None:
        """Load what ``snapshot`` returned (before or after ``start``)."""
        with self._lock:
            state = self._state
            self._next_update_id = max(self._next_update_id, int(data.get("next_update_id", 1)))
            state.queue = [_Queued(update) for update in data.get("queue", [])]
            for saved in data.get("chats", []):
                chat = _ChatState(
                    chat=saved["chat"],
                    last_message_id=int(saved["last_message_id"]),
                    bot_status=str(saved["bot_status"]),
                    migrated_to=saved.get("migrated_to"),
                    members={int(user): status for user, status in saved.get("members", {}).items()},
                    other_bots={
                        int(bot["user"]["id"]): (bot["user"], str(bot["status"]))
                        for bot in saved.get("other_bots", [])
                    },
                    messages={int(m["message_id"]): m for m in saved.get("messages", [])},
                )
                state.chats[int(chat.chat["id"])] = chat
            for saved in data.get("files", []):
                unique = str(saved["file_unique_id"])
                state.files[saved["file_id"]] = _StoredFile(
                    file_id=str(saved["file_id"]),
                    file_unique_id=unique,
                    data=files.get(unique, b""),
                    size=int(saved["size"]),
                )
            allowed = data.get("allowed_updates")
            state.allowed_updates = frozenset(allowed) if allowed is not None else None
            state.commands = list(data.get("commands", []))
            state.commands_scope = data.get("commands_scope")
            state.commands_by_scope = {
                (str(scope), str(language)): list(listed)
                for scope, language, listed in data.get("commands_by_scope", [])
            }

    def flood_refusals(self, chat_id: int) -> int:
        """How many sends to this chat got a 429 for going over the group pace."""
        with self._lock:
            state = self._state.chats.get(chat_id)
            return state.flood_refusals if state else 0

    @property
    def webhook(self) -> dict[str, Any]:
        """The webhook as set: url, secret_token, allowed_updates, max_connections."""
        with self._lock:
            allowed = self._state.allowed_updates
            return {
                "url": self._state.webhook_url,
                "secret_token": self._state.webhook_secret,
                "allowed_updates": sorted(allowed) if allowed is not None else None,
                "max_connections": self._state.webhook_max_connections,
            }

    @property
    def commands(self) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
        """The bot's command list and its scope, as setMyCommands left them."""
        with self._lock:
            return copy.deepcopy(self._state.commands), copy.deepcopy(self._state.commands_scope)

    def commands_in(self, scope_type: str, language_code: str = "") -> list[dict[str, Any]]:
        """The command list setMyCommands left for a scope ("all_group_chats", ...) and language."""
        with self._lock:
            return copy.deepcopy(self._state.commands_by_scope.get((scope_type, language_code), []))

    def commands_shown_to(
        self, language_code: str | None, scope_type: str = "all_group_chats"
    ) -> list[dict[str, Any]]:
        """The command menu a person with this Telegram language sees in a scope: their language's
        list, else the one set without a language_code (as Telegram's apps choose)."""
        with self._lock:
            menus = self._state.commands_by_scope
            found = menus.get((scope_type, (language_code or "")[:2].lower()))
            return copy.deepcopy(found if found is not None else menus.get((scope_type, ""), []))

    # --- HTTP ----------------------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.Response:
        method_name = request.match_info["method"]
        try:
            params = await _read_params(request)
        except BotAPIError as error:
            return _error_response(error)
        # Recorded on arrival, so a long poll shows up while it is still waiting.
        call = RecordedCall(method_name, params, time.time())
        with self._lock:
            self._state.calls.append(call)
        try:
            result = await self._dispatch(request, method_name, params)
        except BotAPIError as error:
            with self._lock:
                calls = self._state.calls
                index = next(i for i in range(len(calls) - 1, -1, -1) if calls[i] is call)
                calls[index] = dataclasses.replace(call, error_code=error.error_code)
            return _error_response(error)
        return web.json_response({"ok": True, "result": result})

    async def _dispatch(self, request: web.Request, method_name: str, params: dict[str, Any]) -> Any:
        if request.match_info["bot"] != f"bot{self.token}":
            raise BotAPIError(401, "Unauthorized")
        method = self._methods.get(method_name.lower())
        if method is None:
            raise BotAPIError(404, "Not Found")
        self._raise_planned_failure(method_name.lower())
        return await method(params)

    def _raise_planned_failure(self, method: str) -> None:
        with self._lock:
            planned = self._state.failures.get(method)
            failure = planned.pop(0) if planned else None
        if failure is not None:
            raise BotAPIError(failure.error_code, failure.description, failure.parameters)

    # --- methods -------------------------------------------------------------------------------

    async def _get_me(self, params: dict[str, Any]) -> dict[str, Any]:
        return {
            **self.bot_user,
            "can_join_groups": True,
            "can_read_all_group_messages": self.can_read_all_group_messages,
            "supports_inline_queries": False,
            "can_connect_to_business": False,
            "has_main_web_app": False,
        }

    async def _get_updates(self, params: dict[str, Any]) -> list[dict[str, Any]]:
        offset = _int_param(params, "offset", None)
        limit = min(max(_int_param(params, "limit", MAX_UPDATES_PER_CALL) or 1, 1), MAX_UPDATES_PER_CALL)
        timeout = max(_int_param(params, "timeout", 0) or 0, 0)
        loop = self._loop
        if loop is None:
            raise BotAPIError(500, "Internal Server Error: not started")
        with self._lock:
            if self._state.webhook_url:
                raise BotAPIError(
                    409,
                    "Conflict: can't use getUpdates method while webhook is active; "
                    "use deleteWebhook to delete the webhook first",
                )
            if "allowed_updates" in params:
                allowed = params["allowed_updates"]
                self._state.allowed_updates = frozenset(allowed) if allowed else None
            self._confirm_locked(offset)
            self._state.poll_generation += 1
            generation = self._state.poll_generation
        self._wake_pollers()  # an older long poll still waiting is now terminated with a 409
        deadline = loop.time() + timeout
        while True:
            with self._lock:
                if generation != self._state.poll_generation:
                    raise BotAPIError(
                        409,
                        "Conflict: terminated by other getUpdates request; "
                        "make sure that only one bot instance is running",
                    )
                batch = self._state.queue[:limit]
                for queued in batch:
                    queued.delivered = True
                if batch or self._stopping:
                    return [copy.deepcopy(q.update) for q in batch]
                wake = self._new_updates
            remaining = deadline - loop.time()
            if remaining <= 0:
                return []
            try:
                await asyncio.wait_for(wake.wait(), remaining)
            except TimeoutError:
                return []

    async def _send_message(self, params: dict[str, Any]) -> dict[str, Any]:
        chat_id = _chat_id(params)
        text = params.get("text")
        if not isinstance(text, str) or not text.strip():
            raise BotAPIError(400, "Bad Request: message text is empty")
        plain = _visible_text(text, params.get("parse_mode"), MAX_MESSAGE_UTF16, "message is too long")
        if not plain.strip():
            raise BotAPIError(400, "Bad Request: message text is empty")
        with self._lock:
            chat = self._sendable_chat_locked(chat_id, new_messages=1)
            message_id = self._next_message_id_locked(chat_id)
            self._state.sent.append({**params, "message_id": message_id})
            self._store_locked(chat, message_id, params, kind="text", text=plain, html=text)
            return self._message_json_locked(chat, message_id, params, text=plain)

    def _file_sender(self, kind: str) -> Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]:
        async def send(params: dict[str, Any]) -> dict[str, Any]:
            return await self._send_file(kind, params)

        return send

    async def _send_file(self, kind: str, params: dict[str, Any]) -> dict[str, Any]:
        chat_id = _chat_id(params)
        caption = _optional_str(params, "caption")
        plain = _visible_text(
            caption, params.get("parse_mode"), MAX_CAPTION_UTF16, "message caption is too long"
        )
        file = resolve_file(params, params.get(kind), kind)
        kind = sent_kind(kind, file)
        with self._lock:
            chat = self._sendable_chat_locked(chat_id, new_messages=1)
            message_id = self._next_message_id_locked(chat_id)
            self._store_locked(chat, message_id, params, kind=kind, text=plain, html=caption, file=file)
            content: dict[str, Any] = {kind: file_object(kind, file, message_id, chat_id)}
            if plain:
                content["caption"] = plain
            return self._message_json_locked(chat, message_id, params, **content)

    async def _send_media_group(self, params: dict[str, Any]) -> list[dict[str, Any]]:
        chat_id = _chat_id(params)
        items = []
        for item in check_media_group(params.get("media")):
            kind = str(item["type"])
            caption = _optional_str(item, "caption")
            plain = _visible_text(
                caption, item.get("parse_mode"), MAX_CAPTION_UTF16, "message caption is too long"
            )
            items.append((kind, resolve_file(params, item.get("media"), kind), caption, plain))
        with self._lock:
            chat = self._sendable_chat_locked(chat_id, new_messages=len(items))
            group_id = f"{abs(chat_id)}{chat.last_message_id + 1}"
            results = []
            for kind, file, caption, plain in items:
                message_id = self._next_message_id_locked(chat_id)
                self._store_locked(
                    chat,
                    message_id,
                    params,
                    kind=kind,
                    text=plain,
                    html=caption,
                    file=file,
                    media_group_id=group_id,
                )
                content: dict[str, Any] = {
                    kind: file_object(kind, file, message_id, chat_id),
                    "media_group_id": group_id,
                }
                if plain:
                    content["caption"] = plain
                results.append(self._message_json_locked(chat, message_id, params, **content))
            return results

    async def _edit_message_text(self, params: dict[str, Any]) -> dict[str, Any]:
        text = params.get("text")
        if not isinstance(text, str) or not text.strip():
            raise BotAPIError(400, "Bad Request: message text is empty")
        plain = _visible_text(text, params.get("parse_mode"), MAX_MESSAGE_UTF16, "message is too long")
        with self._lock:
            chat, message = self._own_message_locked(params, "message to edit not found")
            if message["type"] != "text":
                raise BotAPIError(400, "Bad Request: there is no text in the message to edit")
            self._apply_edit_locked(message, plain, text)
            return self._message_json_locked(chat, message["message_id"], message, text=plain, edited=True)

    async def _pin_chat_message(self, params: dict[str, Any]) -> bool:
        """Bot API: in private chats any message may be pinned; in groups and supergroups the bot
        must be an administrator with ``can_pin_messages``, else 400 "not enough rights to
        manage pinned messages in the chat"."""
        message_id = params.get("message_id")
        with self._lock:
            chat = self._chat_locked(_chat_id(params))
            self._check_reachable_locked(chat)
            if chat.chat["type"] != "private" and not (
                chat.bot_status == "administrator" and chat.bot_can_pin
            ):
                raise BotAPIError(400, "Bad Request: not enough rights to manage pinned messages in the chat")
            if not isinstance(message_id, int) or (
                message_id not in chat.messages and message_id > chat.last_message_id
            ):
                raise BotAPIError(400, "Bad Request: message to pin not found")
            if message_id in chat.pinned:
                chat.pinned.remove(message_id)
            chat.pinned.append(message_id)
        return True

    async def _edit_message_caption(self, params: dict[str, Any]) -> dict[str, Any]:
        caption = _optional_str(params, "caption")
        plain = _visible_text(
            caption, params.get("parse_mode"), MAX_CAPTION_UTF16, "message caption is too long"
        )
        with self._lock:
            chat, message = self._own_message_locked(params, "message to edit not found")
            if message["type"] == "text":
                raise BotAPIError(400, "Bad Request: there is no caption in the message to edit")
            self._apply_edit_locked(message, plain, caption)
            return self._message_json_locked(chat, message["message_id"], message, caption=plain, edited=True)

    async def _delete_message(self, params: dict[str, Any]) -> bool:
        with self._lock:
            chat, message = self._own_message_locked(params, "message to delete not found")
            del chat.messages[message["message_id"]]
        return True

    async def _leave_chat(self, params: dict[str, Any]) -> bool:
        """The bot leaves; Telegram then sends the bot's own ``my_chat_member`` (from: the bot)."""
        chat_id = _chat_id(params)
        with self._lock:
            chat = self._group_locked(chat_id, "chat member status can't be changed in private chats")
            old, chat.bot_status = chat.bot_status, "left"
            self.left_chats.append(chat_id)
            self._enqueue_locked(
                {
                    "update_id": self._take_update_id_locked(None),
                    "my_chat_member": {
                        "chat": copy.deepcopy(chat.chat),
                        "from": dict(self.bot_user),
                        "date": int(time.time()),
                        "old_chat_member": chat_member(dict(self.bot_user), old),
                        "new_chat_member": chat_member(dict(self.bot_user), "left"),
                    },
                }
            )
        return True

    async def _get_chat_member(self, params: dict[str, Any]) -> dict[str, Any]:
        chat_id, user_id = _chat_id(params), params.get("user_id")
        if not isinstance(user_id, int):
            raise BotAPIError(400, "Bad Request: invalid user_id specified")
        with self._lock:
            chat = self._chat_locked(chat_id)
            if user_id == self.bot_user["id"]:
                return chat_member(dict(self.bot_user), chat.bot_status)
            if user_id in chat.other_bots:
                other, status = chat.other_bots[user_id]
                return chat_member(dict(other), status)
            user = {"id": user_id, "is_bot": False, "first_name": "User"}
            return chat_member(user, chat.members.get(user_id, "member"))

    async def _get_chat_administrators(self, params: dict[str, Any]) -> list[dict[str, Any]]:
        with self._lock:
            chat = self._group_locked(_chat_id(params), "there are no administrators in the private chat")
            admins = [
                chat_member({"id": user_id, "is_bot": False, "first_name": "User"}, status)
                for user_id, status in chat.members.items()
                if status in ("creator", "administrator")
            ]
            if chat.bot_status == "administrator":
                admins.append(chat_member(dict(self.bot_user), "administrator"))
            # Other bots only when asked for (Bot API 9.x ``return_bots``); before that, never.
            if params.get("return_bots") is True:
                admins += [
                    chat_member(dict(user), status)
                    for user, status in chat.other_bots.values()
                    if status == "administrator"
                ]
            return admins

    async def _set_my_commands(self, params: dict[str, Any]) -> bool:
        commands = params.get("commands")
        if not isinstance(commands, list) or len(commands) > 100:
            raise BotAPIError(400, "Bad Request: can't parse commands JSON object")
        for command in commands:
            name = command.get("command") if isinstance(command, dict) else None
            description = command.get("description") if isinstance(command, dict) else None
            if not isinstance(name, str) or not re.fullmatch(r"[a-z0-9_]{1,32}", name):
                raise BotAPIError(400, "Bad Request: BOT_COMMAND_INVALID")
            if not isinstance(description, str) or not 1 <= len(description) <= 256:
                raise BotAPIError(400, "Bad Request: BOT_COMMAND_DESCRIPTION_INVALID")
        language = params.get("language_code") or ""
        if not isinstance(language, str) or (language and not re.fullmatch(r"[a-z]{2}", language)):
            raise BotAPIError(400, "Bad Request: LANG_CODE_INVALID")
        with self._lock:
            scope = params.get("scope")
            self._state.commands_scope = copy.deepcopy(scope) if isinstance(scope, dict) else None
            self._state.commands = copy.deepcopy(commands)
            scope_type = scope.get("type", "default") if isinstance(scope, dict) else "default"
            self._state.commands_by_scope[(str(scope_type), language)] = copy.deepcopy(commands)
        return True

    async def _get_my_commands(self, params: dict[str, Any]) -> list[dict[str, Any]]:
        # As the Bot API: the list set for exactly this scope and language_code ("" : for all).
        scope = params.get("scope")
        scope_type = str(scope.get("type", "default")) if isinstance(scope, dict) else "default"
        language = str(params.get("language_code") or "")
        with self._lock:
            return copy.deepcopy(self._state.commands_by_scope.get((scope_type, language), []))

    async def _get_file(self, params: dict[str, Any]) -> dict[str, Any]:
        file_id = params.get("file_id")
        with self._lock:
            stored = self._state.files.get(file_id) if isinstance(file_id, str) else None
        if stored is None:
            raise BotAPIError(400, "Bad Request: invalid file_id")
        if stored.size > MAX_DOWNLOAD_BYTES:
            raise BotAPIError(400, "Bad Request: file is too big")
        return {
            "file_id": stored.file_id,
            "file_unique_id": stored.file_unique_id,
            "file_size": stored.size,
            "file_path": f"documents/{stored.file_unique_id}",
        }

    async def _download(self, request: web.Request) -> web.StreamResponse:
        if request.match_info["bot"] != f"bot{self.token}":
            return web.Response(status=401, text="Unauthorized")
        unique = request.match_info["path"].rsplit("/", 1)[-1]
        with self._lock:
            stored = next((f for f in self._state.files.values() if f.file_unique_id == unique), None)
            planned = self._state.download_failures.get(stored.file_id, []) if stored is not None else []
            failure = planned.pop(0) if planned else None
            if stored is not None and failure is None:
                self._state.downloads.append(stored.file_id)
        if failure is not None:
            return web.Response(status=failure, text="planned failure")
        if stored is None or stored.size > MAX_DOWNLOAD_BYTES:
            return web.Response(status=404, text="Not Found")
        return web.Response(body=stored.data, content_type="application/octet-stream")

    async def _delete_webhook(self, params: dict[str, Any]) -> bool:
        with self._lock:
            self._state.webhook_url = ""
            self._state.webhook_secret = ""
            self._state.webhook_last_error = None
            if params.get("drop_pending_updates") is True:
                self._state.queue.clear()
        return True

    async def _set_webhook(self, params: dict[str, Any]) -> bool:
        url = params.get("url")
        if not isinstance(url, str):
            raise BotAPIError(400, "Bad Request: bad webhook: URL must be provided for webhook")
        secret = params.get("secret_token", "")
        if secret and not (isinstance(secret, str) and _SECRET_TOKEN.fullmatch(secret)):
            raise BotAPIError(400, "Bad Request: bad webhook: secret token contains unallowed characters")
        max_connections = params.get("max_connections", 40)
        if not isinstance(max_connections, int) or not 1 <= max_connections <= 100:
            raise BotAPIError(400, "Bad Request: bad webhook: max_connections must be between 1 and 100")
        with self._lock:
            if url != self._state.webhook_url:
                self._state.webhook_last_error = None
            self._state.webhook_url = url
            self._state.webhook_secret = str(secret or "")
            self._state.webhook_max_connections = max_connections
            if "allowed_updates" in params:
                allowed = params["allowed_updates"]
                self._state.allowed_updates = frozenset(allowed) if allowed else None
            if params.get("drop_pending_updates") is True:
                self._state.queue.clear()
        self._wake_pollers()
        return True

    async def _get_webhook_info(self, params: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            info: dict[str, Any] = {
                "url": self._state.webhook_url,
                "has_custom_certificate": False,
                "pending_update_count": len(self._state.queue),
                "max_connections": self._state.webhook_max_connections,
            }
            if self._state.allowed_updates is not None:
                info["allowed_updates"] = sorted(self._state.allowed_updates)
            if self._state.webhook_url and self._state.webhook_last_error is not None:
                info["last_error_date"], info["last_error_message"] = self._state.webhook_last_error
            return info

    async def _get_chat(self, params: dict[str, Any]) -> dict[str, Any]:
        chat_id = params.get("chat_id")
        if not isinstance(chat_id, int):
            raise BotAPIError(400, "Bad Request: chat not found")
        with self._lock:
            chat = copy.deepcopy(self._chat_locked(chat_id).chat)
        gifts = (
            "unlimited_gifts",
            "limited_gifts",
            "unique_gifts",
            "premium_subscription",
            "gifts_from_channels",
        )
        return {
            **chat,
            "accent_color_id": 0,
            "max_reaction_count": 11,
            "accepted_gift_types": dict.fromkeys(gifts, False),
        }

    # --- state helpers (call with _lock held) --------------------------------------------------

    def _chat_locked(
        self,
        chat_id: int,
        *,
        title: str | None = None,
        person: dict[str, Any] | None = None,
        forum: bool = False,
    ) -> _ChatState:
        state = self._state.chats.get(chat_id)
        if state is None:
            state = _ChatState(chat=_chat_object(chat_id, title=title, person=person))
            self._state.chats[chat_id] = state
        if title and state.chat["type"] != "private":
            state.chat["title"] = title
        if forum and state.chat["type"] == "supergroup":
            state.chat["is_forum"] = True
        return state

    def _sendable_chat_locked(self, chat_id: int, *, new_messages: int) -> _ChatState:
        """The chat, if the bot may post there now; else Telegram's refusal."""
        chat = self._chat_locked(chat_id)
        self._check_reachable_locked(chat)
        self._take_pace_locked(chat, new_messages)
        return chat

    def _group_locked(self, chat_id: int, refusal_in_private: str) -> _ChatState:
        """A group the bot is in, for a call private chats refuse (Telegram's words)."""
        chat = self._chat_locked(chat_id)
        if chat.chat["type"] == "private":
            raise BotAPIError(400, f"Bad Request: {refusal_in_private}")
        self._check_reachable_locked(chat)
        return chat

    def _check_reachable_locked(self, chat: _ChatState) -> None:
        if chat.migrated_to is not None:
            raise BotAPIError(
                400,
                "Bad Request: group chat was upgraded to a supergroup chat",
                {"migrate_to_chat_id": chat.migrated_to},
            )
        kind = "supergroup" if chat.chat["type"] == "supergroup" else "group"
        if chat.bot_status == "kicked":
            raise BotAPIError(403, f"Forbidden: bot was kicked from the {kind} chat")
        if chat.bot_status == "left":
            raise BotAPIError(403, f"Forbidden: bot is not a member of the {kind} chat")

    def _take_pace_locked(self, chat: _ChatState, count: int) -> None:
        """Telegram's ~20 messages a minute per group: a send over the pace is a 429."""
        if self.group_pace is None or chat.chat["type"] == "private":
            return
        limit, window = self.group_pace
        now = time.monotonic()
        while chat.sent_at and chat.sent_at[0] <= now - window:
            chat.sent_at.popleft()
        over = len(chat.sent_at) + count - limit
        if over > 0:
            chat.flood_refusals += 1
            free_at = (
                chat.sent_at[min(over, len(chat.sent_at)) - 1] + window if chat.sent_at else now + window
            )
            retry_after = max(1, math.ceil(free_at - now))
            raise BotAPIError(
                429, f"Too Many Requests: retry after {retry_after}", {"retry_after": retry_after}
            )
        chat.sent_at.extend([now] * count)

    def _store_locked(
        self,
        chat: _ChatState,
        message_id: int,
        params: dict[str, Any],
        *,
        kind: str,
        text: str,
        html: str,
        file: dict[str, Any] | None = None,
        media_group_id: str | None = None,
    ) -> None:
        thread_id = params.get("message_thread_id")
        kept = self._add_file_locked(file["data"], file["size"]) if self.keep_sent_files and file else None
        chat.messages[message_id] = {
            "message_id": message_id,
            "chat_id": chat.chat["id"],
            "type": kind,
            "text": text,
            "html": html,
            "file_name": file["name"] if file else None,
            "file_size": file["size"] if file else None,
            # With keep_sent_files: the id its bytes are kept under (``file_bytes``).
            "file_id": kept.file_id if kept else None,
            "media_group_id": media_group_id,
            "message_thread_id": thread_id if isinstance(thread_id, int) else None,
            "reply_to_message_id": (params.get("reply_parameters") or {}).get("message_id"),
            "edited": False,
        }

    def _own_message_locked(self, params: dict[str, Any], missing: str) -> tuple[_ChatState, dict[str, Any]]:
        chat_id, message_id = _chat_id(params), params.get("message_id")
        chat = self._state.chats.get(chat_id)
        if chat is not None:
            self._check_reachable_locked(chat)
        message = chat.messages.get(message_id) if chat is not None and isinstance(message_id, int) else None
        if chat is None or message is None:
            raise BotAPIError(400, f"Bad Request: {missing}")
        return chat, message

    @staticmethod
    def _apply_edit_locked(message: dict[str, Any], plain: str, html: str) -> None:
        if message["html"] == html:
            raise BotAPIError(
                400,
                "Bad Request: message is not modified: specified new message content and reply markup "
                "are exactly the same as a current content and reply markup of the message",
            )
        message.update(text=plain, html=html, edited=True)

    def _message_json_locked(
        self,
        chat: _ChatState,
        message_id: int,
        params: dict[str, Any],
        *,
        edited: bool = False,
        **content: Any,
    ) -> dict[str, Any]:
        result: dict[str, Any] = {
            "message_id": message_id,
            "from": dict(self.bot_user),
            "chat": copy.deepcopy(chat.chat),
            "date": int(time.time()),
            **content,
        }
        if edited:
            result["edit_date"] = int(time.time())
        thread_id = params.get("message_thread_id")
        if isinstance(thread_id, int):
            result["message_thread_id"] = thread_id
            result["is_topic_message"] = True
        return result

    def _add_file_locked(self, data: bytes, size: int) -> _StoredFile:
        number = len(self._state.files) + 1
        stored = _StoredFile(
            file_id=f"BQACAgIAAx{number:06d}", file_unique_id=f"AgAD{number:06d}", data=data, size=size
        )
        self._state.files[stored.file_id] = stored
        return stored

    def _next_message_id_locked(self, chat_id: int) -> int:
        state = self._chat_locked(chat_id)
        state.last_message_id += 1
        return state.last_message_id

    def _take_update_id_locked(self, wanted: Any) -> int:
        update_id = wanted if isinstance(wanted, int) else self._next_update_id
        self._next_update_id = max(self._next_update_id, update_id + 1)
        return update_id

    def _enqueue_locked(self, update: dict[str, Any]) -> None:
        kind = next((key for key in update if key != "update_id"), "")
        allowed = self._state.allowed_updates
        # Like Telegram: updates of a type the bot did not ask for are never stored.
        if (kind in allowed) if allowed is not None else (kind not in NOT_SENT_BY_DEFAULT):
            self._state.queue.append(_Queued(update))
            if self._loop is not None and not self._loop.is_closed():
                self._loop.call_soon_threadsafe(self._wake_pollers)

    def _confirm_locked(self, offset: int | None) -> None:
        if offset is None:
            return
        queue = self._state.queue
        if offset < 0:
            del queue[: max(len(queue) + offset, 0)]
            return
        queue[:] = [q for q in queue if not (q.delivered and q.update["update_id"] < offset)]

    def _wake_pollers(self) -> None:
        """Runs on the server loop: release every waiting long poll (and the webhook sender)."""
        self._new_updates.set()
        self._new_updates = asyncio.Event()
        self._webhook_wake.set()
        self._webhook_wake = asyncio.Event()

    # --- webhook delivery ----------------------------------------------------------------------

    async def _deliver_to_webhook(self) -> None:
        """With a webhook set, POST queued updates there one at a time, oldest first; an update
        leaves the queue only when answered 200 (Telegram retries the rest later)."""
        while True:
            with self._lock:
                url, secret = self._state.webhook_url, self._state.webhook_secret
                head = self._state.queue[0] if url and self._state.queue else None
                wake = self._webhook_wake
            if head is None:
                await wake.wait()
                continue
            headers = {"X-Telegram-Bot-Api-Secret-Token": secret} if secret else {}
            status, error = 0, ""
            try:
                assert self._http is not None
                async with self._http.post(url, json=head.update, headers=headers) as response:
                    status = response.status
                    await response.read()
                    error = f"Wrong response from the webhook: {status} {response.reason}"
            except (aiohttp.ClientError, TimeoutError) as failure:
                status, error = 0, f"Connection failed: {type(failure).__name__}"
            with self._lock:
                self.webhook_deliveries.append((int(head.update["update_id"]), status))
                if status != 200:
                    self._state.webhook_last_error = (int(time.time()), error)
                if status == 200 and self._state.queue and self._state.queue[0] is head:
                    self._state.queue.pop(0)
            if status != 200:
                await asyncio.sleep(0.5)


# --- helpers -------------------------------------------------------------------------------


def _chat_object(chat_id: int, *, title: str | None, person: dict[str, Any] | None) -> dict[str, Any]:
    if chat_id > 0:
        chat: dict[str, Any] = {"id": chat_id, "type": "private", "first_name": "User"}
        for key in ("first_name", "last_name", "username"):
            if person and person.get(key) and not person.get("is_bot"):
                chat[key] = person[key]
        return chat
    kind = "supergroup" if str(chat_id).startswith("-100") else "group"
    return {"id": chat_id, "type": kind, "title": title or f"Group {chat_id}"}


async def _read_params(request: web.Request) -> dict[str, Any]:
    raw: dict[str, Any] = dict(request.query)
    if request.method == "POST" and request.can_read_body:
        if request.content_type == "application/json":
            try:
                body = await request.json()
            except json.JSONDecodeError as error:
                raise BotAPIError(400, "Bad Request: can't parse JSON body") from error
            if not isinstance(body, dict):
                raise BotAPIError(400, "Bad Request: JSON body must be an object")
            raw.update(body)
        else:
            # Covers both application/x-www-form-urlencoded and multipart/form-data.
            for key, value in (await request.post()).items():
                if isinstance(value, web.FileField):
                    raw[key] = {
                        "filename": value.filename,
                        "content_type": value.content_type,
                        "data": value.file.read(),
                    }
                else:
                    raw[key] = value
    return {key: _coerce(key, value) for key, value in raw.items()}


def _coerce(key: str, value: Any) -> Any:
    if not isinstance(value, str):
        return value
    if key in INT_PARAMS and _INT_TEXT.fullmatch(value):
        return int(value)
    if key in BOOL_PARAMS and value.lower() in ("true", "false", "1", "0"):
        return value.lower() in ("true", "1")
    if key in JSON_PARAMS:
        try:
            return json.loads(value)
        except json.JSONDecodeError as error:
            raise BotAPIError(400, f"Bad Request: can't parse {key} JSON object") from error
    return value


def _chat_id(params: dict[str, Any]) -> int:
    chat_id = params.get("chat_id")
    if chat_id is None or chat_id == "":
        raise BotAPIError(400, "Bad Request: chat_id is empty")
    if not isinstance(chat_id, int):
        raise BotAPIError(400, "Bad Request: chat not found")
    return chat_id


def _optional_str(params: dict[str, Any], key: str) -> str:
    value = params.get(key)
    return value if isinstance(value, str) else ""


def _visible_text(text: str, parse_mode: Any, limit: int, too_long: str) -> str:
    """The text as shown (HTML parsed, like Telegram); a 400 over ``limit`` UTF-16 units."""
    plain = _plain_text(text) if str(parse_mode or "").upper() == "HTML" else text
    if _utf16_len(plain) > limit:
        raise BotAPIError(400, f"Bad Request: {too_long}")
    return plain


def _int_param(params: dict[str, Any], key: str, default: int | None) -> int | None:
    value = params.get(key, default)
    if value is None or isinstance(value, int):
        return value
    raise BotAPIError(400, f"Bad Request: {key} must be an integer")


def _error_response(error: BotAPIError) -> web.Response:
    body: dict[str, Any] = {"ok": False, "error_code": error.error_code, "description": error.description}
    if error.parameters:
        body["parameters"] = error.parameters
    return web.json_response(body, status=error.error_code)


def _utf16_len(text: str) -> int:
    # Telegram counts lengths in UTF-16 code units.
    return len(text.encode("utf-16-le")) // 2


class _TelegramHTML(HTMLParser):
    """Checks HTML the way Telegram's parse mode does (known tags, balanced) and keeps the text."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.open: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in HTML_TAGS:
            raise BotAPIError(400, f'Bad Request: can\'t parse entities: Unsupported start tag "{tag}"')
        self.open.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if not self.open or self.open[-1] != tag:
            raise BotAPIError(400, f'Bad Request: can\'t parse entities: Unexpected end tag "{tag}"')
        self.open.pop()

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def _plain_text(html: str) -> str:
    parser = _TelegramHTML()
    parser.feed(html)
    parser.close()
    if parser.open:
        raise BotAPIError(
            400,
            "Bad Request: can't parse entities: "
            f'Can\'t find end tag corresponding to start tag "{parser.open[-1]}"',
        )
    return "".join(parser.text)
