"""Ops and debugging, end to end: the four services as processes on a NATS of their own, real
MongoDB-wire store, fake Telegram and Planfix, and the ``bridge`` CLI run as a real command.

Each test reads as what an operator or developer does: send messages, then look at /metrics,
/readyz, ``bridge trace``, ``bridge events dump``/``replay``, ``bridge binder rebuild``,
``bridge dlq``, ``bridge doctor`` and ``bridge events tail``. The NATS outage test stops the
module's NATS, so it comes last.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from motor.motor_asyncio import AsyncIOMotorClient

from bridge_cli.doctor import Finding, check_webhook
from bridge_lib.settings import TelegramSettings
from contracts.events import PlanfixCommentPosted, TaskBound, TelegramMessageReceived
from devtools import devstack
from devtools.devstack import HEALTH_PORT_VARIABLES, SERVICES
from sandbox.fake_planfix import FakePlanfix
from sandbox.fake_telegram import FakeTelegram
from tests.conftest import BOT_TOKEN, PLANFIX_TOKEN, WEBHOOK_SECRET
from tests.e2e_bridge import stack_env
from tests.support import (
    REPO_ROOT,
    LoopThread,
    ServiceProcess,
    eventually,
    jetstream,
    read_stream_events,
    relayed_comments,
    run_module,
    stays,
    wait_for_binding_notice,
)


@dataclass
class OpsBridge:
    env: dict[str, str]
    nats: devstack.ManagedProcess
    nats_dir: Path
    work_dir: Path
    health_ports: dict[str, int]
    processes: dict[str, ServiceProcess]
    loop: LoopThread

    @property
    def nats_url(self) -> str:
        return self.env["NATS_URL"]

    def cli(self, *args: str, extra_env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        """``bridge ARGS`` as a separate process, the way an operator runs it."""
        env = {**self.env, **(extra_env or {}), "COLUMNS": "250"}
        return run_module("bridge_cli", *args, env=env, timeout_s=120)

    def ok(self, *args: str) -> str:
        result = self.cli(*args)
        assert result.returncode == 0, f"bridge {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
        return result.stdout

    def dump_telegram_events(self, chat_id: int, *only: str) -> Path:
        """``bridge events dump`` of the group's TELEGRAM events (``only``: more filters, such as
        ``--type``), into a file of the group's own; the file."""
        dump = self.work_dir / f"telegram-events-{chat_id}.jsonl"
        self.ok("events", "dump", "--stream", "TELEGRAM", "--chat", str(chat_id), *only, "-o", str(dump))
        return dump

    def health(self, service: str, path: str) -> httpx.Response:
        return httpx.get(f"http://127.0.0.1:{self.health_ports[service]}{path}", timeout=5)

    def readiness(self, service: str) -> int:
        """/readyz status, or 0 while the service does not answer at all."""
        try:
            return self.health(service, "/readyz").status_code
        except httpx.HTTPError:
            return 0

    def metric(self, service: str, name: str, **labels: str) -> float:
        """The sum of ``service``'s /metrics samples with these labels (0 when absent)."""
        text = self.health(service, "/metrics").text
        total = 0.0
        for line in text.splitlines():
            sample = re.fullmatch(re.escape(name) + r"(?:\{(.*)\})? (\S+)", line)
            if sample is None:
                continue
            found = dict(re.findall(r'(\w+)="([^"]*)"', sample[1] or ""))
            if all(found.get(key) == value for key, value in labels.items()):
                total += float(sample[2])
        return total

    def events(self, subject_filter: str) -> list[Any]:
        return [event for _, event in self.loop.run(read_stream_events(self.nats_url, subject_filter))]

    def mongo(self, action: Any) -> Any:
        async def run() -> Any:
            client: AsyncIOMotorClient[dict[str, Any]] = AsyncIOMotorClient(self.env["MONGODB_URL"])
            try:
                return await action(client[self.env["MONGODB_DATABASE"]])
            finally:
                client.close()

        return self.loop.run(run())


