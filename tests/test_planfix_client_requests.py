"""What the Planfix client sends and how it reads answers, in memory (httpx's MockTransport):
the spec's 302 downloads, recipients, newest-first lookups, error codes before statuses."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import ValidationError

from bridge_lib.planfix import (
    DailyLimitReached,
    PlanfixClient,
    PlanfixRejected,
    PlanfixUnavailable,
    RecipientRole,
    Recipients,
    RolesForm,
    TaskNotFound,
)
from bridge_lib.settings import PlanfixSettings
from contracts.events import planfix_source_object_id

SOURCE_ID = "0c6b7f0e-2d7a-4f0e-9a56-6a3f1c9b8e11"
TOKEN = "planfix-test-token"
Handler = Callable[[httpx.Request], httpx.Response]


def run_client(
    handler: Handler, action: Callable[[PlanfixClient], Any], *, base_url: str, attempts: int = 1
) -> Any:
    async def go() -> Any:
        async with PlanfixClient(
            base_url=base_url,
            token=TOKEN,
            transport=httpx.MockTransport(handler),
            retry_attempts=attempts,
            retry_timeout_s=5,
        ) as client:
            return await action(client)

    return asyncio.run(go())


class Recorder:
    def __init__(self, answer: Handler) -> None:
        self.requests: list[httpx.Request] = []
        self._answer = answer

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self._answer(request)


# --- downloads: the spec's 302 -------------------------------------------------------------


def storage_redirect(location: str, data: bytes = b"%PDF-1.7 bytes") -> Recorder:
    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/download"):
            return httpx.Response(302, headers={"Location": location})
        return httpx.Response(200, content=data, headers={"Content-Type": "application/pdf"})

    return Recorder(answer)


def test_a_download_follows_the_redirect_without_the_token(tmp_path: Path) -> None:
    planfix = storage_redirect("https://storage.example.net/f/abc?sig=1")
    target = tmp_path / "scan.pdf"
    written = run_client(
        planfix,
        lambda c: c.download_file(7001, target, max_bytes=1000),
        base_url="https://acc.planfix.com/rest/",
    )
    api, storage = planfix.requests
    assert api.headers["Authorization"] == f"Bearer {TOKEN}"
    assert str(storage.url) == "https://storage.example.net/f/abc?sig=1"
    assert "Authorization" not in storage.headers
    assert TOKEN not in str(storage.url)
    assert (written, target.read_bytes()) == (14, b"%PDF-1.7 bytes")


def test_a_relative_redirect_is_followed_on_the_api_host(tmp_path: Path) -> None:
    planfix = storage_redirect("/storage/xyz/scan.pdf")
    run_client(
        planfix,
        lambda c: c.download_file(7001, tmp_path / "f", max_bytes=1000),
        base_url="https://acc.planfix.com/rest/",
    )
    assert str(planfix.requests[1].url) == "https://acc.planfix.com/storage/xyz/scan.pdf"
    assert "Authorization" not in planfix.requests[1].headers


@pytest.mark.parametrize(
    ("base_url", "location", "followed"),
    [
        ("https://acc.planfix.com/rest/", "http://storage.example.net/f", False),  # no downgrade
        ("https://acc.planfix.com/rest/", "ftp://storage.example.net/f", False),
        ("http://127.0.0.1:9/rest/", "http://127.0.0.1:9/storage/f", True),  # the fakes on loopback
    ],
)
def test_a_redirect_never_downgrades_a_real_account(
    tmp_path: Path, base_url: str, location: str, followed: bool
) -> None:
    planfix = storage_redirect(location)
    action = lambda c: c.download_file(7001, tmp_path / "f", max_bytes=1000)  # noqa: E731
    if followed:
        run_client(planfix, action, base_url=base_url)
        assert len(planfix.requests) == 2
    else:
        with pytest.raises(PlanfixRejected, match="not https"):
            run_client(planfix, action, base_url=base_url)
        assert len(planfix.requests) == 1
        assert not (tmp_path / "f").exists()


def test_a_second_redirect_is_refused(tmp_path: Path) -> None:
    planfix = Recorder(
        lambda request: httpx.Response(302, headers={"Location": "https://s.example.net/again"})
    )
    with pytest.raises(PlanfixRejected, match="more than once"):
        run_client(
            planfix,
            lambda c: c.download_file(7001, tmp_path / "f", max_bytes=1000),
            base_url="https://acc.planfix.com/rest/",
        )
    assert len(planfix.requests) == 2


def test_the_size_cap_holds_behind_the_redirect(tmp_path: Path) -> None:
    planfix = storage_redirect("https://s.example.net/big", data=b"x" * 5000)
    with pytest.raises(Exception, match="larger than 1000 bytes"):
        run_client(
            planfix,
            lambda c: c.download_file(7001, tmp_path / "f", max_bytes=1000),
            base_url="https://acc.planfix.com/rest/",
        )
    assert not (tmp_path / "f").exists()


def test_bytes_answered_directly_are_still_taken(tmp_path: Path) -> None:
    # Not what the spec shows, but harmless to accept (an older or proxied Planfix).
    planfix = Recorder(
        lambda request: httpx.Response(200, content=b"png", headers={"Content-Type": "image/png"})
    )
    written = run_client(
        planfix,
        lambda c: c.download_file(7001, tmp_path / "f", max_bytes=1000),
        base_url="https://acc.planfix.com/rest/",
    )
    assert written == 3


def test_a_missing_file_behind_the_redirect_is_file_not_found(tmp_path: Path) -> None:
    planfix = Recorder(
        lambda request: httpx.Response(
            400, json={"result": "fail", "code": 7000, "error": "File not found by id"}
        )
    )
    with pytest.raises(PlanfixRejected, match="code 7000"):
        run_client(
            planfix,
            lambda c: c.download_file(7001, tmp_path / "f", max_bytes=1000),
            base_url="https://acc.planfix.com/rest/",
        )


# --- comments: UUIDs, recipients, newest first ----------------------------------------------


def created(request: httpx.Request) -> httpx.Response:
    if request.url.path.endswith("/list"):
        return httpx.Response(200, json={"result": "success", "comments": []})
    return httpx.Response(201, json={"result": "success", "id": 90001})


def posted_body(recipients: Recipients | None) -> dict[str, Any]:
    planfix = Recorder(created)
    run_client(
        planfix,
        lambda c: c.add_comment(
            task_number=4821,
            description_html="hi",
            source_id=SOURCE_ID,
            source_object_id=planfix_source_object_id("tg:msg:-100:5"),
            recipients=recipients,
        ),
        base_url="https://acc.planfix.com/rest/",
    )
    body: dict[str, Any] = json.loads(planfix.requests[0].content)
    return body


def test_source_object_id_is_a_uuid_the_same_for_every_retry() -> None:
    first = planfix_source_object_id("tg:msg:-100:5")
    assert first == planfix_source_object_id("tg:msg:-100:5") != planfix_source_object_id("tg:msg:-100:6")
    body = posted_body(None)
    assert (body["sourceId"], body["sourceObjectId"]) == (SOURCE_ID, first)
    assert "recipients" not in body


def test_a_source_object_id_that_is_not_a_uuid_is_never_sent() -> None:
    planfix = Recorder(created)
    with pytest.raises(ValueError, match="sourceObjectId must be a UUID"):
        run_client(
            planfix,
            lambda c: c.add_comment(
                task_number=1, description_html="x", source_id=SOURCE_ID, source_object_id="tg:msg:-100:5"
            ),
            base_url="https://acc.planfix.com/rest/",
        )
    assert planfix.requests == []


@pytest.mark.parametrize(
    ("recipients", "sent"),
    [
        (
            Recipients(roles=(RecipientRole.PARTICIPANT, RecipientRole.ASSIGNEE)),
            {"roles": ["participant", "assignee"]},
        ),
        (
            Recipients(
                roles=(RecipientRole.PARTICIPANT, RecipientRole.ASSIGNEE), roles_form=RolesForm.STRING
            ),
            {"roles": "participant"},
        ),
        (
            Recipients(users=("user:5",), roles=(RecipientRole.ASSIGNEE,)),
            {"users": [{"id": "user:5"}], "roles": ["assignee"]},
        ),
        (Recipients(), None),
    ],
)
def test_recipients_are_sent_in_the_form_asked(recipients: Recipients, sent: dict[str, Any] | None) -> None:
    assert posted_body(recipients).get("recipients") == sent


def test_the_crash_lookup_asks_for_the_newest_comments_first() -> None:
    planfix = Recorder(created)
    run_client(
        planfix,
        lambda c: c.list_comments(4821, source_id=SOURCE_ID, newest_first=True),
        base_url="https://acc.planfix.com/rest/",
    )
    body = json.loads(planfix.requests[0].content)
    assert body["resultOrder"] == [{"field": "id", "direction": "Desc"}]


# --- answers: the code decides before the status --------------------------------------------


@pytest.mark.parametrize(
    ("status", "body", "error", "calls"),
    [
        (500, {"result": "fail", "code": 1000, "error": "Task not found"}, TaskNotFound, 1),
        (500, {"result": "fail", "code": 0, "error": "Rest API error"}, PlanfixUnavailable, 3),
        (503, None, PlanfixUnavailable, 3),
        (403, {"result": "fail", "code": 22, "error": "limit", "timeToReset": 3600}, DailyLimitReached, 1),
        (403, {"result": "fail", "code": 6, "error": "Access denied"}, PlanfixRejected, 1),
        (400, {"result": "fail", "code": 30, "error": "Bad JSON"}, PlanfixRejected, 1),
    ],
)
def test_a_failure_is_retried_only_when_its_code_says_it_may_pass(
    status: int, body: dict[str, Any] | None, error: type[Exception], calls: int
) -> None:
    planfix = Recorder(
        lambda request: httpx.Response(status, json=body) if body else httpx.Response(status, text="<html>")
    )
    with pytest.raises(error) as raised:
        run_client(
            planfix, lambda c: c.list_comments(4821), base_url="https://acc.planfix.com/rest/", attempts=3
        )
    assert len(planfix.requests) == calls
    if isinstance(raised.value, DailyLimitReached):
        assert raised.value.reset_after_s == 3600


# --- settings ---------------------------------------------------------------------------------


def planfix_settings(**env: str) -> PlanfixSettings:
    base = {"PLANFIX_BASE_URL": "https://acc.planfix.com/rest/", "PLANFIX_API_TOKEN": "t"}
    return PlanfixSettings.model_validate({**base, **env})


@pytest.mark.parametrize(
    ("notify", "roles"),
    [
        ("mentioned,participants,assignees", (RecipientRole.PARTICIPANT, RecipientRole.ASSIGNEE)),
        ("assignees", (RecipientRole.ASSIGNEE,)),
        ("auditors,assigner", (RecipientRole.AUDITOR, RecipientRole.ASSIGNER)),
        ("none", ()),
    ],
)
def test_planfix_notify_names_the_roles_told(notify: str, roles: tuple[RecipientRole, ...]) -> None:
    assert planfix_settings(PLANFIX_NOTIFY=notify).planfix_recipients.roles == roles


@pytest.mark.parametrize(
    "env",
    [
        {"PLANFIX_NOTIFY": "everyone"},
        {"PLANFIX_NOTIFY": ""},
        {"PLANFIX_NOTIFY_ROLES_FORM": "list"},
        {"PLANFIX_SOURCE_ID": "bridge"},
    ],
)
def test_bad_planfix_settings_are_refused_at_start(env: dict[str, str]) -> None:
    with pytest.raises(ValidationError):
        planfix_settings(**env)


def test_the_default_settings_notify_as_planfix_own_integration_does() -> None:
    settings = planfix_settings()
    assert settings.planfix_notify_mentioned
    assert settings.planfix_recipients.roles_form is RolesForm.ARRAY
