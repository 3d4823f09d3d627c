"""Fuzzing the Planfix webhook: generated and mutated bodies, right and wrong secrets.

Whatever arrives, the endpoint answers with a deliberate status (never a 5xx from a crash),
keeps serving, and publishes an event only for an authenticated, well-formed notice.
``FUZZ_EXAMPLES`` scales the run (``make fuzz`` uses many more); the counts are printed.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections import Counter
from collections.abc import Iterator
from urllib.parse import urlencode

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contracts.events import PlanfixCommentWebhookReceived
from services.planfix_gateway.webhook import BadWebhook, parse_webhook
from tests.fuzzing import with_flipped_bytes
from tests.support import LoopThread, read_stream_events
from tests.test_webhook_answers_first import listening_receiver

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "2000"))
SECRET = "fuzz-secret-0123456789abcdef"

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=10,
)
id_like = st.one_of(
    st.integers(),
    st.text(max_size=25),
    st.from_regex(r"\s*\d{1,22}\s*", fullmatch=True),
    st.floats(),
    st.none(),
)
notice_like = st.fixed_dictionaries(
    {"task": id_like, "comment": id_like},
    optional={"event": st.sampled_from(["comment.added", "comment.updated", "", "x"]) | st.text(max_size=5)},
)

form_like = st.dictionaries(
    st.sampled_from(["event", "task", "comment", "taskNumber", "commentId", "text"]) | st.text(max_size=8),
    st.one_of(st.from_regex(r"\s*\d{1,22}\s*", fullmatch=True), st.text(max_size=25)),
    max_size=5,
)
BOUNDARY = "fuzz-boundary"


def multipart(fields: dict[str, str]) -> bytes:
    parts = [
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'
        for name, value in fields.items()
    ]
    return ("".join(parts) + f"--{BOUNDARY}--\r\n").encode("utf-8", errors="surrogatepass")


bodies = st.one_of(
    st.binary(max_size=300),
    json_values.map(lambda value: json.dumps(value).encode()),
    notice_like.map(lambda value: json.dumps(value).encode()),
    with_flipped_bytes(notice_like.map(lambda value: json.dumps(value).encode()), reach=200),
    # Planfix pastes template values raw: quotes and newlines inside "strings".
    st.text(max_size=40).map(lambda text: f'{{"task": "4821", "comment": "{text}"}}'.encode()),
    # Forms, as a scenario may send them: the same fields, url-encoded or in multipart parts.
    form_like.map(lambda fields: urlencode(fields).encode()),
    with_flipped_bytes(form_like.map(lambda fields: urlencode(fields).encode()), reach=200),
    form_like.map(lambda fields: multipart(fields)),
    with_flipped_bytes(form_like.map(lambda fields: multipart(fields)), reach=300),
)
CONTENT_TYPES = st.sampled_from(
    [
        "application/json",
        "text/plain",
        "",
        "application/x-www-form-urlencoded",
        "application/x-www-form-urlencoded; charset=utf-8",
        f"multipart/form-data; boundary={BOUNDARY}",
        "multipart/form-data",
        "multipart/form-data; boundary=other",
    ]
)


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
@given(bodies, CONTENT_TYPES)
def test_parsing_any_body_gives_ids_or_a_reason(body: bytes, content_type: str) -> None:
    try:
        ids = parse_webhook(body, content_type)
    except BadWebhook as error:
        reason = str(error)
        assert reason, "a refusal always says why"
        return
    assert ids.task_number > 0
    assert ids.comment_id > 0


@pytest.fixture(scope="module")
def webhook_url(loop: LoopThread, nats_url: str) -> Iterator[str]:
    with loop.entered(listening_receiver(nats_url, SECRET, name="fuzz")) as (_, port):
        yield f"http://127.0.0.1:{port}/planfix/webhook/"


STATUSES: Counter[int] = Counter()


def stored_comment_ids(loop: LoopThread, nats_url: str) -> set[int]:
    return {
        event.comment_id
        for _, event in loop.run(read_stream_events(nats_url, "planfix.webhook.comment.>"))
        if isinstance(event, PlanfixCommentWebhookReceived)
    }


def test_the_endpoint_answers_every_input_deliberately_and_publishes_only_authenticated_notices(
    webhook_url: str, loop: LoopThread, nats_url: str
) -> None:
    accepted: set[int] = set()
    refused_notices: set[int] = set()
    stored_before = stored_comment_ids(loop, nats_url)
    secrets = st.sampled_from([SECRET, SECRET + "x", SECRET[:-1], "", "..%2f", SECRET.upper()])

    with httpx.Client(timeout=10) as client:

        @settings(
            max_examples=max(200, EXAMPLES // 5), deadline=None, suppress_health_check=list(HealthCheck)
        )
        @given(secret=secrets, body=bodies, content_type=CONTENT_TYPES)
        def post(secret: str, body: bytes, content_type: str) -> None:
            response = client.post(webhook_url + secret, content=body, headers={"content-type": content_type})
            STATUSES[response.status_code] += 1
            assert response.status_code in {200, 400, 401, 404, 405, 413}, response.text
            if response.status_code == 200:
                assert secret == SECRET
                accepted.add(parse_webhook(body, content_type).comment_id)
            elif response.status_code in {401, 404}:
                with contextlib.suppress(BadWebhook):
                    refused_notices.add(parse_webhook(body, content_type).comment_id)

        post()
        # Still serving after everything it was fed.
        assert client.post(webhook_url + SECRET, json={"task": 1, "comment": 999_999_999}).status_code == 200

    stored = stored_comment_ids(loop, nats_url) - stored_before
    assert accepted | {999_999_999} <= stored | stored_before
    # Nothing a stranger sent became an event (unless the same ids also came with the secret).
    assert not (refused_notices - accepted) & stored
    print(
        f"\nfuzz: {sum(STATUSES.values())} HTTP inputs, answers {dict(sorted(STATUSES.items()))}, 0 crashes"
    )