@pytest.fixture(scope="module")
def ops(
    loop: LoopThread, work_dir: Path, mongo_url: str, fake_telegram: FakeTelegram, fake_planfix: FakePlanfix
) -> Iterator[OpsBridge]:
    nats_dir = work_dir / "ops-nats"
    nats_server = devstack.start_nats(nats_dir, log_file=work_dir / "ops-nats.log")
    webhook_port = devstack.free_port()
    health_ports = {name: devstack.free_port() for name in SERVICES}
    env = {
        **stack_env(
            nats_server.extra["url"],
            mongo_url,
            f"ops_{webhook_port}",
            fake_telegram,
            fake_planfix,
            webhook_port=webhook_port,
        ),
        "HEALTH_HOST": "127.0.0.1",
        "LOG_LEVEL": "INFO",
        # The task card (issue 18) is one more message per bound group; these tests count without it.
        "RELAY_TASK_CARDS": "false",
        # Two refusals set a Telegram message aside (the default is 8, with backoff).
        "RELAY_SEND_MAX_ATTEMPTS": "2",
        **{HEALTH_PORT_VARIABLES[name]: str(port) for name, port in health_ports.items()},
    }
    log_dir = work_dir / "ops-logs"
    log_dir.mkdir(exist_ok=True)
    processes = {name: ServiceProcess(name, env, log_dir).start() for name in SERVICES}
    bridge = OpsBridge(env, nats_server, nats_dir, work_dir, health_ports, processes, loop)
    try:
        with fake_planfix.webhooks_to(f"http://127.0.0.1:{webhook_port}/planfix/webhook/{WEBHOOK_SECRET}"):
            for name in SERVICES:
                eventually(
                    lambda name=name: bridge.readiness(name) == 200,  # type: ignore[misc]
                    timeout_s=40,
                    what=f"{name} ready",
                )
            yield bridge
    finally:
        for process in processes.values():
            process.stop()
        bridge.nats.stop()
        for name, process in processes.items():
            assert "Traceback" not in process.log_text(), f"{name} logged a traceback:\n{process.log_text()}"


def texts_sent(fake_telegram: FakeTelegram, chat_id: int) -> list[str]:
    return [str(message["text"]) for message in fake_telegram.sent_messages(chat_id)]


def bind_new_task(
    ops: OpsBridge, fake_telegram: FakeTelegram, chat_id: int, title: str, fake_planfix: FakePlanfix
) -> tuple[int, int]:
    """Bind the chat to a new task; (task number, message id of the /task command)."""
    fake_telegram.set_member_status(chat_id, 501, "administrator")  # only admins bind
    update = fake_telegram.add_group_message(chat_id, f"/task {title}")
    bound = eventually(
        lambda: [e for e in ops.events("binding.>") if isinstance(e, TaskBound) and e.chat_id == chat_id],
        what="task bound",
    )
    eventually(lambda: texts_sent(fake_telegram, chat_id), what="confirmation sent")
    wait_for_binding_notice(ops.events, fake_planfix, bound[0].task_number)
    return bound[0].task_number, update["message"]["message_id"]


def say(
    ops: OpsBridge,
    fake_telegram: FakeTelegram,
    fake_planfix: FakePlanfix,
    chat_id: int,
    task: int,
    text: str,
    *,
    timeout_s: float = 15.0,
) -> int:
    """Write in the group and wait for the comment; the Telegram message id."""
    before = len(relayed_comments(fake_planfix, task))
    update = fake_telegram.add_group_message(chat_id, text)
    eventually(
        lambda: len(relayed_comments(fake_planfix, task)) == before + 1,
        timeout_s=timeout_s,
        what="comment posted",
    )
    message_id: int = update["message"]["message_id"]
    return message_id


# --- health, metrics, logs ----------------------------------------------------------------------


def test_metrics_count_events_calls_and_latency_as_messages_flow(
    ops: OpsBridge, fake_telegram: FakeTelegram, fake_planfix: FakePlanfix, unique_chat_id: int
) -> None:
    consumed = {
        "consumer": "relay-telegram-inbound",
        "event_type": "telegram.message_received.v1",
        "outcome": "ok",
    }
    planfix_ok = {"target": "planfix", "operation": "POST task/{id}/comments", "result": "ok"}
    before_in = ops.metric("relay", "bridge_events_consumed_total", **consumed)
    before_calls = ops.metric("relay", "bridge_outbound_calls_total", **planfix_ok)
    before_out = ops.metric(
        "telegram_gateway", "bridge_events_published_total", event_type="telegram.message_received.v1"
    )
    task, _ = bind_new_task(ops, fake_telegram, unique_chat_id, "Metrics", fake_planfix)

    for n in range(3):
        say(ops, fake_telegram, fake_planfix, unique_chat_id, task, f"message {n}")

    eventually(lambda: ops.metric("relay", "bridge_events_consumed_total", **consumed) >= before_in + 3)
    assert ops.metric("relay", "bridge_outbound_calls_total", **planfix_ok) >= before_calls + 3
    assert (
        ops.metric(
            "telegram_gateway", "bridge_events_published_total", event_type="telegram.message_received.v1"
        )
        >= before_out + 3
    )
    assert ops.metric("relay", "bridge_event_handling_seconds_count", consumer="relay-telegram-inbound") >= 3
    assert ops.metric("relay", "bridge_event_age_seconds_count", consumer="relay-telegram-inbound") >= 3
    assert (
        ops.metric(
            "relay", "bridge_outbound_calls_total", target="telegram", operation="sendMessage", result="ok"
        )
        >= 1
    )
    metrics_text = ops.health("relay", "/metrics").text
    assert "bridge_planfix_daily_budget_remaining" in metrics_text
    assert "bridge_dead_letters_total" in metrics_text or "bridge_dead_letters" in metrics_text
    # The lag gauge is polled from JetStream; the relay has caught up.
    eventually(
        lambda: (
            'bridge_consumer_pending_messages{consumer="relay-telegram-inbound",stream="TELEGRAM"} 0.0'
            in ops.health("relay", "/metrics").text
        ),
        what="lag gauge polled",
    )


