"""The sandbox: fake Telegram Bot API, fake Planfix and the page that plays both, in one process.

What a person does on the page goes through the same doors as in real life: a message written
in the group becomes an update waiting in the fake Bot API (the gateway fetches it with
getUpdates), a comment written in the task becomes a comment in the fake Planfix and the
scenario's webhook POST to the planfix_gateway. What the page shows is what the fakes hold (the
bot's messages, the task's comments) and what the NATS streams hold (the timeline, and which
group is bound to which task). Nothing here talks to a service directly.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import socket
from dataclasses import dataclass, field
from datetime import UTC, datetime
from html import escape
from pathlib import Path
from typing import Any

import structlog
from aiohttp import web

from bridge_lib import link_codes
from sandbox.config import (
    EMPLOYEES,
    PEOPLE,
    PEOPLE_BY_KEY,
    SANDBOX_BOT_TOKEN,
    SANDBOX_GROUP_PACE,
    SANDBOX_PLANFIX_TOKEN,
    Person,
    SandboxConfig,
)
from sandbox.fake_planfix import ROBOT_ID, FakePlanfix
from sandbox.fake_telegram import FakeTelegram
from sandbox.html_clean import clean_html, text_to_html
from sandbox.persistence import StateFile, keep_saved
from sandbox.timeline import Timeline, follow_streams

log = structlog.get_logger("sandbox")

WEB_DIR = Path(__file__).parent / "web"
FIRST_GROUP_ID = -1001000000001
MAX_UPLOAD_BYTES = 20 * 1024 * 1024
# Only the page's own script sends this header; a form on another site cannot (CORS preflight).
ACTION_HEADER = "X-Sandbox"
IMAGE_MAGIC = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF8", "image/gif"),
    (b"RIFF", "image/webp"),
)
PAGE_SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
        "connect-src 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


@dataclass
class Group:
    chat_id: int
    title: str
    forum: bool = False
    # (thread id, name) of each forum topic, in the order they were opened.
    topics: list[tuple[int, str]] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {
            "chat_id": self.chat_id,
            "title": self.title,
            "forum": self.forum,
            "topics": [{"thread_id": thread, "name": name} for thread, name in self.topics],
        }


@dataclass
class Post:
    """A message a person wrote through the page, as the Bot API last described it."""

    person: str
    message: dict[str, Any]
    edited: bool = False


class Sandbox:
    def __init__(self, config: SandboxConfig) -> None:
        self.config = config
        self.telegram = FakeTelegram(
            token=SANDBOX_BOT_TOKEN, group_pace=SANDBOX_GROUP_PACE, keep_sent_files=True
        )
        self.planfix = FakePlanfix(token=SANDBOX_PLANFIX_TOKEN)
        self.timeline = Timeline()
        self.groups: list[Group] = []
        self.posts: dict[int, list[Post]] = {}
        self.state_file = StateFile(config.state_dir)
        self._runner: web.AppRunner | None = None
        self._stop = asyncio.Event()
        self._background: list[asyncio.Task[None]] = []
        self.url = ""

    # --- life-cycle -----------------------------------------------------------------------

    async def start(self) -> None:
        state, files = self.state_file.load()
        if state:
            self.telegram.restore(state["telegram"], files.get("telegram", {}))
            self.planfix.restore(state["planfix"], files.get("planfix", {}))
            self._restore_page(state["page"])
        await self.telegram.start(port=self.config.telegram_port)
        await self.planfix.start(port=self.config.planfix_port)
        self.planfix.webhook_url = self.config.planfix_webhook_url or None
        if not self.groups:
            self._seed()
        self._runner = web.AppRunner(self.web_app(), access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.config.host, self.config.port))
        await web.SockSite(self._runner, sock).start()
        self.url = f"http://{self.config.host}:{sock.getsockname()[1]}"
        self._background = [
            asyncio.create_task(follow_streams(self.timeline, self.config.nats_url, self._stop)),
            asyncio.create_task(keep_saved(self.state_file, self.collect_state)),
        ]
        log.info(
            "sandbox_started",
            page=self.url,
            telegram=self.telegram.base_url,
            planfix=self.planfix.base_url,
            state_dir=str(self.config.state_dir),
        )

    async def stop(self) -> None:
        self._stop.set()
        for task in self._background:
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        if self._runner is not None:
            await self._runner.cleanup()
        await self.telegram.stop()
        await self.planfix.stop()

    def _seed(self) -> None:
        """A first start: one group with the bot in it (it greets), and a task to bind to."""
        self.add_group("Support group", forum=False)
        # Anna and Boris are employees whose Planfix profiles carry their Telegram ("authorize
        # Telegram"), so /task works for them; Chen is nobody Planfix knows.
        linked = {
            person.key: self.planfix.add_employee(
                person.first_name,
                lastname=person.last_name,
                telegram_id=person.user_id,
                telegram=person.username,
            )
            for person in PEOPLE
            if person.key in ("anna", "boris")
        }
        number = self.planfix.add_task("Printer on floor 2 is jammed")
        self.planfix.set_task_people(number, assigner=linked["anna"], participants=[linked["boris"]])
        self.planfix.add_employee_comment(
            number,
            "Reported by reception: the <b>paper tray</b> is stuck.",
            author_id=EMPLOYEES[0][0],
            author_name=EMPLOYEES[0][1],
            fire_webhook=False,
        )

    # --- state on disk ----------------------------------------------------------------------

    def collect_state(self) -> tuple[dict[str, Any], dict[str, dict[str, bytes]]]:
        telegram, telegram_files = self.telegram.snapshot()
        planfix, planfix_files = self.planfix.snapshot()
        page = {
            "groups": [group.as_json() for group in self.groups],
            "posts": {
                str(chat_id): [{"person": p.person, "message": p.message, "edited": p.edited} for p in posts]
                for chat_id, posts in self.posts.items()
            },
        }
        state = {"telegram": telegram, "planfix": planfix, "page": page}
        return state, {"telegram": telegram_files, "planfix": planfix_files}

    def _restore_page(self, page: dict[str, Any]) -> None:
        for saved in page.get("groups", []):
            topics = [(int(t["thread_id"]), str(t["name"])) for t in saved.get("topics", [])]
            self.groups.append(
                Group(int(saved["chat_id"]), str(saved["title"]), bool(saved["forum"]), topics)
            )
        for chat_id, posts in page.get("posts", {}).items():
            self.posts[int(chat_id)] = [Post(p["person"], p["message"], bool(p.get("edited"))) for p in posts]

    # --- what people do -------------------------------------------------------------------

    def add_group(self, title: str, *, forum: bool) -> Group:
        """A new group with the cast in it; Anna adds the bot (as an admin, so it sees reactions)."""
        chat_id = FIRST_GROUP_ID - len(self.groups)
        group = Group(chat_id, title, forum)
        self.groups.append(group)
        for person in PEOPLE:
            status = "administrator" if person.status == "anonymous" else person.status
            self.telegram.set_member_status(chat_id, person.user_id, status)
        self.telegram.set_bot_membership(
            chat_id,
            "administrator",
            old_status="left",
            by_user_id=PEOPLE[0].user_id,
            chat_title=title,
            forum=forum,
        )
        return group

    def add_topic(self, group: Group, name: str, person: Person) -> int:
        thread_id = self.telegram.create_forum_topic(
            group.chat_id, name, user_id=person.user_id, first_name=person.first_name
        )
        group.topics.append((thread_id, name))
        return thread_id

    def post_message(
        self,
        group: Group,
        person: Person,
        text: str,
        *,
        thread_id: int | None = None,
        reply_to: int | None = None,
        upload: tuple[str, str, bytes] | None = None,
        language_code: str = "en",
    ) -> dict[str, Any]:
        extra: dict[str, Any] = {}
        body: str | None = text
        if upload is not None:
            name, content_type, data = upload
            reference = self.telegram.add_file(data)
            if content_type.startswith("image/") and _image_type(data):
                # Telegram sends a photo in several sizes; one is enough for the bridge.
                extra["photo"] = [{**reference, "width": 800, "height": 600}]
            else:
                extra["document"] = {**reference, "file_name": name, "mime_type": content_type}
            if text:
                extra["caption"] = text
            body = None
        if reply_to is not None:
            answered = self._message_json(group, reply_to)
            if answered is not None:
                extra["reply_to_message"] = answered
        sender_chat = None
        if person.status == "anonymous":
            sender_chat = {"id": group.chat_id, "type": _chat_type(group.chat_id), "title": group.title}
        update = self._written_by(
            person,
            group.chat_id,
            body,
            chat_title=group.title,
            thread_id=thread_id,
            sender_chat=sender_chat,
            extra=extra,
            # The writer's Telegram app language: a group's first /task speaks it (until /lang).
            language_code=language_code,
        )
        message: dict[str, Any] = update["message"]
        self.posts.setdefault(group.chat_id, []).append(Post(person.key, message))
        return message

    def edit_message(self, group: Group, message_id: int, text: str) -> dict[str, Any]:
        post = next(
            (p for p in self.posts.get(group.chat_id, []) if p.message["message_id"] == message_id), None
        )
        if post is None:
            raise web.HTTPNotFound(text="no such message written from this page")
        update = self.telegram.edit_group_message({"message": post.message}, text)
        post.message = update["edited_message"]
        post.edited = True
        return post.message

    def add_comment(
        self, task_number: int, employee_id: str, text: str, upload: tuple[str, str, bytes] | None
    ) -> int:
        names = dict(EMPLOYEES)
        files: tuple[int, ...] = ()
        if upload is not None:
            name, _, data = upload
            files = (self.planfix.add_file(name, data),)
        return self.planfix.add_employee_comment(
            task_number,
            text_to_html(text),
            author_id=employee_id,
            author_name=names.get(employee_id, "Planfix employee"),
            files=files,
        )

    # --- what the page shows ----------------------------------------------------------------

    def group(self, chat_id: int) -> Group:
        found = next((g for g in self.groups if g.chat_id == chat_id), None)
        if found is None:
            raise web.HTTPNotFound(text="no such group")
        return found

    def view(self, chat_id: int | None, thread_id: int | None) -> dict[str, Any]:
        group = self.group(chat_id) if chat_id is not None else self.groups[0]
        if not group.forum or thread_id not in {thread for thread, _ in group.topics}:
            thread_id = None
        bound = self.timeline.bindings.get((group.chat_id, thread_id))
        return {
            "groups": [g.as_json() for g in self.groups],
            "people": [self._person_json(p) for p in PEOPLE],
            "employees": [{"id": person_id, "name": name} for person_id, name in EMPLOYEES],
            "chat": group.as_json(),
            "thread_id": thread_id,
            "messages": self._messages(group, thread_id),
            "task": self._task(bound.task_number) if bound else None,
            "tasks": [{"number": t.number, "name": t.name} for t in self.planfix.tasks()],
            "timeline_connected": self.timeline.connected,
        }

    def _person_json(self, person: Person) -> dict[str, Any]:
        linked = self.timeline.people.get(person.user_id)
        return {
            "key": person.key,
            "name": _person_label(person),
            "linked": (
                {"planfix_id": linked.planfix_id, "name": linked.name, "how": str(linked.how)}
                if linked
                else None
            ),
        }

    async def link_person(self, person: Person) -> None:
        """What a person does to link themselves, in one go: ``/link`` in their private chat with
        the bot, then the code written as a comment in Planfix by "their" employee (made here)."""
        employee = next(
            (
                e.id
                for e in self.planfix.employees()
                if e.name == person.first_name and e.lastname == person.last_name
            ),
            None,
        ) or self.planfix.add_employee(person.first_name, lastname=person.last_name)
        before = len(self.telegram.sent_messages(person.user_id))
        self._in_private_chat(person, "/link")
        code = None
        for _ in range(200):
            for message in self.telegram.sent_messages(person.user_id)[before:]:
                if found := link_codes.code_in(str(message.get("text", ""))):
                    code = found
            if code:
                break
            await asyncio.sleep(0.05)
        if code is None:
            raise web.HTTPServiceUnavailable(text="the bot gave no code (is the bridge running?)")
        task = self.planfix.tasks()[0].number if self.planfix.tasks() else self.planfix.add_task("Linking")
        self.planfix.add_employee_comment(
            task, code, author_id=employee, author_name=f"{person.first_name} {person.last_name}"
        )

    def unlink_person(self, person: Person) -> None:
        self._in_private_chat(person, "/unlink")

    def _in_private_chat(self, person: Person, text: str) -> None:
        """``person`` writes ``text`` to the bot in their private chat (its id is theirs)."""
        self._written_by(person, person.user_id, text)

    def _written_by(self, person: Person, chat_id: int, text: str | None, **more: Any) -> dict[str, Any]:
        """The update of ``person``'s message in ``chat_id`` (``more``: as ``add_group_message``)."""
        return self.telegram.add_group_message(
            chat_id,
            text,
            user_id=person.user_id,
            first_name=person.first_name,
            last_name=person.last_name,
            username=person.username,
            **more,
        )

    def _messages(self, group: Group, thread_id: int | None) -> list[dict[str, Any]]:
        shown: list[dict[str, Any]] = []
        for post in self.posts.get(group.chat_id, []):
            message = post.message
            shown.append(
                {
                    "id": message["message_id"],
                    "from_bot": False,
                    "person": post.person,
                    "author": _author(post.person, group),
                    "text": message.get("text") or message.get("caption") or "",
                    "photo": message["photo"][-1]["file_id"] if message.get("photo") else None,
                    "document": (message.get("document") or {}).get("file_name"),
                    "document_id": (message.get("document") or {}).get("file_id"),
                    "reply_to": (message.get("reply_to_message") or {}).get("message_id"),
                    "thread_id": message.get("message_thread_id"),
                    "edited": post.edited,
                    "time": _clock(message.get("edit_date") or message.get("date")),
                }
            )
        for message in self.telegram.chat_messages(group.chat_id):
            shown.append(
                {
                    "id": message["message_id"],
                    "from_bot": True,
                    "author": "Planfix Bridge (bot)",
                    "html": _bot_html(message),
                    "kind": message["type"],
                    "file_name": message["file_name"],
                    "file_size": message["file_size"],
                    "file_id": message.get("file_id"),
                    "reply_to": message["reply_to_message_id"],
                    "thread_id": message["message_thread_id"],
                    "edited": message["edited"],
                }
            )
        if group.forum:
            shown = [m for m in shown if m["thread_id"] == thread_id]
        return sorted(shown, key=lambda m: int(m["id"]))

    def _task(self, number: int) -> dict[str, Any] | None:
        task = self.planfix.task(number)
        if task is None:
            return None
        comments = []
        for comment in task.comments:
            files = []
            for file_id in comment.files:
                stored = self.planfix.file(file_id)
                if stored is not None:
                    files.append(
                        {
                            "id": file_id,
                            "name": stored.name,
                            "size": stored.size,
                            "image": bool(_image_type(stored.data)),
                        }
                    )
            comments.append(
                {
                    "id": comment.id,
                    "author": comment.owner_name or comment.owner_id,
                    "by_bridge": comment.owner_id == ROBOT_ID,
                    "html": clean_html(comment.description),
                    "time": comment.created_at.astimezone(UTC).strftime("%d.%m %H:%M:%S"),
                    "files": files,
                    "deleted": comment.is_deleted,
                    "rewritten": comment.updates > 0,
                }
            )
        return {"number": task.number, "name": task.name, "comments": comments}

    def _message_json(self, group: Group, message_id: int) -> dict[str, Any] | None:
        """A message of the group as the Bot API puts it under ``reply_to_message``."""
        for post in self.posts.get(group.chat_id, []):
            if post.message["message_id"] == message_id:
                return dict(post.message)
        for message in self.telegram.chat_messages(group.chat_id):
            if message["message_id"] == message_id:
                answered: dict[str, Any] = {
                    "message_id": message_id,
                    "from": dict(self.telegram.bot_user),
                    "chat": {"id": group.chat_id, "type": _chat_type(group.chat_id), "title": group.title},
                    "date": int(datetime.now(UTC).timestamp()),
                }
                answered["text" if message["type"] == "text" else "caption"] = message["text"]
                return answered
        return None

    # --- HTTP -------------------------------------------------------------------------------

    def web_app(self) -> web.Application:
        app = web.Application(client_max_size=MAX_UPLOAD_BYTES + 2**20, middlewares=[_guard])
        app.router.add_get("/", self._index)
        app.router.add_get("/static/{name}", self._static)
        app.router.add_get("/api/state", self._state)
        app.router.add_post("/api/groups", self._new_group)
        app.router.add_post(r"/api/groups/{chat:-?\d+}/topics", self._new_topic)
        app.router.add_post(r"/api/groups/{chat:-?\d+}/messages", self._new_message)
        app.router.add_post(r"/api/groups/{chat:-?\d+}/messages/{id:\d+}/edit", self._edit)
        app.router.add_post(r"/api/tasks/{number:\d+}/comments", self._new_comment)
        app.router.add_post("/api/people/{key}/link", self._link)
        app.router.add_post("/api/people/{key}/unlink", self._unlink)
        app.router.add_get("/api/files/telegram/{file_id}", self._telegram_file)
        app.router.add_get(r"/api/files/planfix/{id:\d+}", self._planfix_file)
        app.router.add_get("/api/events", self._events)
        app.router.add_get(r"/api/events/{stream:[A-Z_]+}/{seq:\d+}", self._event)
        return app

    async def _index(self, request: web.Request) -> web.StreamResponse:
        return web.FileResponse(WEB_DIR / "index.html", headers=PAGE_SECURITY_HEADERS)

    async def _static(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        if name not in ("app.js", "style.css"):
            raise web.HTTPNotFound()
        return web.FileResponse(WEB_DIR / name, headers=PAGE_SECURITY_HEADERS)

    async def _state(self, request: web.Request) -> web.Response:
        chat = _optional_int(request.query.get("chat"))
        thread = _optional_int(request.query.get("thread"))
        return web.json_response(self.view(chat, thread))

    async def _new_group(self, request: web.Request) -> web.Response:
        form = await request.post()
        title = _text(form, "title", required=True)[:128]
        group = self.add_group(title, forum=_text(form, "forum") in ("1", "true", "on"))
        return web.json_response({"chat_id": group.chat_id})

    async def _new_topic(self, request: web.Request) -> web.Response:
        group = self.group(int(request.match_info["chat"]))
        if not group.forum:
            raise web.HTTPBadRequest(text="topics exist only in forum groups")
        form = await request.post()
        thread_id = self.add_topic(group, _text(form, "name", required=True)[:128], _person(form))
        return web.json_response({"thread_id": thread_id})

    async def _new_message(self, request: web.Request) -> web.Response:
        group = self.group(int(request.match_info["chat"]))
        form = await request.post()
        upload = _upload(form)
        text = _text(form, "text")
        if not text.strip() and upload is None:
            raise web.HTTPBadRequest(text="write something or attach a file")
        message = self.post_message(
            group,
            _person(form),
            text,
            thread_id=_optional_int(_text(form, "thread")) if group.forum else None,
            reply_to=_optional_int(_text(form, "reply_to")),
            upload=upload,
            language_code=_telegram_language(form),
        )
        return web.json_response({"message_id": message["message_id"]})

    async def _edit(self, request: web.Request) -> web.Response:
        group = self.group(int(request.match_info["chat"]))
        form = await request.post()
        message = self.edit_message(group, int(request.match_info["id"]), _text(form, "text", required=True))
        return web.json_response({"message_id": message["message_id"]})

    async def _link(self, request: web.Request) -> web.Response:
        await self.link_person(self._person(request))
        return web.json_response({"ok": True})

    async def _unlink(self, request: web.Request) -> web.Response:
        self.unlink_person(self._person(request))
        return web.json_response({"ok": True})

    @staticmethod
    def _person(request: web.Request) -> Person:
        person = PEOPLE_BY_KEY.get(request.match_info["key"])
        if person is None:
            raise web.HTTPNotFound(text="no such person")
        return person

    async def _new_comment(self, request: web.Request) -> web.Response:
        number = int(request.match_info["number"])
        if self.planfix.task(number) is None:
            raise web.HTTPNotFound(text="no such task")
        form = await request.post()
        upload = _upload(form)
        text = _text(form, "text")
        if not text.strip() and upload is None:
            raise web.HTTPBadRequest(text="write something or attach a file")
        employee = _text(form, "author") or EMPLOYEES[0][0]
        comment_id = self.add_comment(number, employee, text, upload)
        return web.json_response({"comment_id": comment_id})

    async def _telegram_file(self, request: web.Request) -> web.Response:
        return _file_response(self.telegram.file_bytes(request.match_info["file_id"]), "file")

    async def _planfix_file(self, request: web.Request) -> web.Response:
        stored = self.planfix.file(int(request.match_info["id"]))
        return _file_response(stored.data if stored else None, stored.name if stored else "file")

    async def _event(self, request: web.Request) -> web.Response:
        entry = self.timeline.by_key.get(f"{request.match_info['stream']}/{request.match_info['seq']}")
        if entry is None:
            raise web.HTTPNotFound(text="not in the timeline (older events are let go)")
        return web.json_response({**entry.row(), "event": entry.body})

    async def _events(self, request: web.Request) -> web.StreamResponse:
        """Server-sent events: the timeline so far, then each new event as it is stored."""
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-cache",
                **PAGE_SECURITY_HEADERS,
            }
        )
        await response.prepare(request)
        queue: asyncio.Queue[Any] = asyncio.Queue()
        # Listen before sending the history: nothing falls in between (the page drops repeats).
        self.timeline.listeners.add(queue)
        try:
            for entry in self.timeline.history():
                await response.write(_sse(entry.row()))
            while not self._stop.is_set():
                try:
                    entry = await asyncio.wait_for(queue.get(), 15.0)
                except TimeoutError:
                    await response.write(b": still here\n\n")
                    continue
                await response.write(_sse(entry.row()))
        except (ConnectionResetError, RuntimeError):
            pass  # the page went away
        finally:
            self.timeline.listeners.discard(queue)
        return response


