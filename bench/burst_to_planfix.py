"""How long a burst of messages from one group takes to reach Planfix at 1 request/second.

    .venv/bin/python -m bench.burst_to_planfix [messages]

Runs the four services against a fake Planfix that enforces 1 request/second (429 on overrun),
sends the burst into a bound group, and prints the time from the first message to the last one
being in the task, the number of comments it took, and how many requests Planfix refused.
"""

from __future__ import annotations

import sys
import time

from bench.common import running_stack
from tests.support import eventually

CHAT_ID = -1009000000001


def main(messages: int = 100) -> None:
    services = ("binder", "relay", "planfix_gateway", "telegram_gateway")
    with running_stack(services, planfix_rate_per_s=1.0) as stack:
        stack.telegram.set_member_status(CHAT_ID, 501, "administrator")  # only admins bind
        stack.telegram.add_group_message(CHAT_ID, "/task Burst benchmark")
        eventually(lambda: stack.telegram.sent_messages(CHAT_ID), timeout_s=60, what="group bound")
        [number] = [t for t in range(4800, 4900) if stack.planfix.task(t)]
        # Let the bind's echo and confirmation settle so the clock measures the burst alone.
        time.sleep(2)
        started = time.monotonic()
        for index in range(messages):
            stack.telegram.add_group_message(CHAT_ID, f"burst message {index:04d}")

        def all_in() -> bool:
            text = "".join(c.description for c in stack.planfix.comments(number))
            return f"burst message {messages - 1:04d}" in text and text.count("burst message") == messages

        eventually(all_in, timeout_s=600, interval_s=0.02, what="the whole burst in Planfix")
        elapsed = time.monotonic() - started
        comments = len(stack.planfix.comments(number))
        throttled = len(stack.planfix.throttled_calls())
    print(
        f"burst of {messages} messages at 1 request/s: all in the task after {elapsed:.1f} s, "
        f"in {comments} comments, {throttled} requests refused with 429"
    )


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 100)