def test_each_handled_event_logs_one_line_with_correlation_type_chat_and_task(
    ops: OpsBridge, fake_telegram: FakeTelegram, fake_planfix: FakePlanfix, unique_chat_id: int
) -> None:
    task, _ = bind_new_task(ops, fake_telegram, unique_chat_id, "Logs", fake_planfix)
    say(ops, fake_telegram, fake_planfix, unique_chat_id, task, "log me once")

    def handled_lines() -> list[dict[str, Any]]:
        import json

        lines = []
        for raw in ops.processes["relay"].log_text().splitlines():
            if raw.startswith("{") and '"event_handled"' in raw:
                line = json.loads(raw)
                if (
                    line.get("chat_id") == unique_chat_id
                    and line.get("event_type") == "telegram.message_received.v1"
                ):
                    lines.append(line)
        return lines

    [line] = eventually(handled_lines, what="event_handled line")
    assert line["task_number"] == task
    assert line["correlation_id"]
    assert line["consumer"] == "relay-telegram-inbound"
    assert BOT_TOKEN not in ops.processes["relay"].log_text()
    assert PLANFIX_TOKEN not in ops.processes["relay"].log_text()


# --- trace --------------------------------------------------------------------------------------


def test_trace_of_a_bind_shows_the_gateway_binder_and_relay_steps_in_order(
    ops: OpsBridge, fake_telegram: FakeTelegram, fake_planfix: FakePlanfix, unique_chat_id: int
) -> None:
    task, command_id = bind_new_task(ops, fake_telegram, unique_chat_id, "Trace me", fake_planfix)

    output = ops.ok("trace", f"tg:{unique_chat_id}:{command_id}")

    steps = [line for line in output.splitlines() if re.match(r"\s*\d+\. ", line)]
    # The first bind of a person also shows the binder learning who they are in Planfix.
    steps = [step for step in steps if "people.person_linked.v1" not in step]
    # And the planfix gateway reading the bound task (its state, for the task card): issue 18.
    steps = [step for step in steps if "planfix.task_state_changed.v1" not in step]
    assert [step.split()[1] for step in steps] == ["telegram_gateway", "binder", "relay"], output
    assert "binding.bind_requested.v1" in steps[0]
    assert f"bound to task #{task}" in steps[1] or f"created and bound to task #{task}" in steps[1]
    assert "effect.telegram_message_sent.v1" in steps[2]
    assert "binder-bind-requests: handled" in output
    (ops.work_dir / "trace-bind.txt").write_text(output)


def test_trace_of_a_message_shows_the_comment_it_became(
    ops: OpsBridge, fake_telegram: FakeTelegram, fake_planfix: FakePlanfix, unique_chat_id: int
) -> None:
    task, _ = bind_new_task(ops, fake_telegram, unique_chat_id, "Where did it go", fake_planfix)
    message_id = say(ops, fake_telegram, fake_planfix, unique_chat_id, task, "where did my message go?")
    [comment] = relayed_comments(fake_planfix, task)

    output = ops.ok("trace", f"tg:{unique_chat_id}:{message_id}")

    assert "telegram.message_received.v1" in output
    assert "relay-telegram-inbound: handled" in output
    assert f"posted comment {comment.id} in task #{task}" in output
    assert "where did my message go" not in output  # no message text in the CLI's output
    (ops.work_dir / "trace-message.txt").write_text(output)


