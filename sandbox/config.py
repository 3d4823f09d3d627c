"""What the sandbox process is told by ``make run`` (environment variables), and its cast.

The tokens are placeholders the fakes accept; they are named so nobody mistakes them for real
ones, and a real Telegram or Planfix would refuse them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

SANDBOX_BOT_TOKEN = "1000000001:SANDBOX-fake-bot-token-not-for-telegram"
SANDBOX_PLANFIX_TOKEN = "sandbox-fake-planfix-token-not-for-planfix"
# Telegram's per-group pace in the sandbox (the fake enforces it, the relay keeps it): 20
# messages per 5 s instead of per minute, so answers feel immediate while the pacing code runs.
SANDBOX_GROUP_PACE = (20, 5.0)


@dataclass(frozen=True)
class Person:
    """Someone the page lets you write as in a group."""

    key: str
    user_id: int
    first_name: str
    last_name: str
    username: str
    status: str  # what getChatMember answers: creator, administrator, member; "anonymous" below

    @property
    def name(self) -> str:
        return f"{self.first_name} {self.last_name}".strip()


PEOPLE = (
    Person("anna", 1001, "Anna", "Ivanova", "anna_iv", "creator"),
    Person("boris", 1002, "Boris", "Petrov", "boris_p", "member"),
    Person("chen", 1003, "Chen", "Wei", "chen_w", "member"),
    # An admin posting "as the group": Telegram hides who it is (sender_chat is the group).
    Person("anonymous", 1004, "Dana", "Kuznetsova", "dana_k", "anonymous"),
)
PEOPLE_BY_KEY = {person.key: person for person in PEOPLE}

# Planfix employees the right-hand side writes comments as (id as Planfix names people).
EMPLOYEES = (("user:7", "Olga Smirnova"), ("user:8", "Pavel Orlov"))


@dataclass(frozen=True)
class SandboxConfig:
    state_dir: Path
    host: str
    port: int
    telegram_port: int
    planfix_port: int
    nats_url: str
    # The planfix_gateway's webhook address (with its secret): where the fake scenario posts.
    planfix_webhook_url: str

    @classmethod
    def from_environ(cls) -> SandboxConfig:
        env = os.environ
        return cls(
            state_dir=Path(env.get("SANDBOX_STATE_DIR", "var/sandbox")),
            host=env.get("SANDBOX_HOST", "127.0.0.1"),
            port=int(env.get("SANDBOX_PORT", "8080")),
            telegram_port=int(env.get("SANDBOX_TELEGRAM_PORT", "0")),
            planfix_port=int(env.get("SANDBOX_PLANFIX_PORT", "0")),
            nats_url=env.get("NATS_URL", "nats://127.0.0.1:4222"),
            planfix_webhook_url=env.get("SANDBOX_PLANFIX_WEBHOOK_URL", ""),
        )
