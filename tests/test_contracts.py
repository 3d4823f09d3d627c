"""Contracts: every event survives the wire, tags are stable, subjects land in their streams."""

from __future__ import annotations

import fnmatch
import typing

import msgspec
import pytest

from contracts import subjects
from contracts.events import (
    AnyEvent,
    Envelope,
    PersonUnlinked,
    PlanfixCommentAction,
    PlanfixCommentAdded,
    PlanfixCommentPosted,
    PlanfixCommentWebhookReceived,
    TelegramMessageReceived,
    TelegramUser,
    decode_event,
    encode_event,
    event_id_for,
    planfix_source_object_id,
    utc_now,
)
from services.relay.to_telegram.handlers import written_by_bridge
from tests.support import envelope, person_linked

EXPECTED_TAGS = {
    "planfix.task_webhook_received.v1",
    "planfix.task_state_changed.v1",
    "telegram.task_command_requested.v1",
    "binding.task_command_answered.v1",
    "telegram.message_received.v1",
    "telegram.message_edited.v1",
    "telegram.reaction_changed.v1",
    "binding.bind_requested.v1",
    "binding.language_requested.v1",
    "binding.group_language_chosen.v1",
    "binding.group_language_rejected.v1",
    "binding.task_bound.v1",
    "binding.bind_rejected.v1",
    "planfix.comment_webhook_received.v1",
    "planfix.comment_added.v1",
    "effect.planfix_comment_posted.v1",
    "effect.planfix_comment_rewritten.v1",
    "effect.telegram_message_sent.v1",
    "binding.task_unbound.v1",
    "ops.message_dead_lettered.v1",
    "binding.unbind_requested.v1",
    "telegram.group_command_received.v1",
    "telegram.anonymous_admin_posted.v1",
    "telegram.bot_membership_changed.v1",
    "telegram.chat_migrated.v1",
    "telegram.other_bot_commanded.v1",
    "binding.unbind_rejected.v1",
    "binding.binding_suspended.v1",
    "binding.binding_resumed.v1",
    "binding.binding_moved.v1",
    "planfix.comment_updated.v1",
    "planfix.comment_deleted.v1",
    "effect.telegram_messages_edited.v1",
    "effect.telegram_messages_deleted.v1",
    "effect.telegram_delivery_failed.v1",
    "people.person_linked.v1",
    "people.person_unlinked.v1",
    "people.person_link_refused.v1",
    "binding.unbind_group.v1",
}


def test_every_event_type_has_its_explicit_stable_tag() -> None:
    tags = {event_type.__struct_config__.tag for event_type in typing.get_args(AnyEvent)}
    assert tags == EXPECTED_TAGS


def group_message(chat_id: int, message_id: int, header: Envelope) -> TelegramMessageReceived:
    """Ivan's "hi" in group ``chat_id``."""
    return TelegramMessageReceived(
        **header,
        chat_id=chat_id,
        message_id=message_id,
        sender=TelegramUser(id=5, full_name="Ivan"),
        text="hi",
        sent_at=utc_now(),
    )


def stored_event(event_type: str, **fields: object) -> bytes:
    """An event as a stream holds it, written by an earlier version: its tag, envelope and ``fields``."""
    return msgspec.json.encode(
        {
            "type": event_type,
            "event_id": "e",
            "occurred_at": "2026-01-01T00:00:00Z",
            "correlation_id": "c",
            "causation_id": "x",
            **fields,
        }
    )


def stored_comment(**fields: object) -> bytes:
    """Comment 9 of task 4821, "<p>hi</p>", as an earlier version stored it, with ``fields``."""
    return stored_event(
        "planfix.comment_added.v1", task_number=4821, comment_id=9, text_html="<p>hi</p>", **fields
    )


def test_an_event_round_trips_with_its_tag_and_envelope() -> None:
    event = group_message(-100, 1, {**envelope(event_id_for("tg:msg:-100:1")), "causation_id": "tg:update:9"})
    wire = encode_event(event)
    assert msgspec.json.decode(wire)["type"] == "telegram.message_received.v1"
    assert decode_event(wire) == event


def test_an_older_consumer_skips_fields_it_does_not_know() -> None:
    event = group_message(-1, 1, envelope("e"))
    raw = msgspec.json.decode(encode_event(event))
    raw["added_in_a_later_version"] = {"anything": 1}
    assert decode_event(msgspec.json.encode(raw)) == event


def test_event_ids_derive_from_source_keys() -> None:
    assert event_id_for("tg:msg:-100:1") == event_id_for("tg:msg:-100:1")
    assert event_id_for("tg:msg:-100:1") != event_id_for("tg:msg:-100:2")


def test_undecodable_input_raises_a_clear_error() -> None:
    with pytest.raises(msgspec.ValidationError):
        decode_event(b'{"type": "no.such.event.v1"}')
    with pytest.raises(msgspec.DecodeError):
        decode_event(b"not json")