def test_trace_of_a_planfix_comment_shows_the_webhook_the_fetch_and_the_message_sent(
    ops: OpsBridge, fake_telegram: FakeTelegram, fake_planfix: FakePlanfix, unique_chat_id: int
) -> None:
    task, _ = bind_new_task(ops, fake_telegram, unique_chat_id, "From Planfix", fake_planfix)
    before = len(texts_sent(fake_telegram, unique_chat_id))
    comment_id = fake_planfix.add_employee_comment(task, "<p>Toner replaced</p>")
    eventually(lambda: len(texts_sent(fake_telegram, unique_chat_id)) == before + 1, what="message sent")

    output = ops.ok("trace", f"pf:{comment_id}")

    steps = [line for line in output.splitlines() if re.match(r"\s*\d+\. ", line)]
    assert [step.split()[1] for step in steps] == ["planfix_gateway", "planfix_gateway", "relay"], output
    assert "planfix_gateway-comment-fetcher: handled" in output
    assert "relay-planfix-comment-changes: handled" in output
    assert f"sent planfix_comment to chat {unique_chat_id}" in output
    (ops.work_dir / "trace-comment.txt").write_text(output)


def test_trace_of_an_unknown_message_says_so(ops: OpsBridge) -> None:
    result = ops.cli("trace", "tg:-1:1")
    assert result.returncode == 1
    assert "nothing stored" in result.stdout


# --- dump and replay ----------------------------------------------------------------------------


def test_dump_then_replay_reproduces_the_effects_once(
    ops: OpsBridge, fake_telegram: FakeTelegram, fake_planfix: FakePlanfix, unique_chat_id: int
) -> None:
    task, _ = bind_new_task(ops, fake_telegram, unique_chat_id, "Replay", fake_planfix)
    say(ops, fake_telegram, fake_planfix, unique_chat_id, task, "replay me")

    dump = ops.dump_telegram_events(unique_chat_id)
    records = dump.read_text().splitlines()
    assert len(records) == 2  # the /task command and the message
    assert all('"seq":' in record and '"Nats-Msg-Id"' in record for record in records)

    dry = ops.ok("events", "replay", str(dump), "--into", "relay-telegram-inbound", "--dry-run")
    assert "would send 1 message(s), 1 not for relay-telegram-inbound" in dry
    stays(lambda: len(relayed_comments(fake_planfix, task)) == 1, for_s=1.0, what="dry run sends nothing")

    replayed = ops.ok("events", "replay", str(dump), "--into", "relay-telegram-inbound")
    assert "sent 1 message(s)" in replayed
    marked = eventually(
        lambda: [
            e
            for e in ops.events("telegram.>")
            if isinstance(e, TelegramMessageReceived) and e.chat_id == unique_chat_id
        ],
        what="replayed copy stored",
    )
    assert len(marked) == 2  # the original and the replayed copy (same event id)
    eventually(lambda: _relay_caught_up(ops), what="relay handled the replay")
    stays(lambda: len(relayed_comments(fake_planfix, task)) == 1, what="a replay posts no second comment")

    forced = ops.ok("events", "replay", str(dump), "--into", "relay-telegram-inbound", "--force-effects")
    assert "--force-effects" in forced
    eventually(lambda: len(relayed_comments(fake_planfix, task)) == 2, what="forced replay posted again")
    stays(lambda: len(relayed_comments(fake_planfix, task)) == 2, what="exactly once more")
    first, again = relayed_comments(fake_planfix, task)
    assert first.description == again.description
    posted = [
        e for e in ops.events("effect.>") if isinstance(e, PlanfixCommentPosted) and e.task_number == task
    ]
    assert len(posted) == 2  # the forced replay's effect is recorded as a new event


def test_replay_into_one_consumer_is_handled_by_that_consumer_only(
    ops: OpsBridge, fake_telegram: FakeTelegram, fake_planfix: FakePlanfix, unique_chat_id: int
) -> None:
    bind_new_task(ops, fake_telegram, unique_chat_id, "Replay into one", fake_planfix)
    before = len(texts_sent(fake_telegram, unique_chat_id))
    fake_telegram.add_group_message(unique_chat_id, "/status")
    eventually(lambda: len(texts_sent(fake_telegram, unique_chat_id)) == before + 1, what="/status answered")
    dump = ops.dump_telegram_events(unique_chat_id, "--type", "command_received")
    replay_id = f"into-binder-{unique_chat_id}"

    # /status is read by the binder (which skips it) and by the relay (which answers it).
    replayed = ops.ok(
        "events", "replay", str(dump), "--into", "binder-group-changes", "--replay-id", replay_id
    )

    assert "sent 1 message(s)" in replayed
    assert "(skipped by relay-group-events)" in replayed
    relay_lines = lambda: [  # noqa: E731
        line for line in ops.processes["relay"].log_text().splitlines() if replay_id in line
    ]
    [skipped] = eventually(relay_lines, what="the relay saw the replayed copy")
    assert '"replay_skipped"' in skipped
    assert eventually(
        lambda: [line for line in ops.processes["binder"].log_text().splitlines() if replay_id in line],
        what="the binder handled the replayed copy",
    )
    stays(lambda: len(texts_sent(fake_telegram, unique_chat_id)) == before + 1, what="no second answer")
    assert "relay-telegram-inbound" in ops.cli("events", "replay").stderr  # today's consumer in the hint


