"""Fuzzing the Telegram gateway: generated and mutated updates, through the handlers and the
webhook endpoint, with right and wrong secrets.

* The handling path (what polling feeds every update through): an update either fails to decode
  (refused with aiogram's reason) or is handled without an exception escaping, and leaves a
  trace: an event stored, or a log line saying why there is none.
* The webhook endpoint of a real gateway process: every request gets a deliberate answer (never
  a 5xx, and never a 400: with the right secret, what cannot be decoded is a dead letter answered
  200, so Telegram would not send it again for ever), a request without the right secret never
  becomes an event, and the process keeps serving.

Valid updates of every kind the gateway handles are generated (messages of every content type,
commands, service messages, edits, reactions, membership changes), then mutated: fields removed
or given the wrong type, huge or odd unicode strings, deep nesting, bytes flipped.
``FUZZ_EXAMPLES`` scales the run (``make fuzz``: 20,000); the counts are printed.
"""

from __future__ import annotations

import itertools
import json
import os
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from aiogram.types import Update, User
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError
from structlog.testing import capture_logs

from bridge_lib.eventbus import EventPublisher, ensure_streams, make_broker
from bridge_lib.telegram import make_bot
from contracts.events import Event
from devtools import devstack
from sandbox.fake_telegram import FakeTelegram
from services.telegram_gateway.app import build_dispatcher
from services.telegram_gateway.polling import handle_update
from services.telegram_gateway.webhook import SECRET_HEADER
from tests.conftest import BOT_TOKEN
from tests.fuzzing import with_flipped_bytes
from tests.support import LoopThread, ServiceProcess, eventually, own_nats_server, read_stream_events, serving

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "300"))
# aiogram warns about every update of no kind it knows; generated ones are meant to be like that.
pytestmark = [
    pytest.mark.filterwarnings("ignore:Detected unknown update type:RuntimeWarning"),
    # `make fuzz` runs far more inputs than the suite's per-test limit allows for.
    pytest.mark.timeout(max(120, EXAMPLES // 20)),
]
WEBHOOK_SECRET = "fuzz-telegram-secret_0123456789"
BOT_USERNAME = "planfix_bridge_bot"

# ---- valid updates of every kind the gateway handles -----------------------------------------

odd_text = st.text(max_size=40) | st.sampled_from(
    [
        "",
        " ",
        "\u200b",
        "🙂" * 30,
        "\x00",
        "\ud800".encode(errors="surrogatepass").decode(errors="replace"),
        "ÿ" * 5,
    ]
)
ids = st.integers(1, 2**52)
chat_ids = st.integers(-(10**13), -1) | st.integers(1, 10**10)
dates = st.integers(0, 2**31)
files = st.fixed_dictionaries(
    {"file_id": st.text(min_size=1, max_size=20), "file_unique_id": st.text(min_size=1, max_size=12)},
    optional={"file_size": st.integers(0, 2**40), "file_name": odd_text, "mime_type": odd_text},
)
users = st.fixed_dictionaries(
    {"id": ids, "is_bot": st.booleans(), "first_name": st.text(min_size=1, max_size=20)},
    optional={
        "last_name": odd_text,
        "username": st.from_regex(r"[A-Za-z][A-Za-z0-9_]{4,31}", fullmatch=True),
    },
)
chats = st.fixed_dictionaries(
    {"id": chat_ids, "type": st.sampled_from(["group", "supergroup", "supergroup", "private", "channel"])},
    optional={"title": odd_text, "is_forum": st.booleans(), "username": odd_text},
)
entities = st.lists(
    st.fixed_dictionaries(
        {
            "type": st.sampled_from(
                [
                    "bold",
                    "italic",
                    "code",
                    "pre",
                    "text_link",
                    "mention",
                    "bot_command",
                    "spoiler",
                    "blockquote",
                    "custom_emoji",
                ]
            ),
            "offset": st.integers(0, 60),
            "length": st.integers(0, 60),
        },
        optional={
            "url": st.just("https://example.com/x"),
            "language": odd_text,
            "custom_emoji_id": st.just("5"),
        },
    ),
    max_size=4,
)
commands = st.sampled_from(
    [
        "/task",
        "/task 4821",
        "/task Fix the printer",
        f"/task@{BOT_USERNAME} 12",
        "/TASK x",
        "/status",
        "/unbind",
        "/help",
        "/task@other_bot 1",
        "/start",
    ]
)
photo_sizes = st.lists(
    st.builds(
        lambda f, w, h: {**f, "width": w, "height": h}, files, st.integers(1, 5000), st.integers(1, 5000)
    ),
    min_size=1,
    max_size=3,
)
duration = st.integers(0, 10**6)
content = st.one_of(
    st.fixed_dictionaries({"text": odd_text}, optional={"entities": entities}),
    commands.map(
        lambda text: {
            "text": text,
            "entities": [{"type": "bot_command", "offset": 0, "length": len(text.split()[0])}],
        }
    ),
    st.fixed_dictionaries(
        {"photo": photo_sizes}, optional={"caption": odd_text, "caption_entities": entities}
    ),
    st.fixed_dictionaries({"document": files}, optional={"caption": odd_text}),
    st.builds(lambda f, d: {"voice": {**f, "duration": d}}, files, duration),
    st.builds(lambda f, d: {"audio": {**f, "duration": d}}, files, duration),
    st.builds(lambda f, d: {"video": {**f, "duration": d, "width": 1, "height": 1}}, files, duration),
    st.builds(lambda f, d: {"video_note": {**f, "duration": d, "length": 240}}, files, duration),
    st.builds(lambda f, d: {"animation": {**f, "duration": d, "width": 1, "height": 1}}, files, duration),
    st.builds(
        lambda f, kind: {
            "sticker": {
                **f,
                "type": kind,
                "width": 512,
                "height": 512,
                "is_animated": False,
                "is_video": False,
            }
        },
        files,
        st.sampled_from(["regular", "mask", "custom_emoji"]),
    ),
    st.builds(
        lambda la, lo: {"location": {"latitude": la, "longitude": lo}},
        st.floats(-90, 90),
        st.floats(-180, 180),
    ),
    st.builds(
        lambda p, n: {"contact": {"phone_number": p, "first_name": n}},
        odd_text,
        st.text(min_size=1, max_size=10),
    ),
    st.builds(
        lambda q, options: {
            "poll": {
                "id": "p1",
                "question": q,
                "options": [{"text": o, "voter_count": 0} for o in options],
                "total_voter_count": 0,
                "is_closed": False,
                "is_anonymous": True,
                "type": "regular",
                "allows_multiple_answers": False,
            }
        },
        odd_text,
        st.lists(odd_text, min_size=2, max_size=4),
    ),
    st.builds(
        lambda e, v: {"dice": {"emoji": e, "value": v}},
        st.sampled_from(["🎲", "🎯", "🏀"]),
        st.integers(1, 6),
    ),
    st.builds(lambda u: {"new_chat_members": u}, st.lists(users, min_size=1, max_size=2)),
    st.builds(lambda u: {"left_chat_member": u}, users),
    st.builds(lambda c: {"migrate_to_chat_id": c}, chat_ids),
    st.builds(lambda c: {"migrate_from_chat_id": c}, chat_ids),
    st.just({"group_chat_created": True}),
    st.builds(lambda t: {"new_chat_title": t}, st.text(min_size=1, max_size=10)),
)
forward_origins = st.one_of(
    st.builds(lambda d, u: {"type": "user", "date": d, "sender_user": u}, dates, users),
    st.builds(lambda d, n: {"type": "hidden_user", "date": d, "sender_user_name": n}, dates, odd_text),
    st.builds(lambda d, c: {"type": "chat", "date": d, "sender_chat": c}, dates, chats),
    st.builds(lambda d, c, m: {"type": "channel", "date": d, "chat": c, "message_id": m}, dates, chats, ids),
)


def message_of(base: dict[str, Any], body: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    return {**base, **body, **extra}


message_bases = st.fixed_dictionaries(
    {"message_id": ids, "date": dates, "chat": chats}, optional={"from": users}
)
plain_messages = st.builds(message_of, message_bases, content, st.just({}))
message_extras = st.fixed_dictionaries(
    {},
    optional={
        "media_group_id": st.text(min_size=1, max_size=8),
        "message_thread_id": ids,
        "is_topic_message": st.booleans(),
        "sender_chat": chats,
        "forward_origin": forward_origins,
        "reply_to_message": plain_messages,
        "edit_date": dates,
        "author_signature": odd_text,
    },
)
messages = st.builds(message_of, message_bases, content, message_extras)
reaction_types = st.one_of(
    st.builds(lambda e: {"type": "emoji", "emoji": e}, st.sampled_from(["👍", "❤", "🔥", "x"])),
    st.just({"type": "custom_emoji", "custom_emoji_id": "123"}),
    st.just({"type": "paid"}),
)
reactions = st.fixed_dictionaries(
    {
        "chat": chats,
        "message_id": ids,
        "date": dates,
        "old_reaction": st.lists(reaction_types, max_size=2),
        "new_reaction": st.lists(reaction_types, max_size=3),
    },
    optional={"user": users, "actor_chat": chats},
)
member_states = st.one_of(
    st.builds(lambda u: {"status": "member", "user": u}, users),
    st.builds(lambda u: {"status": "left", "user": u}, users),
    st.builds(lambda u, d: {"status": "kicked", "user": u, "until_date": d}, users, dates),
    st.builds(lambda u: {"status": "creator", "user": u, "is_anonymous": False}, users),
    st.builds(
        lambda u: {
            "status": "administrator",
            "user": u,
            "can_be_edited": False,
            "is_anonymous": False,
            "can_manage_chat": True,
            "can_delete_messages": True,
            "can_manage_video_chats": False,
            "can_restrict_members": True,
            "can_promote_members": False,
            "can_change_info": True,
            "can_invite_users": True,
            "can_post_stories": False,
            "can_edit_stories": False,
            "can_delete_stories": False,
        },
        users,
    ),
)
memberships = st.builds(
    lambda c, u, d, old, new: {
        "chat": c,
        "from": u,
        "date": d,
        "old_chat_member": old,
        "new_chat_member": new,
    },
    chats,
    users,
    dates,
    member_states,
    member_states,
)
updates = st.builds(
    lambda update_id, kind_and_body: {"update_id": update_id, kind_and_body[0]: kind_and_body[1]},
    st.integers(1, 2**31),
    st.one_of(
        st.tuples(st.just("message"), messages),
        st.tuples(st.just("edited_message"), messages),
        st.tuples(st.just("message_reaction"), reactions),
        st.tuples(st.just("my_chat_member"), memberships),
        st.tuples(st.just("channel_post"), messages),
    ),
)

# ---- mutations ---------------------------------------------------------------------------------


def json_containers(inner: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    json_containers,
    max_leaves=8,
)
weird_values = st.one_of(
    json_values,
    st.sampled_from([None, True, -1, 0, 2**64, -(2**63), 1e308, "", "x" * 100_000, "🙂" * 5000, [], {}]),
    st.integers(1, 150).map(lambda depth: json.loads("[" * depth + "]" * depth)),
    st.integers(1, 150).map(lambda depth: json.loads('{"a":' * depth + "1" + "}" * depth)),
)


def paths_in(value: Any, prefix: tuple[Any, ...] = (), depth: int = 0) -> Iterator[tuple[Any, ...]]:
    """Every place in a JSON value (dict keys, list indices), outermost first."""
    if depth > 12:
        return
    items: Any = (
        value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    )
    for key, inner in items:
        yield (*prefix, key)
        yield from paths_in(inner, (*prefix, key), depth + 1)


def mutate(update: dict[str, Any], mutations: list[tuple[int, str, Any]]) -> Any:
    """Apply (where, how, value) mutations: delete, replace, wrap in a list, or nest the update."""
    mutated: Any = json.loads(json.dumps(update))
    for where, how, value in mutations:
        places = list(paths_in(mutated))
        if not places:
            return value
        *parents, key = places[where % len(places)]
        parent = mutated
        for step in parents:
            parent = parent[step]
        if how == "delete":
            del parent[key]
        elif how == "replace":
            parent[key] = value
        elif how == "wrap":
            parent[key] = [parent[key]]
        else:  # "nest": the whole update inside itself
            parent[key] = json.loads(json.dumps(update))
    return mutated


mutated_updates = st.builds(
    mutate,
    updates,
    st.lists(
        st.tuples(
            st.integers(0, 10**6),
            st.sampled_from(["delete", "replace", "replace", "wrap", "nest"]),
            weird_values,
        ),
        min_size=1,
        max_size=4,
    ),
)
# Valid updates weigh double: they are the ones that reach the handlers.
update_values = st.one_of(updates, updates, mutated_updates, json_values)


bodies = st.one_of(
    update_values.map(lambda value: json.dumps(value).encode()),
    st.binary(max_size=300),
    with_flipped_bytes(updates.map(lambda value: json.dumps(value).encode()), reach=2000, min_flips=1),
)

# ---- the handling path -------------------------------------------------------------------------


class CountingPublisher(EventPublisher):
    """The real publisher (events go to NATS), counting what it stored."""

    published = 0

    async def publish(self, event: Event, *, subject: str | None = None, msg_id: str | None = None) -> bool:
        stored = await super().publish(event, subject=subject, msg_id=msg_id)
        self.published += 1
        return stored


@pytest.fixture(scope="module")
def own_nats(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A NATS of this module's own: thousands of fuzzed events stay out of the session's streams."""
    with own_nats_server(tmp_path_factory.mktemp("fuzz-telegram")) as url:
        yield url


@pytest.fixture(scope="module")
def own_telegram(loop: LoopThread) -> Iterator[FakeTelegram]:
    with serving(loop, FakeTelegram(token=BOT_TOKEN, bot_username=BOT_USERNAME)) as fake:
        yield fake


def test_every_update_is_refused_with_a_reason_or_handled_leaving_an_event_or_a_log_line(
    loop: LoopThread, own_nats: str, own_telegram: FakeTelegram
) -> None:
    broker = make_broker(own_nats, name="fuzz-telegram")
    loop.run(broker.connect())
    loop.run(ensure_streams(broker))
    publisher = CountingPublisher(broker, give_up_after_s=5.0)
    bot = make_bot(BOT_TOKEN, api_base_url=own_telegram.base_url)
    me = User(
        id=7000001, is_bot=True, first_name="Bridge", username=BOT_USERNAME, can_read_all_group_messages=True
    )
    dispatcher = build_dispatcher(publisher, me)
    outcomes: Counter[str] = Counter()

    async def feed(raw: Any) -> str:
        try:
            update = Update.model_validate(raw, context={"bot": bot})
        except ValidationError as error:
            reason = str(error)
            assert reason, "a refusal says why"
            return "refused"
        before = publisher.published
        with capture_logs() as logs:
            await handle_update(bot, dispatcher, update)
        if publisher.published > before:
            return "event"
        assert logs, f"update {raw!r:.300} left neither an event nor a log line"
        return "logged"

    try:

        @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
        @given(update_values)
        def handle(raw: Any) -> None:
            outcomes[loop.run(feed(raw))] += 1

        handle()
    finally:
        loop.run(bot.session.close())
        loop.run(broker.stop())
    print(f"\nfuzz: {sum(outcomes.values())} updates through the handlers, {dict(outcomes)}, 0 crashes")
    assert outcomes["event"]
    assert outcomes["refused"]


# ---- the webhook endpoint of a real gateway process --------------------------------------------


@pytest.fixture(scope="module")
def webhook_gateway(
    own_nats: str, own_telegram: FakeTelegram, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[ServiceProcess, str]]:
    port = devstack.free_port()
    url = f"http://127.0.0.1:{port}/telegram/webhook"
    env = {
        "TELEGRAM_BOT_TOKEN": BOT_TOKEN,
        "TELEGRAM_API_BASE_URL": own_telegram.base_url,
        "TELEGRAM_WEBHOOK_URL": url,
        "TELEGRAM_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "TELEGRAM_WEBHOOK_HOST": "127.0.0.1",
        "TELEGRAM_WEBHOOK_PORT": str(port),
        "TELEGRAM_WEBHOOK_MAX_BODY": "262144",
        "TELEGRAM_GATEWAY_HEALTH_PORT": "0",
        "NATS_URL": own_nats,
    }
    process = ServiceProcess("telegram_gateway", env, tmp_path_factory.mktemp("fuzz-webhook")).start()
    try:
        eventually(
            lambda: "telegram_gateway_started" in process.log_text(), timeout_s=60, what="gateway started"
        )
        yield process, url
    finally:
        process.stop()


_update_ids = itertools.count(3_000_000_000)
_stranger_chats = itertools.count(-1_009_000_000_000, -1)


def with_fresh_ids(body: bytes, *, stranger: bool) -> tuple[bytes, int | None, int | None]:
    """A fresh update id (and for a stranger a chat id used nowhere else), so a leak would show."""
    try:
        value = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return body, None, None
    if not isinstance(value, dict):
        return body, None, None
    value["update_id"] = update_id = next(_update_ids)
    chat_id = None
    if stranger:
        chat_id = next(_stranger_chats)
        for kind in ("message", "edited_message", "message_reaction", "my_chat_member", "channel_post"):
            if isinstance(value.get(kind), dict):
                value[kind]["chat"] = {"id": chat_id, "type": "supergroup", "title": "strangers"}
    return json.dumps(value).encode(), update_id, chat_id


def test_the_webhook_answers_every_request_deliberately_and_only_authenticated_ones_become_events(
    webhook_gateway: tuple[ServiceProcess, str], own_nats: str, loop: LoopThread
) -> None:
    process, url = webhook_gateway
    statuses: Counter[int] = Counter()
    refused_update_ids: set[int] = set()
    stranger_chat_ids: set[int] = set()
    secrets = st.sampled_from(
        [
            WEBHOOK_SECRET,
            WEBHOOK_SECRET,
            WEBHOOK_SECRET,
            "",
            WEBHOOK_SECRET + "x",
            WEBHOOK_SECRET.upper(),
            "\u00e9",
        ]
    )

    with httpx.Client(timeout=30) as client:

        @settings(
            max_examples=max(100, EXAMPLES // 3), deadline=None, suppress_health_check=list(HealthCheck)
        )
        @given(
            secret=secrets, body=bodies, content_type=st.sampled_from(["application/json", "text/plain", ""])
        )
        def post(secret: str, body: bytes, content_type: str) -> None:
            stranger = secret != WEBHOOK_SECRET
            body, update_id, chat_id = with_fresh_ids(body, stranger=stranger)
            headers = {b"content-type": content_type.encode(), SECRET_HEADER.encode(): secret.encode()}
            response = client.post(url, content=body, headers=headers)
            statuses[response.status_code] += 1
            assert response.status_code in {200, 401, 413}, response.text
            if stranger:
                assert response.status_code == 401
                if update_id is not None:
                    refused_update_ids.add(update_id)
                if chat_id is not None:
                    stranger_chat_ids.add(chat_id)

        post()
        # Still serving after everything it was fed.
        still = client.post(
            url,
            json={
                "update_id": next(_update_ids),
                "message": {
                    "message_id": 1,
                    "date": 0,
                    "chat": {"id": -5, "type": "supergroup"},
                    "from": {"id": 1, "is_bot": False, "first_name": "A"},
                    "text": "still here",
                },
            },
            headers={SECRET_HEADER: WEBHOOK_SECRET},
        )
        assert still.status_code == 200
    assert process.alive(), process.log_text()[-3000:]
    stored = loop.run(read_stream_events(own_nats, "telegram.>"), timeout_s=120)
    leaked = [event for _, event in stored if getattr(event, "update_id", None) in refused_update_ids]
    assert not leaked
    assert not [event for _, event in stored if getattr(event, "chat_id", None) in stranger_chat_ids]
    assert "Traceback" not in process.log_text()
    print(
        f"\nfuzz: {sum(statuses.values())} webhook requests, "
        f"answers {dict(sorted(statuses.items()))}, 0 crashes"
    )