# Every family in the catalogue, so that a new one is checked as soon as it is declared.
@pytest.mark.parametrize(
    "subject", [spec.subject(-1001) for spec in subjects.CATALOGUE], ids=lambda subject: subject
)
def test_every_subject_belongs_to_exactly_one_stream(subject: str) -> None:
    def matches(pattern: str) -> bool:
        return fnmatch.fnmatch(subject, pattern.replace(">", "*"))

    owners = [spec.name for spec in subjects.ALL_STREAMS if any(matches(p) for p in spec.subjects)]
    assert len(owners) == 1


def test_a_comment_event_from_before_files_existed_still_decodes_with_no_files() -> None:
    event = decode_event(stored_comment(author={"id": "user:7", "name": "Olga"}))
    assert isinstance(event, PlanfixCommentAdded)
    assert event.files == []


def test_a_webhook_notice_from_before_edits_existed_means_added() -> None:
    old = stored_event("planfix.comment_webhook_received.v1", task_number=4821, comment_id=9)
    event = decode_event(old)
    assert isinstance(event, PlanfixCommentWebhookReceived)
    assert event.action is PlanfixCommentAction.ADDED


OUR_SOURCE_ID = "0c6b7f0e-2d7a-4f0e-9a56-6a3f1c9b8e11"


@pytest.mark.parametrize(
    ("source_id", "source_object_id", "ours"),
    [
        (OUR_SOURCE_ID, planfix_source_object_id("tg:msg:-100:5"), True),
        (OUR_SOURCE_ID, "tg:msg:-100:5", True),  # written before sourceObjectIds were UUIDs
        ("11111111-2222-3333-4444-555555555555", "tg:msg:-100:5", False),
        (None, None, False),
    ],
)
def test_comments_written_before_and_after_uuids_still_count_as_ours(
    source_id: str | None, source_object_id: str | None, ours: bool
) -> None:
    stored = stored_comment(
        author={"id": "user:1", "name": "Robot"}, source_id=source_id, source_object_id=source_object_id
    )
    event = decode_event(stored)
    assert isinstance(event, PlanfixCommentAdded)
    assert written_by_bridge(event, OUR_SOURCE_ID) is ours


def test_a_posted_comment_recorded_with_the_old_source_object_id_still_decodes() -> None:
    stored = stored_event(
        "effect.planfix_comment_posted.v1",
        task_number=4821,
        comment_id=9,
        source_object_id="tg:msg:-100:5",
        chat_id=-100,
        message_id=5,
    )
    event = decode_event(stored)
    assert isinstance(event, PlanfixCommentPosted)
    assert event.source_object_id == "tg:msg:-100:5"


def concrete_event_types() -> list[type[msgspec.Struct]]:
    return list(typing.get_args(AnyEvent))


@pytest.mark.parametrize("event_type", concrete_event_types(), ids=lambda t: t.__name__)
def test_every_event_knows_its_route_and_its_stream_takes_it(event_type: type[msgspec.Struct]) -> None:
    spec = subjects.spec_for(event_type)  # type: ignore[arg-type]
    assert spec.key in event_type.__struct_fields__
    [stream] = [s for s in subjects.ALL_STREAMS if s.name == spec.stream]
    example = spec.subject(-1001)
    assert any(fnmatch.fnmatch(example, pattern.replace(">", "*")) for pattern in stream.subjects)


def test_an_event_is_published_on_its_familys_subject_with_its_key() -> None:
    event = group_message(-1001, 5, envelope("e"))
    assert subjects.subject_for(event) == "telegram.message.received.-1001"


def test_every_durable_consumer_reads_subjects_of_its_own_stream() -> None:
    names = [consumer.durable for consumer in subjects.CONSUMERS]
    assert len(names) == len(set(names))
    for consumer in subjects.CONSUMERS:
        [stream] = [s for s in subjects.ALL_STREAMS if s.name == consumer.stream]
        assert any(
            fnmatch.fnmatch(consumer.filter_subject.replace(">", "x.y"), pattern.replace(">", "*"))
            for pattern in stream.subjects
        ), consumer.durable


def test_people_events_round_trip_with_their_tags() -> None:
    anna = TelegramUser(id=5, full_name="Anna Ivanova", username="anna")
    linked = person_linked(anna, "user:101", envelope(event_id_for("people:link:5:user:101")))
    unlinked = PersonUnlinked(
        **envelope(event_id_for("people:unlink:5:user:101")),
        telegram_user_id=5,
        planfix_person_id="user:101",
        why="unlink_command",
    )

    for event in (linked, unlinked):
        wire = encode_event(event)
        assert msgspec.json.decode(wire)["type"] == event.tag
        assert decode_event(wire) == event
    assert msgspec.json.decode(encode_event(linked))["how"] == "planfix_profile"