def _relay_caught_up(ops: OpsBridge) -> bool:
    async def check() -> bool:
        async with jetstream(ops.nats_url) as js:
            info = await js.consumer_info("TELEGRAM", "relay-telegram-inbound")
            return bool(info.num_pending == 0 and info.num_ack_pending == 0)

    return ops.loop.run(check())


# --- bindings and binder rebuild ----------------------------------------------------------------


def test_binder_rebuild_restores_every_binding_of_an_emptied_collection(
    ops: OpsBridge, fake_telegram: FakeTelegram, fake_planfix: FakePlanfix, unique_chat_id: int
) -> None:
    first, _ = bind_new_task(ops, fake_telegram, unique_chat_id, "Rebuild one", fake_planfix)
    second, _ = bind_new_task(ops, fake_telegram, unique_chat_id - 1, "Rebuild two", fake_planfix)

    async def snapshot(db: Any) -> dict[int, int]:
        return {doc["chat_id"]: doc["task_number"] async for doc in db["bindings"].find({})}

    before = ops.mongo(snapshot)
    assert before[unique_chat_id] == first
    assert before[unique_chat_id - 1] == second

    async def empty(db: Any) -> None:
        await db["bindings"].delete_many({})

    ops.mongo(empty)
    output = ops.ok("binder", "rebuild")

    assert f"restored  {unique_chat_id}: task #{first}" in output
    assert f"restored  {unique_chat_id - 1}: task #{second}" in output
    assert ops.mongo(snapshot) == before
    again = ops.ok("binder", "rebuild")
    assert " 0  restored" in again or "0 restored" in again, again


def test_bindings_audit_lists_a_binding_whose_binder_is_no_longer_on_the_task(
    ops: OpsBridge, fake_telegram: FakeTelegram, fake_planfix: FakePlanfix, unique_chat_id: int
) -> None:
    kept, _ = bind_new_task(ops, fake_telegram, unique_chat_id, "Audit: still theirs", fake_planfix)
    dropped, _ = bind_new_task(ops, fake_telegram, unique_chat_id - 1, "Audit: taken off", fake_planfix)
    # In Planfix, the person who bound the second group is taken off its task.
    fake_planfix.set_task_people(dropped)

    result = ops.cli("bindings", "audit")

    assert result.returncode == 1, result.stdout + result.stderr
    assert f"not_on_the_task            {unique_chat_id - 1} -> task #{dropped}" in result.stdout
    assert f"{unique_chat_id} -> task #{kept}" not in result.stdout
    assert "would be refused today under the 'participants' policy" in result.stdout


def test_bindings_list_show_and_unbind(
    ops: OpsBridge, fake_telegram: FakeTelegram, fake_planfix: FakePlanfix, unique_chat_id: int
) -> None:
    task, _ = bind_new_task(ops, fake_telegram, unique_chat_id, "Unbind me", fake_planfix)
    assert f"chat {unique_chat_id} -> task #{task}" in ops.ok("bindings", "list")
    shown = ops.ok("bindings", "show", str(unique_chat_id))
    assert f"in force: chat {unique_chat_id} -> task #{task}" in shown
    assert "binder store: agrees" in shown

    unbound = ops.ok("bindings", "unbind", str(unique_chat_id), "--yes", "--reason", "test")

    assert "TaskUnbound stored; binder store updated" in unbound
    assert f"chat {unique_chat_id} is not bound" in ops.ok("bindings", "show", str(unique_chat_id))
    fake_telegram.add_group_message(unique_chat_id, "nobody listens now")
    eventually(
        lambda: [
            e
            for e in ops.events("telegram.>")
            if isinstance(e, TelegramMessageReceived) and e.text == "nobody listens now"
        ],
        what="message stored",
    )
    stays(lambda: relayed_comments(fake_planfix, task) == [], what="unbound group is not relayed")


# --- dead letters -------------------------------------------------------------------------------


def dlq_listing_with(ops: OpsBridge, text: str) -> str:
    """``bridge dlq list`` once it mentions ``text``; "" before."""
    listing = ops.ok("dlq", "list")
    return listing if text in listing else ""


