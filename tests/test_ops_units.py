"""Small pieces of the ops tooling, without servers: subject matching, trace references, the
binding fold behind ``bindings``/``binder rebuild``, and the Planfix call metrics."""

from __future__ import annotations

import tomllib
from datetime import UTC, datetime, timedelta

import httpx
import msgspec
import pytest
from prometheus_client import REGISTRY

from bridge_cli.bindings import fold_bindings
from bridge_cli.filters import EventFilter, parse_moment
from bridge_cli.streams import StoredMessage, subject_matches
from bridge_cli.trace import correlation_ids, correlations_of
from bridge_lib.eventbus import CORRELATION_HEADER, EVENT_TYPE_HEADER, server_urls
from bridge_lib.planfix import PlanfixClient
from contracts.bindings import Binding, Bindings
from contracts.events import (
    CommentAlsoShown,
    TaskBound,
    TaskUnbound,
    TelegramMessageKind,
    TelegramMessageSent,
    TelegramUser,
    encode_event,
    event_id_for,
    root_envelope,
    telegram_bind_key,
    telegram_message_key,
)
from services.binder.rebuild import differences
from tests.support import REPO_ROOT


@pytest.mark.parametrize(
    ("pattern", "subject", "matches"),
    [
        ("telegram.message.received.*", "telegram.message.received.-100", True),
        ("telegram.message.received.*", "telegram.message.received.-100.x", False),
        ("binding.>", "binding.bound.-100", True),
        ("binding.>", "binding", False),
        ("deadletter.relay-telegram-inbound", "deadletter.relay-telegram-inbound", True),
        ("planfix.comment.added.*", "planfix.webhook.comment.5", False),
    ],
)
def test_subjects_match_like_nats_wildcards(pattern: str, subject: str, matches: bool) -> None:
    assert subject_matches(pattern, subject) is matches


def test_a_telegram_reference_traces_both_a_message_and_a_task_command() -> None:
    assert correlation_ids("tg:-1001:42") == [
        event_id_for(telegram_message_key(-1001, 42)),
        event_id_for(telegram_bind_key(-1001, 42)),
    ]
    assert correlation_ids("  abc-123 ") == ["abc-123"]


def test_a_trace_of_any_comment_sent_together_finds_the_one_message_that_shows_it() -> None:
    sent = TelegramMessageSent(
        **root_envelope("outbox:first", caused_by="story-1"),
        chat_id=-100,
        message_ids=[55],
        kind=TelegramMessageKind.PLANFIX_COMMENT,
        comment_id=1,
        also_shows=[CommentAlsoShown(comment_id=2, correlation_id="story-2", causation_id="ev-2")],
    )
    headers = {EVENT_TYPE_HEADER: sent.tag, CORRELATION_HEADER: sent.correlation_id}
    stored = StoredMessage(stream="EFFECTS", seq=9, subject="effect.telegram.message_sent.-100", time=None,
                           headers=headers, data=encode_event(sent))  # fmt: skip

    assert correlations_of(stored) == [sent.correlation_id, "story-2"]


def test_times_are_iso_or_ages() -> None:
    assert parse_moment("2026-01-02T03:04:05") == datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert datetime.now(UTC) - parse_moment("2h") - timedelta(hours=2) < timedelta(seconds=5)


def test_nats_url_may_list_a_clusters_nodes() -> None:
    assert server_urls("nats://a:4222, nats://b:4222,") == ["nats://a:4222", "nats://b:4222"]


def _bound(chat_id: int, task: int, seq: int) -> StoredMessage:
    event = TaskBound(
        **root_envelope(f"test:{chat_id}:{task}:{seq}", caused_by="test"),
        chat_id=chat_id,
        task_number=task,
        task_title=f"Task {task}",
        created_task=False,
        requested_by=TelegramUser(id=1, full_name="Ivan"),
    )
    return StoredMessage(stream="BINDING", seq=seq, subject="binding.bound.x", time=None, headers={},
                         data=encode_event(event))  # fmt: skip


def _unbound(chat_id: int, task: int, seq: int) -> StoredMessage:
    event = TaskUnbound(
        **root_envelope(f"test:un:{chat_id}:{task}:{seq}", caused_by="test"),
        chat_id=chat_id,
        task_number=task,
        unbound_by="test",
    )
    return StoredMessage(stream="BINDING", seq=seq, subject="binding.unbound.x", time=None, headers={},
                         data=encode_event(event))  # fmt: skip


def test_bindings_are_what_the_binding_events_add_up_to() -> None:
    current = fold_bindings(
        [
            _bound(-1, 10, 1),
            _bound(-2, 20, 2),
            _bound(-1, 11, 3),  # rebound to another task
            _unbound(-2, 99, 4),  # names another task: ignored
            _unbound(-3, 30, 5),  # never bound: ignored
            _bound(-4, 40, 6),
            _unbound(-4, 40, 7),
        ]
    )
    assert {key: b.bound.task_number for key, b in current.items()} == {"-1": 11, "-2": 20}


def test_rebuild_reports_restored_changed_and_removed_bindings() -> None:
    folded = fold_bindings([_bound(-1, 10, 1), _bound(-2, 20, 2)])
    desired = Bindings()
    for current in folded.values():
        desired = desired.with_binding(current.bound)
    stored = [
        msgspec.structs.replace(folded["-2"].bound, task_number=21),
        Binding(
            chat_id=-9,
            thread_id=None,
            task_number=90,
            task_title="x",
            bound_at=datetime.now(UTC),
            bound_by_user_id=1,
            bound_event_id="k",
        ),
    ]
    found = {(d.group_key, d.what) for d in differences(desired, stored)}
    assert found == {("-1", "restored"), ("-2", "changed"), ("-9", "removed")}


def test_event_filters_pick_by_chat_task_and_type() -> None:
    event = _bound(-1, 10, 1).event()
    assert EventFilter(chat_id=-1, event_type="task_bound").matches(event)
    assert not EventFilter(chat_id=-2).matches(event)
    assert not EventFilter(task_number=11).matches(event)
    assert EventFilter().matches(None)
    assert not EventFilter(chat_id=-1).matches(None)


async def test_planfix_calls_are_counted_and_the_reported_daily_budget_kept() -> None:
    def planfix(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/task/7"):
            return httpx.Response(200, json={"result": "success", "task": {"id": 7, "name": "x"}},
                                  headers={"X-RateLimit-Remaining": "19876"})  # fmt: skip
        return httpx.Response(503, text="down")

    def calls(result: str) -> float:
        labels = {"target": "planfix", "operation": "GET task/{id}", "result": result}
        return REGISTRY.get_sample_value("bridge_outbound_calls_total", labels) or 0.0

    ok_before, failed_before = calls("ok"), calls("server_error")
    async with PlanfixClient(base_url="https://acc.planfix.test/rest/", token="t",
                             transport=httpx.MockTransport(planfix)) as client:  # fmt: skip
        await client.get_task(7)
        with pytest.raises(Exception, match="503"):
            await client.get_task(8)

    assert calls("ok") == ok_before + 1
    # Every attempt is a call: the client retries a 503 (with backoff) before giving up.
    assert calls("server_error") >= failed_before + 1
    assert REGISTRY.get_sample_value("bridge_planfix_daily_budget_remaining") == 19876


def test_the_bridge_command_is_installed_as_a_console_script() -> None:
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert project["project"]["scripts"]["bridge"] == "bridge_cli.main:app"