@web.middleware
async def _guard(request: web.Request, handler: Any) -> web.StreamResponse:
    if request.method == "POST" and request.headers.get(ACTION_HEADER) != "1":
        raise web.HTTPForbidden(text=f"actions need the {ACTION_HEADER} header (the page's script sends it)")
    response: web.StreamResponse = await handler(request)
    return response


def _sse(row: dict[str, Any]) -> bytes:
    return f"data: {json.dumps(row, ensure_ascii=False)}\n\n".encode()


def _text(form: Any, name: str, *, required: bool = False) -> str:
    value = form.get(name)
    text = value if isinstance(value, str) else ""
    if required and not text.strip():
        raise web.HTTPBadRequest(text=f"{name} is required")
    return text


def _optional_int(value: str | None) -> int | None:
    try:
        return int(value) if value else None
    except ValueError:
        return None


def _person(form: Any) -> Person:
    person = PEOPLE_BY_KEY.get(_text(form, "person") or PEOPLE[0].key)
    if person is None:
        raise web.HTTPBadRequest(text="unknown person")
    return person


# The Telegram app languages the page offers its writers (the bridge speaks both).
TELEGRAM_LANGUAGES = ("en", "ru")


def _telegram_language(form: Any) -> str:
    language = _text(form, "language") or TELEGRAM_LANGUAGES[0]
    if language not in TELEGRAM_LANGUAGES:
        raise web.HTTPBadRequest(text="unknown language")
    return language