def test_dlq_retry_delivers_a_dead_lettered_message_once(
    ops: OpsBridge, fake_telegram: FakeTelegram, fake_planfix: FakePlanfix, unique_chat_id: int
) -> None:
    task, _ = bind_new_task(ops, fake_telegram, unique_chat_id, "Dead letters", fake_planfix)
    before = len(texts_sent(fake_telegram, unique_chat_id))
    # Planfix refuses the task's comment list and then the comment alone (403: not a retryable
    # answer): the gateway gives up.
    fake_planfix.fail_next(2, status=403)

    comment_id = fake_planfix.add_employee_comment(task, "<p>Will fail once</p>")

    consumer = "planfix_gateway-comment-fetcher"
    listed = eventually(lambda: dlq_listing_with(ops, consumer), what="dead letter")
    seq = next(line.split()[0] for line in listed.splitlines() if consumer in line)
    assert "permanent_failure" in listed
    shown = ops.ok("dlq", "show", seq)
    assert "HTTP 403" in shown
    assert "planfix.webhook.comment." in shown
    assert len(texts_sent(fake_telegram, unique_chat_id)) == before

    retried = ops.ok("dlq", "retry", seq)

    assert "re-published on planfix.webhook.comment." in retried
    eventually(lambda: len(texts_sent(fake_telegram, unique_chat_id)) == before + 1, what="delivered")
    assert "Will fail once" in texts_sent(fake_telegram, unique_chat_id)[-1]
    assert seq not in [line.split()[0] for line in ops.ok("dlq", "list").splitlines()[:-1]]
    assert "no dead letter" in ops.cli("dlq", "retry", seq).stderr
    stays(lambda: len(texts_sent(fake_telegram, unique_chat_id)) == before + 1, what="delivered once")
    trace = ops.ok("trace", f"pf:{comment_id}")
    # The dead letter is gone once retried; the retried copy says where it came from.
    assert f"[retry of dead letter {seq}]" in trace
    assert trace.index("retry of dead letter") < trace.index("effect.telegram_message_sent.v1")
    (ops.work_dir / "trace-dead-letter.txt").write_text(trace)


def test_a_message_telegram_refused_for_good_is_listed_shown_and_retried_with_the_other_dead_letters(
    ops: OpsBridge, fake_telegram: FakeTelegram, fake_planfix: FakePlanfix, unique_chat_id: int
) -> None:
    task, _ = bind_new_task(ops, fake_telegram, unique_chat_id, "Refused for good", fake_planfix)
    fake_telegram.fail_next(
        "sendMessage", error_code=400, description="Bad Request: CHAT_WRITE_FORBIDDEN", times=2
    )

    fake_planfix.add_employee_comment(task, "<p>Printer fixed, <b>tray 2</b> works again</p>")

    consumer = "relay-telegram-outbox"
    listed = eventually(lambda: dlq_listing_with(ops, consumer), timeout_s=30, what="set aside")
    [line] = [line for line in listed.splitlines() if consumer in line]
    assert f"group {unique_chat_id}" in line
    assert "CHAT_WRITE_FORBIDDEN" in line
    assert "Printer fixed, tray 2 works again" in line
    seq = line.split()[0]
    shown = ops.ok("dlq", "show", seq)
    assert "telegram-outbox/" in shown
    assert "Printer fixed" in shown
    assert not any("Printer fixed" in text for text in texts_sent(fake_telegram, unique_chat_id))

    retried = ops.ok("dlq", "retry", seq)

    assert f"{seq}: queued again for group {unique_chat_id}" in retried
    eventually(
        lambda: any("Printer fixed" in text for text in texts_sent(fake_telegram, unique_chat_id)),
        what="sent after the retry",
    )
    assert seq not in [line.split()[0] for line in ops.ok("dlq", "list").splitlines()[:-1]]
    assert "no dead letter" in ops.cli("dlq", "retry", seq).stderr
    stays(
        lambda: sum("Printer fixed" in text for text in texts_sent(fake_telegram, unique_chat_id)) == 1,
        what="sent once",
    )


