"""Subjects and JetStream streams: the one place that names them.

Subject scheme: ``<area>.<noun>.<fact>.<routing key>`` where the routing key is the Telegram
chat id (for things that happen in or go to a group) or the Planfix task number (for things
that happen in a task). Consumers filter with ``>``/``*`` on the leading tokens; the key comes
last so that a later partition mapping (``{{partition(N, <key position>)}}``) can keep per-group
order while groups run in parallel.

==================================================  ===========  =================================
subject                                             stream       published by
==================================================  ===========  =================================
``telegram.message.received.<chat_id>``             TELEGRAM     telegram_gateway
``telegram.bind.requested.<chat_id>``               TELEGRAM     telegram_gateway (/task, /unbind)
``telegram.group.command_received.<chat_id>``       TELEGRAM     telegram_gateway (/status, /help)
``telegram.group.anonymous_admin_posted.<chat_id>`` TELEGRAM     telegram_gateway
``telegram.group.bot_membership_changed.<chat_id>`` TELEGRAM     telegram_gateway (my_chat_member)
``telegram.group.migrated.<new_chat_id>``           TELEGRAM     telegram_gateway, relay
``planfix.webhook.comment.<task_number>``           PLANFIX      planfix_gateway (HTTP, ids only)
``planfix.comment.added.<task_number>``             PLANFIX      planfix_gateway (content fetched)
``planfix.comment.updated.<task_number>``           PLANFIX      planfix_gateway (content fetched)
``planfix.comment.deleted.<task_number>``           PLANFIX      planfix_gateway (checked gone)
``binding.bound.<chat_id>``                         BINDING      binder
``binding.rejected.<chat_id>``                      BINDING      binder
``binding.unbound.<chat_id>``                       BINDING      binder (/unbind), bridge CLI
``binding.unbind_rejected.<chat_id>``               BINDING      binder
``binding.suspended.<chat_id>``                     BINDING      binder
``binding.resumed.<chat_id>``                       BINDING      binder
``binding.moved.<new_chat_id>``                     BINDING      binder
``effect.planfix.comment_posted.<task_number>``     EFFECTS      relay
``effect.telegram.message_sent.<chat_id>``          EFFECTS      relay
``effect.telegram.messages_edited.<chat_id>``       EFFECTS      relay
``effect.telegram.messages_deleted.<chat_id>``      EFFECTS      relay
``effect.telegram.delivery_failed.<chat_id>``       EFFECTS      relay
==================================================  ===========  =================================

``/task`` and ``/unbind`` share one subject so the binder sees them in the order they were
written. ``telegram.group.*`` carries what happens to a group as a whole, for the binder
(membership, migration) and the relay (answers, greetings); each skips the kinds it does not
act on. ``planfix.comment.*`` keeps a task's added, updated and deleted comments in one order.

Key-value buckets (JetStream streams under the hood, named here as well):

==========================  ===============================================================
bucket                      what it holds
==========================  ===============================================================
``telegram_pace``           relay: when the next message may go to each group
                            (``chat.<chat_id>``) and to Telegram at all (``bot``), and which
                            relay replica currently sends to a group (``owner.<chat_id>``)
==========================  ===============================================================

Streams are on file storage. Each has a duplicate window: a publish whose ``Nats-Msg-Id``
was seen within the window is acknowledged as a duplicate and not stored. Inbound streams keep
24 h of ids because Telegram redelivers unconfirmed updates for up to 24 h and Planfix retries a
failed webhook for up to about 2 h 45 min. The BINDING stream keeps every event forever: it is
the source of truth that services (and ``binder rebuild`` later) replay to learn bindings.
"""

from __future__ import annotations

import msgspec

HOUR = 3600.0
DAY = 24 * HOUR


