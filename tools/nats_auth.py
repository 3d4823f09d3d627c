"""The NATS users of a deployment, one per service, rendered from ``contracts.subjects``.

``python -m tools.nats_auth`` writes ``deploy/nats/accounts.conf`` (``make nats-auth``); a test
fails when the file is stale, so the permissions cannot drift from the catalogue. Each service
may publish exactly the subjects the catalogue says it publishes, the dead letters of its own
consumers, the key-value buckets it uses, and what JetStream itself needs:

* ``$JS.API.INFO``, ``$JS.API.STREAM.{INFO,CREATE}.*`` (every service declares every stream at
  start; creating an existing stream with the same configuration changes nothing),
  ``$JS.API.STREAM.UPDATE.<stream>`` only for the streams it writes into and its buckets' (a
  relay cannot shorten the BINDING stream's age), ``$JS.API.STREAM.{NAMES,LIST,MSG.GET.*}``,
  ``$JS.API.DIRECT.GET.>`` and ``$JS.API.CONSUMER.>`` (its durable consumers, and the ordered
  ones it reads with); never ``STREAM.DELETE``, ``STREAM.PURGE`` or ``STREAM.MSG.DELETE``;
* ``$JS.ACK.<stream>.<durable>.>`` for its own durable consumers only (it cannot settle another
  service's messages), ``$JS.FC.>`` (flow control of ordered consumers);
* ``_INBOX.>``: replies (JetStream's answers come to an inbox; the binder answers requests).

Passwords are not in the file: ``$<SERVICE>_NATS_PASSWORD`` is read from the nats-server's
environment (a missing one stops the server: nothing runs open by mistake). The ``bridge``
CLI connects as ``bridge_operator``, who may do everything within the account.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from contracts.subjects import (
    BINDER_ADMIT_GROUP,
    BINDER_AUDIT_BINDINGS,
    BINDER_PRIVATE_COMMAND,
    BINDER_REBUILD_STORE,
    CATALOGUE,
    CONSUMERS,
    DEAD_LETTERED,
    LEASES_BUCKET,
    PLANFIX_COMMENT_MARKS_BUCKET,
    PLANFIX_PACING_BUCKET,
    TELEGRAM_PACE_BUCKET,
)

ROOT = Path(__file__).resolve().parent.parent
ACCOUNTS_FILE = ROOT / "deploy" / "nats" / "accounts.conf"
ACCOUNT = "BRIDGE"
SERVICES = ("telegram_gateway", "planfix_gateway", "binder", "relay")
OPERATOR = "bridge_operator"
# The relay's own core-NATS wake-up between its replicas (services/relay/to_telegram/sender.py).
RELAY_OUTBOX_NUDGE = "relay.outbox.nudge"

# What a service uses besides its events: key-value buckets and plain NATS subjects.
BUCKETS: dict[str, tuple[str, ...]] = {
    "telegram_gateway": (),
    "planfix_gateway": (PLANFIX_PACING_BUCKET.name, LEASES_BUCKET.name, PLANFIX_COMMENT_MARKS_BUCKET.name),
    "binder": (PLANFIX_PACING_BUCKET.name,),
    "relay": (PLANFIX_PACING_BUCKET.name, LEASES_BUCKET.name, TELEGRAM_PACE_BUCKET.name),
}
# Requests the gateway asks the binder (answers come back to its inbox), and the requests the
# binder answers (the others come from the operator's CLI).
CORE_PUBLISH: dict[str, tuple[str, ...]] = {
    "relay": (RELAY_OUTBOX_NUDGE,),
    "telegram_gateway": (BINDER_PRIVATE_COMMAND, BINDER_ADMIT_GROUP),
}
CORE_SUBSCRIBE: dict[str, tuple[str, ...]] = {
    "relay": (RELAY_OUTBOX_NUDGE,),
    "binder": (BINDER_REBUILD_STORE, BINDER_PRIVATE_COMMAND, BINDER_ADMIT_GROUP, BINDER_AUDIT_BINDINGS),
}
# The gateway stores updates aiogram cannot decode as dead letters of this name.
TELEGRAM_GATEWAY_DEAD_LETTERS = "telegram_gateway"

JETSTREAM_API = (
    "$JS.API.INFO",
    "$JS.API.STREAM.INFO.*",
    "$JS.API.STREAM.CREATE.*",
    "$JS.API.STREAM.NAMES",
    "$JS.API.STREAM.LIST",
    "$JS.API.STREAM.MSG.GET.*",
    "$JS.API.DIRECT.GET.>",
    "$JS.API.CONSUMER.>",
    "$JS.FC.>",
    "_INBOX.>",
)


@dataclass(frozen=True)
class Permissions:
    user: str
    publish: tuple[str, ...]
    subscribe: tuple[str, ...]

    @property
    def password_variable(self) -> str:
        return f"{self.user.upper()}_NATS_PASSWORD"


def publishes(service: str) -> list[str]:
    """The event subjects ``service`` publishes, as the catalogue's ``published_by`` names it."""
    return [spec.pattern for spec in CATALOGUE if spec is not DEAD_LETTERED and service in spec.published_by]