def test_a_message_set_aside_before_refusals_were_dead_letters_is_listed_after_the_relay_restarts(
    ops: OpsBridge, unique_chat_id: int
) -> None:
    key = f"telegram-message:pf:comment:990001:{unique_chat_id}:0"
    document = {
        "_id": key,
        "chat_id": unique_chat_id,
        "action": "send",
        "kind": "planfix_comment",
        "correlation_id": "c-old",
        "causation_id": "e-old",
        "seq": 4242,
        "text": "<b>Olga Smirnova</b> · Planfix:\nThe old refused comment",
        "state": "dead",
        "attempts": 8,
        "reason": "Telegram server says - Bad Request: CHAT_WRITE_FORBIDDEN",
        "enqueued_at": datetime.now(UTC),
    }
    ops.mongo(lambda db: db["telegram_outbox_finished"].insert_one(document))

    assert ops.processes["relay"].stop() == 0
    ops.processes["relay"].start()
    eventually(lambda: ops.readiness("relay") == 200, timeout_s=40, what="relay ready again")

    listed = eventually(lambda: dlq_listing_with(ops, "The old refused comment"), what="listed")
    [line] = [line for line in listed.splitlines() if "The old refused comment" in line]
    assert f"group {unique_chat_id}" in line
    assert "CHAT_WRITE_FORBIDDEN" in line
    assert "telegram-outbox/4242" in line


def test_an_undecodable_message_is_dead_lettered_not_dropped(ops: OpsBridge, unique_chat_id: int) -> None:
    async def publish_garbage() -> None:
        async with jetstream(ops.nats_url) as js:
            await js.publish(f"telegram.message.received.{unique_chat_id}", b"\x00 not an event")

    ops.loop.run(publish_garbage())

    listed = eventually(lambda: dlq_listing_with(ops, "undecodable"), what="dead letter")
    line = next(line for line in listed.splitlines() if "undecodable" in line)
    assert "relay-telegram-inbound" in line
    seq = line.split()[0]
    assert "dropped" in ops.ok("dlq", "drop", seq, "--yes")


# --- doctor -------------------------------------------------------------------------------------


def test_doctor_passes_on_a_healthy_bridge(ops: OpsBridge) -> None:
    result = ops.cli("doctor")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "[ok  ] telegram: token accepted" in result.stdout
    assert "[ok  ] telegram privacy" in result.stdout
    assert "[ok  ] telegram webhook: none set" in result.stdout
    assert "[ok  ] consumer relay-telegram-inbound" in result.stdout
    assert "[ok  ] other bots: " in result.stdout
    assert "0 problem(s)" in result.stdout


def test_doctor_names_another_bot_that_answers_task_in_a_bound_group_and_what_it_leads_to(
    ops: OpsBridge, fake_telegram: FakeTelegram, fake_planfix: FakePlanfix, unique_chat_id: int
) -> None:
    with_admin_bot, with_task_for_a_bot = unique_chat_id, unique_chat_id - 1
    task, _ = bind_new_task(ops, fake_telegram, with_admin_bot, "Doctor: admin bot", fake_planfix)
    other_task, _ = bind_new_task(ops, fake_telegram, with_task_for_a_bot, "Doctor: /task@bot", fake_planfix)
    # Planfix's own bot is an admin of one group; in the other someone binds with another bot.
    fake_telegram.add_other_bot(with_admin_bot, "planfix_bot")
    fake_telegram.add_group_message(with_task_for_a_bot, "/task@Helper_Bot Fix the printer")
    eventually(
        lambda: ops.events(f"telegram.other_bot.commanded.{with_task_for_a_bot}"), what="/task@bot stored"
    )

    result = ops.cli("doctor")

    assert result.returncode == 0, result.stdout + result.stderr  # a warning, not a failure
    out = result.stdout
    assert f"[warn] other bots: group {with_admin_bot} (task #{task}): @planfix_bot may answer /task" in out
    assert f"[warn] other bots: group {with_task_for_a_bot} (task #{other_task}): @Helper_Bot may" in out
    assert out.count("every message of the group reaches Planfix twice") == 2
    assert f"`bridge bindings unbind {with_admin_bot}`" in out