class StreamSpec(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    subjects: list[str]
    description: str
    duplicate_window_s: float
    # 0 means "keep forever".
    max_age_s: float = 0.0


TELEGRAM_STREAM = StreamSpec(
    name="TELEGRAM",
    subjects=["telegram.>"],
    description="What people did in Telegram groups, as the gateway saw it",
    duplicate_window_s=DAY,
    max_age_s=30 * DAY,
)
PLANFIX_STREAM = StreamSpec(
    name="PLANFIX",
    subjects=["planfix.>"],
    description="What happened in Planfix tasks: webhook notices and fetched comments",
    duplicate_window_s=DAY,
    max_age_s=30 * DAY,
)
BINDING_STREAM = StreamSpec(
    name="BINDING",
    subjects=["binding.>"],
    description="Group-to-task bindings decided by the binder; kept forever",
    duplicate_window_s=DAY,
)
EFFECTS_STREAM = StreamSpec(
    name="EFFECTS",
    subjects=["effect.>"],
    description="What the bridge wrote to the outside world",
    duplicate_window_s=DAY,
    max_age_s=30 * DAY,
)

ALL_STREAMS: tuple[StreamSpec, ...] = (TELEGRAM_STREAM, PLANFIX_STREAM, BINDING_STREAM, EFFECTS_STREAM)


class BucketSpec(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    description: str
    # Entries untouched for this long disappear (0: never).
    ttl_s: float = 0.0


TELEGRAM_PACE_BUCKET = BucketSpec(
    name="telegram_pace",
    description="When the next Telegram message may go to each group and to the bot, and who sends",
    ttl_s=DAY,
)


def telegram_message_received(chat_id: int) -> str:
    return f"telegram.message.received.{chat_id}"


def telegram_bind_requested(chat_id: int) -> str:
    return f"telegram.bind.requested.{chat_id}"


def planfix_comment_webhook(task_number: int) -> str:
    return f"planfix.webhook.comment.{task_number}"


def telegram_group_command(chat_id: int) -> str:
    return f"telegram.group.command_received.{chat_id}"


def telegram_anonymous_admin_posted(chat_id: int) -> str:
    return f"telegram.group.anonymous_admin_posted.{chat_id}"


def telegram_bot_membership_changed(chat_id: int) -> str:
    return f"telegram.group.bot_membership_changed.{chat_id}"


def telegram_group_migrated(new_chat_id: int) -> str:
    return f"telegram.group.migrated.{new_chat_id}"


def planfix_comment_added(task_number: int) -> str:
    return f"planfix.comment.added.{task_number}"


def planfix_comment_updated(task_number: int) -> str:
    return f"planfix.comment.updated.{task_number}"


def planfix_comment_deleted(task_number: int) -> str:
    return f"planfix.comment.deleted.{task_number}"


def binding_bound(chat_id: int) -> str:
    return f"binding.bound.{chat_id}"


def binding_rejected(chat_id: int) -> str:
    return f"binding.rejected.{chat_id}"


def binding_unbound(chat_id: int) -> str:
    return f"binding.unbound.{chat_id}"


def binding_unbind_rejected(chat_id: int) -> str:
    return f"binding.unbind_rejected.{chat_id}"


def binding_suspended(chat_id: int) -> str:
    return f"binding.suspended.{chat_id}"


def binding_resumed(chat_id: int) -> str:
    return f"binding.resumed.{chat_id}"


def binding_moved(new_chat_id: int) -> str:
    return f"binding.moved.{new_chat_id}"


def planfix_comment_posted(task_number: int) -> str:
    return f"effect.planfix.comment_posted.{task_number}"


def telegram_message_sent(chat_id: int) -> str:
    return f"effect.telegram.message_sent.{chat_id}"


def telegram_messages_edited(chat_id: int) -> str:
    return f"effect.telegram.messages_edited.{chat_id}"


def telegram_messages_deleted(chat_id: int) -> str:
    return f"effect.telegram.messages_deleted.{chat_id}"


def telegram_delivery_failed(chat_id: int) -> str:
    return f"effect.telegram.delivery_failed.{chat_id}"


# Filters consumers subscribe with.
ALL_TELEGRAM_MESSAGES = "telegram.message.received.*"
ALL_BIND_REQUESTS = "telegram.bind.requested.*"
ALL_PLANFIX_COMMENT_WEBHOOKS = "planfix.webhook.comment.*"
ALL_PLANFIX_COMMENTS = "planfix.comment.added.*"
ALL_PLANFIX_COMMENT_CHANGES = "planfix.comment.*.*"
ALL_TELEGRAM_GROUP_EVENTS = "telegram.group.*.*"
ALL_BINDING_EVENTS = "binding.>"
ALL_EFFECTS = "effect.>"
