"""A plain group text read without aiogram's ``Update`` becomes the very event the dispatcher's
``on_group_message`` makes, and anything else is left to the dispatcher.

Generated updates of every kind (the fuzz suite's strategies) go both ways: whenever the plain
reader takes one, the dispatcher, fed the same update, stores the same event on the same subject
under the same message id (the event's time apart).
"""

from __future__ import annotations

import asyncio
from typing import Any, cast

import msgspec
import pytest
from aiogram.types import Update, User
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bridge_lib.eventbus import EventPublisher
from contracts.events import TelegramMessageReceived
from services.telegram_gateway.app import build_dispatcher
from services.telegram_gateway.plain_messages import plain_group_message, record_plain
from services.telegram_gateway.polling import handle_update
from services.telegram_gateway.record import Record
from tests.in_memory import Published, RecordingPublisher, recording_bot
from tests.test_fuzz_telegram_updates import chats, dates, entities, ids, odd_text, updates, users

ME = User(
    id=7000001, is_bot=True, first_name="Bridge", username="bridge_bot", can_read_all_group_messages=True
)
GROUP = {"id": -1001234500001, "type": "supergroup", "title": "Team"}
ANN = {"id": 501, "is_bot": False, "first_name": "Ann", "last_name": "Lee", "username": "ann"}

pytestmark = pytest.mark.filterwarnings("ignore:Detected unknown update type:RuntimeWarning")

plain_texts = st.builds(
    lambda update_id, message_id, date, chat, person, text, found, extra: {
        "update_id": update_id,
        "message": {
            "message_id": message_id,
            "date": date,
            "chat": chat,
            "from": person,
            "text": text,
            **({"entities": found} if found else {}),
            **extra,
        },
    },
    st.integers(1, 2**31),
    ids,
    dates,
    chats,
    users,
    odd_text | st.text(min_size=1, max_size=200),
    entities,
    st.fixed_dictionaries(
        {},
        optional={
            "message_thread_id": ids,
            "is_topic_message": st.booleans(),
            "link_preview_options": st.just({"is_disabled": True}),
        },
    ),
)


def through_the_dispatcher(raw: dict[str, Any]) -> list[Published]:
    bot, _ = recording_bot(ME)
    publisher = RecordingPublisher()
    dispatcher = build_dispatcher(cast(EventPublisher, publisher), ME)
    update = Update.model_validate(raw, context={"bot": bot})
    asyncio.run(handle_update(bot, dispatcher, update))
    return publisher.published


def through_the_plain_reader(raw: dict[str, Any]) -> list[Published]:
    plain = plain_group_message(raw)
    assert plain is not None
    publisher = RecordingPublisher()
    asyncio.run(record_plain(Record(cast(EventPublisher, publisher)), *plain))
    return publisher.published


def without_time(published: list[Published]) -> list[tuple[dict[str, Any], str, str]]:
    return [
        ({**msgspec.to_builtins(each.event), "occurred_at": None}, each.subject, each.msg_id)
        for each in published
    ]


def assert_same_as_the_dispatcher(raw: dict[str, Any]) -> None:
    assert without_time(through_the_plain_reader(raw)) == without_time(through_the_dispatcher(raw))


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(plain_texts)
def test_a_plain_text_read_directly_is_the_event_the_dispatcher_makes(raw: dict[str, Any]) -> None:
    if plain_group_message(raw) is not None:
        assert_same_as_the_dispatcher(raw)


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(updates)
def test_whatever_else_the_plain_reader_takes_the_dispatcher_would_store_alike(raw: dict[str, Any]) -> None:
    try:
        Update.model_validate(raw)
    except ValueError:
        # What aiogram cannot read, the plain reader does not take either: it is a dead letter.
        assert plain_group_message(raw) is None
        return
    if plain_group_message(raw) is not None:
        assert_same_as_the_dispatcher(raw)


def plain(**fields: Any) -> dict[str, Any]:
    return {
        "update_id": 9,
        "message": {"message_id": 3, "date": 1_700_000_000, "chat": GROUP, "from": ANN} | fields,
    }


@pytest.mark.parametrize(
    "raw",
    [
        plain(text="hello"),
        plain(text="a link https://example.com", link_preview_options={"url": "https://example.com"}),
        plain(text="bold", entities=[{"type": "bold", "offset": 0, "length": 4}]),
        plain(text="in a topic", message_thread_id=5, is_topic_message=True),
        plain(text="hi", chat={"id": -4001, "type": "group", "title": "Small"}),
    ],
)
def test_the_common_messages_are_read_directly(raw: dict[str, Any]) -> None:
    assert plain_group_message(raw) is not None
    assert_same_as_the_dispatcher(raw)


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        (plain(text="/task Fix it"), "a command"),
        (plain(text="/status@other_bot"), "a command for another bot"),
        (plain(text="answer", reply_to_message={"message_id": 1, "date": 1, "chat": GROUP}), "a reply"),
        (plain(text="as the group", sender_chat=GROUP), "an anonymous admin"),
        (
            plain(
                caption="a photo", photo=[{"file_id": "f", "file_unique_id": "u", "width": 1, "height": 1}]
            ),
            "a file",
        ),
        (plain(text="hi", chat={"id": 501, "type": "private", "first_name": "Ann"}), "a private chat"),
        (plain(text="hi", some_new_field=1), "a field this reader does not know"),
        (plain(text=""), "no text"),
        ({"update_id": 9, "edited_message": plain(text="x")["message"]}, "an edit"),
    ],
)
def test_anything_else_is_left_to_the_dispatcher(raw: dict[str, Any], why: str) -> None:
    assert plain_group_message(raw) is None, why


def test_the_event_is_a_received_message_of_text() -> None:
    found = plain_group_message(plain(text="hello"))
    assert found is not None
    event, subject = found
    assert isinstance(event, TelegramMessageReceived)
    assert (event.sender.full_name, event.content_type, subject) == (
        "Ann Lee",
        "text",
        f"telegram.message.received.{GROUP['id']}",
    )