def test_doctor_says_whose_the_bots_webhook_is(loop: LoopThread, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeTelegram(token=BOT_TOKEN)
    loop.run(fake.start())
    elsewhere = "https://planfix.example/telegram/hook/path-secret"
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", BOT_TOKEN)
    monkeypatch.setenv("TELEGRAM_API_BASE_URL", fake.base_url)
    for name in ("TELEGRAM_WEBHOOK_URL", "TELEGRAM_TAKE_OVER_WEBHOOK"):
        monkeypatch.delenv(name, raising=False)

    def check() -> Finding:
        return loop.run(check_webhook(TelegramSettings()))

    try:
        assert check().status == "ok"
        httpx.post(f"{fake.base_url}/bot{BOT_TOKEN}/setWebhook", json={"url": elsewhere}, timeout=10)

        taken = check()
        monkeypatch.setenv("TELEGRAM_TAKE_OVER_WEBHOOK", "true")
        taken_over = check()
        monkeypatch.setenv("TELEGRAM_WEBHOOK_URL", elsewhere)
        ours = check()
    finally:
        loop.run(fake.stop())

    assert taken.status == "fail"
    assert "another program at planfix.example" in taken.message
    assert "TELEGRAM_TAKE_OVER_WEBHOOK=true" in taken.fix
    assert "path-secret" not in taken.message + taken.fix
    assert (taken_over.status, ours.status) == ("warn", "ok")
    assert "the gateway takes it over" in taken_over.message


def test_doctor_names_a_wrong_token_and_an_unreachable_nats(ops: OpsBridge) -> None:
    result = ops.cli(
        "doctor",
        extra_env={
            "TELEGRAM_BOT_TOKEN": "123456:not-the-token",
            "PLANFIX_API_TOKEN": "not-the-planfix-token",
            "NATS_URL": f"nats://127.0.0.1:{devstack.free_port()}",
        },
    )

    assert result.returncode == 1
    assert "[FAIL] telegram: Telegram refuses TELEGRAM_BOT_TOKEN" in result.stdout
    assert "[FAIL] planfix: Planfix refuses PLANFIX_API_TOKEN" in result.stdout
    assert "[FAIL] nats: cannot connect to NATS" in result.stdout
    assert "fix: start NATS" in result.stdout
    assert "not-the-token" not in result.stdout + result.stderr


# --- tail ---------------------------------------------------------------------------------------


def test_events_tail_shows_new_events_of_one_chat_live(
    ops: OpsBridge, fake_telegram: FakeTelegram, fake_planfix: FakePlanfix, unique_chat_id: int
) -> None:
    task, _ = bind_new_task(ops, fake_telegram, unique_chat_id, "Tail", fake_planfix)
    tail = subprocess.Popen(
        [sys.executable, "-m", "bridge_cli", "events", "tail", "--chat", str(unique_chat_id), "--count", "2"],
        cwd=REPO_ROOT,
        env={**os.environ, **ops.env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert tail.stderr is not None
        assert "following" in tail.stderr.readline()
        say(ops, fake_telegram, fake_planfix, unique_chat_id, task, "tail me")
        output, _ = tail.communicate(timeout=30)
    finally:
        if tail.poll() is None:
            tail.kill()
    lines = output.splitlines()
    assert len(lines) == 2
    assert "telegram.message_received.v1" in lines[0]
    assert "effect.planfix_comment_posted.v1" in lines[1]


# --- NATS outage (last: it stops the module's NATS) --------------------------------------------


def test_readyz_is_not_ready_while_nats_is_down_and_ready_again_after(
    ops: OpsBridge, fake_telegram: FakeTelegram, fake_planfix: FakePlanfix, unique_chat_id: int
) -> None:
    task, _ = bind_new_task(ops, fake_telegram, unique_chat_id, "Outage", fake_planfix)
    assert ops.health("relay", "/healthz").status_code == 200
    port = int(ops.nats_url.rsplit(":", 1)[1])
    # Stored just before the outage, whether or not the relay carried it yet.
    fake_telegram.add_group_message(unique_chat_id, "stored before the outage")
    eventually(
        lambda: any(
            isinstance(e, TelegramMessageReceived) and e.text == "stored before the outage"
            for e in ops.events(f"telegram.message.received.{unique_chat_id}")
        ),
        what="stored before the outage",
    )

    ops.nats.stop()
    # Written during it: the gateway cannot store it, so Telegram keeps it unconfirmed.
    fake_telegram.add_group_message(unique_chat_id, "written during the outage")

    for name in SERVICES:
        eventually(lambda name=name: ops.readiness(name) == 503, what=f"{name} not ready")  # type: ignore[misc]
        assert ops.health(name, "/healthz").status_code == 200
    assert "nats" in ops.health("relay", "/readyz").json()["checks"]

    ops.nats = devstack.start_nats(ops.nats_dir, port=port, log_file=ops.work_dir / "ops-nats.log")

    for name in SERVICES:
        eventually(
            lambda name=name: ops.readiness(name) == 200,  # type: ignore[misc]
            timeout_s=40,
            what=f"{name} ready again",
        )
    fake_telegram.add_group_message(unique_chat_id, "after the outage")
    # Nothing from before or during the outage is lost, nor carried twice (several messages
    # waiting together may share one comment). The relay's single-active lease may have to run
    # out first (its TTL is 15 s).
    texts = ("stored before the outage", "written during the outage", "after the outage")

    def carried() -> str:
        return "\n".join(c.description for c in relayed_comments(fake_planfix, task))

    eventually(lambda: all(text in carried() for text in texts), timeout_s=60, what="all three carried")
    stays(lambda: all(carried().count(text) == 1 for text in texts), for_s=2, what="each once")
