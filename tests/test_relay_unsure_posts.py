"""A comment whose post got no answer (a timeout, a stop cutting the call) may still be made by
Planfix: it is looked for before being posted again, for ``UNSURE_POST_GRACE_S``. The stack's
version: tests/test_stop_and_store_outage.py (SIGTERM while Planfix holds the call past the stop
grace: one comment, not two, still a known gap for a call cut by a stop)."""

from __future__ import annotations

import pytest

from bridge_lib.eventbus import TransientFailure, retry_hint_s
from services.relay.to_planfix.carrier import UNSURE_POST_GRACE_S, UnsurePostPending, may_post_again

NOW = 1_000_000.0


@pytest.mark.parametrize(
    ("unsure_since", "expected"),
    [
        (None, True),  # every earlier try was answered (or there was none)
        (NOW - 5, False),  # it may land yet: look again later
        (NOW - UNSURE_POST_GRACE_S, True),  # long enough: Planfix did not make it
        (NOW + 30, False),  # written by a replica whose clock runs ahead: wait longer, not less
    ],
)
def test_a_comment_not_found_is_posted_again_only_once_an_unanswered_post_is_old_enough(
    unsure_since: float | None, expected: bool
) -> None:
    assert may_post_again(unsure_since, NOW) is expected


def test_the_retry_waits_the_rest_of_the_grace_not_a_growing_delay() -> None:
    pending = UnsurePostPending(45.0)
    failure = TransientFailure(str(pending))
    failure.__cause__ = pending  # as the carrier raises it: ``from`` the pending post
    # The consumer's outage delay takes the hint the failure carries (capped by its maximum).
    assert retry_hint_s(failure) == 45.0
    assert UnsurePostPending(-3.0).retry_after_s == 0.1
    assert UnsurePostPending(600.0).retry_after_s == UNSURE_POST_GRACE_S