def owned_streams(service: str) -> list[str]:
    """The streams ``service`` writes into (its events' and dead letters'), and its buckets'."""
    streams = {spec.stream for spec in CATALOGUE if spec.pattern in publishes(service)}
    return [*sorted(streams | {DEAD_LETTERED.stream}), *(f"KV_{bucket}" for bucket in BUCKETS[service])]


def permissions_of(service: str) -> Permissions:
    consumers = [consumer for consumer in CONSUMERS if consumer.service == service]
    dead_letter_keys = [consumer.durable for consumer in consumers]
    if service == "telegram_gateway":
        dead_letter_keys.append(TELEGRAM_GATEWAY_DEAD_LETTERS)
    publish = [
        *publishes(service),
        *(DEAD_LETTERED.subject(key) for key in dead_letter_keys),
        *(f"$KV.{bucket}.>" for bucket in BUCKETS[service]),
        *CORE_PUBLISH.get(service, ()),
        *(f"$JS.ACK.{consumer.stream}.{consumer.durable}.>" for consumer in consumers),
        # A stream's configuration is changed only by those who write into it.
        *(f"$JS.API.STREAM.UPDATE.{stream}" for stream in owned_streams(service)),
        *JETSTREAM_API,
    ]
    subscribe = ["_INBOX.>", *CORE_SUBSCRIBE.get(service, ())]
    return Permissions(service, _unique(publish), _unique(subscribe))


def operator_permissions() -> Permissions:
    return Permissions(OPERATOR, (">",), (">",))


def all_permissions() -> list[Permissions]:
    return [*(permissions_of(service) for service in SERVICES), operator_permissions()]


def render(users: Iterable[Permissions] | None = None) -> str:
    """The ``accounts`` block of a nats-server configuration (the nodes ``include`` it)."""
    lines = [
        "# Generated by `python -m tools.nats_auth` from contracts/subjects.py: do not edit.",
        "# One user per service, allowed to publish exactly the subjects it owns (see tools/nats_auth.py).",
        "# Passwords come from the nats-server's environment: <USER>_NATS_PASSWORD.",
        "accounts {",
        f"  {ACCOUNT} {{",
        "    jetstream: enabled",
        "    users: [",
    ]
    for permissions in users if users is not None else all_permissions():
        lines += [
            "      {",
            f"        user: {permissions.user}",
            f"        password: ${permissions.password_variable}",
            "        permissions: {",
            f"          publish: {{allow: {_list(permissions.publish)}}}",
            f"          subscribe: {{allow: {_list(permissions.subscribe)}}}",
            "        }",
            "      }",
        ]
    lines += ["    ]", "  }", "}", ""]
    return "\n".join(lines)


def _list(subjects: Iterable[str]) -> str:
    return "[" + ", ".join(f'"{subject}"' for subject in subjects) + "]"


def _unique(items: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(items))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("output", nargs="?", type=Path, default=ACCOUNTS_FILE)
    parser.add_argument("--check", action="store_true", help="exit 1 when the file is stale")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        current = args.output.read_text(encoding="utf-8") if args.output.exists() else ""
        if current != text:
            print(f"{args.output} is stale: run `python -m tools.nats_auth`", file=sys.stderr)
            return 1
        return 0
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text, encoding="utf-8")
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