def _upload(form: Any) -> tuple[str, str, bytes] | None:
    field = form.get("file")
    if not isinstance(field, web.FileField):
        return None
    data = field.file.read()
    if not data:
        return None
    return field.filename or "file", field.content_type or "application/octet-stream", data


def _image_type(data: bytes) -> str | None:
    return next((kind for magic, kind in IMAGE_MAGIC if data.startswith(magic)), None)


def _file_response(data: bytes | None, name: str) -> web.Response:
    if data is None:
        raise web.HTTPNotFound()
    kind = _image_type(data)
    headers = {"X-Content-Type-Options": "nosniff", "Cache-Control": "max-age=3600"}
    if kind is None:
        # Never let the browser render an uploaded file as a page: download it.
        safe = "".join(c for c in name if c.isalnum() or c in "._- ") or "file"
        headers["Content-Disposition"] = f'attachment; filename="{safe}"'
    return web.Response(body=data, content_type=kind or "application/octet-stream", headers=headers)


def _chat_type(chat_id: int) -> str:
    return "supergroup" if str(chat_id).startswith("-100") else "group"


def _person_label(person: Person) -> str:
    if person.status == "anonymous":
        return "Anonymous admin (posts as the group)"
    role = {"creator": "owner", "administrator": "admin"}.get(person.status, "member")
    return f"{person.name} ({role})"


def _author(person_key: str, group: Group) -> str:
    person = PEOPLE_BY_KEY.get(person_key)
    if person is None:
        return person_key
    return f"{group.title} (anonymous admin)" if person.status == "anonymous" else person.name


def _bot_html(message: dict[str, Any]) -> str:
    """The bot's message as Telegram shows it: its HTML when it was sent as HTML, else its text."""
    html, text = str(message["html"] or ""), str(message["text"] or "")
    if html and html != text:
        return clean_html(html)
    return escape(text, quote=False).replace("\n", "<br>")


def _clock(timestamp: Any) -> str:
    if not isinstance(timestamp, int):
        return ""
    return datetime.fromtimestamp(timestamp, UTC).strftime("%H:%M:%S")


async def run(config: SandboxConfig) -> None:
    sandbox = Sandbox(config)
    await sandbox.start()
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stopping.set)
    print(f"sandbox page: {sandbox.url}", flush=True)
    await stopping.wait()
    log.info("sandbox_stopping")
    await sandbox.stop()
