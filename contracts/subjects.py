"""Subjects and JetStream streams: the one place that names them.

Subject scheme: ``<area>.<noun>.<fact>.<routing key>`` where the routing key is the Telegram
chat id (for things that happen in or go to a group) or the Planfix task number (for things
that happen in a task). Consumers filter with ``>``/``*`` on the leading tokens; the key comes
last so that a later partition mapping (``{{partition(N, <key position>)}}``) can keep per-group
order while groups run in parallel.

==============================================  ===========  =====================================
subject                                         stream       published by
==============================================  ===========  =====================================
``telegram.message.received.<chat_id>``          TELEGRAM     telegram_gateway
``telegram.message.edited.<chat_id>``            TELEGRAM     telegram_gateway
``telegram.message.reacted.<chat_id>``           TELEGRAM     telegram_gateway
``telegram.bind.requested.<chat_id>``            TELEGRAM     telegram_gateway
``planfix.webhook.comment.<task_number>``        PLANFIX      planfix_gateway (HTTP, ids only)
``planfix.comment.added.<task_number>``          PLANFIX      planfix_gateway (content fetched)
``binding.bound.<chat_id>``                      BINDING      binder
``binding.rejected.<chat_id>``                   BINDING      binder
``binding.unbound.<chat_id>``                    BINDING      ``bridge bindings unbind`` (operator)
``effect.planfix.comment_posted.<task_number>``  EFFECTS      relay
``effect.planfix.comment_rewritten.<task_number>`` EFFECTS      relay
``effect.telegram.message_sent.<chat_id>``       EFFECTS      relay
``deadletter.<consumer>``                        DEADLETTER   any consumer (``bridge_lib.eventbus``)
==============================================  ===========  =====================================

Messages, their edits and reactions share the ``telegram.message.`` prefix so that one consumer
(``telegram.message.>``) sees them in the order they happened: an edit never overtakes its
message.

Key-value buckets (JetStream streams named ``KV_<bucket>``):

==================  ==========================================================================
bucket              what
==================  ==========================================================================
``PLANFIX_PACING``  one key per Planfix account: the time of its next free request slot, shared
                    by every service and replica that calls Planfix (``bridge_lib.pacing``)
``LEASES``          single-active work among replicas (``bridge_lib.lease``): ``relay_inbound``
                    is held by the one relay replica that carries messages to Planfix
==================  ==========================================================================

Streams are on file storage. Each has a duplicate window: a publish whose ``Nats-Msg-Id``
was seen within the window is acknowledged as a duplicate and not stored. Inbound streams keep
24 h of ids because Telegram redelivers unconfirmed updates for up to 24 h and Planfix retries a
failed webhook for up to about 2 h 45 min. The BINDING stream keeps every event forever: it is
the source of truth that services (and ``bridge binder rebuild``) replay to learn bindings.

Dead letters: when a consumer gives up on a message (undecodable, a permanent failure, or its
last allowed delivery failed), ``bridge_lib.eventbus.consume`` stores a ``MessageDeadLettered``
event (the original subject, headers and body, the reason, the consumer and the delivery count)
on ``deadletter.<consumer>`` before it terminates the message. The DEADLETTER stream keeps them
until an operator retries (``bridge dlq retry``) or drops (``bridge dlq drop``) them.
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

DEADLETTER_STREAM = StreamSpec(
    name="DEADLETTER",
    subjects=["deadletter.>"],
    description="Messages a consumer gave up on, with the reason; kept until retried or dropped",
    duplicate_window_s=DAY,
)

ALL_STREAMS: tuple[StreamSpec, ...] = (
    TELEGRAM_STREAM,
    PLANFIX_STREAM,
    BINDING_STREAM,
    EFFECTS_STREAM,
    DEADLETTER_STREAM,
)


def telegram_message_received(chat_id: int) -> str:
    return f"telegram.message.received.{chat_id}"


def telegram_message_edited(chat_id: int) -> str:
    return f"telegram.message.edited.{chat_id}"


def telegram_message_reacted(chat_id: int) -> str:
    return f"telegram.message.reacted.{chat_id}"


def telegram_bind_requested(chat_id: int) -> str:
    return f"telegram.bind.requested.{chat_id}"


def planfix_comment_webhook(task_number: int) -> str:
    return f"planfix.webhook.comment.{task_number}"


def planfix_comment_added(task_number: int) -> str:
    return f"planfix.comment.added.{task_number}"


def binding_bound(chat_id: int) -> str:
    return f"binding.bound.{chat_id}"


def binding_rejected(chat_id: int) -> str:
    return f"binding.rejected.{chat_id}"


def binding_unbound(chat_id: int) -> str:
    return f"binding.unbound.{chat_id}"


def planfix_comment_posted(task_number: int) -> str:
    return f"effect.planfix.comment_posted.{task_number}"


def planfix_comment_rewritten(task_number: int) -> str:
    return f"effect.planfix.comment_rewritten.{task_number}"


def telegram_message_sent(chat_id: int) -> str:
    return f"effect.telegram.message_sent.{chat_id}"


def dead_letter(consumer: str) -> str:
    """Durable consumer names are NATS-safe tokens (letters, digits, ``-``, ``_``)."""
    return f"deadletter.{consumer}"


class SubjectSpec(msgspec.Struct, frozen=True, kw_only=True):
    """One subject family of the table above, machine-readable (for the AsyncAPI docs)."""

    # As consumers filter it: the routing key is "*".
    pattern: str
    stream: str
    event_tags: tuple[str, ...]
    published_by: str
    description: str


CATALOGUE: tuple[SubjectSpec, ...] = (
    SubjectSpec(
        pattern="telegram.message.received.*",
        stream="TELEGRAM",
        event_tags=("telegram.message_received.v1",),
        published_by="telegram_gateway",
        description="A message written in a Telegram group; key: chat id",
    ),
    SubjectSpec(
        pattern="telegram.message.edited.*",
        stream="TELEGRAM",
        event_tags=("telegram.message_edited.v1",),
        published_by="telegram_gateway",
        description="A group message was edited; key: chat id",
    ),
    SubjectSpec(
        pattern="telegram.message.reacted.*",
        stream="TELEGRAM",
        event_tags=("telegram.reaction_changed.v1",),
        published_by="telegram_gateway",
        description="The reactions on a group message changed; key: chat id",
    ),
    SubjectSpec(
        pattern="telegram.bind.requested.*",
        stream="TELEGRAM",
        event_tags=("binding.bind_requested.v1",),
        published_by="telegram_gateway",
        description="/task <title> or /task <number> in a group; key: chat id",
    ),
    SubjectSpec(
        pattern="planfix.webhook.comment.*",
        stream="PLANFIX",
        event_tags=("planfix.comment_webhook_received.v1",),
        published_by="planfix_gateway",
        description="Planfix's scenario said a comment was added (ids only); key: task number",
    ),
    SubjectSpec(
        pattern="planfix.comment.added.*",
        stream="PLANFIX",
        event_tags=("planfix.comment_added.v1",),
        published_by="planfix_gateway",
        description="A Planfix comment with its content, fetched through the REST API; key: task number",
    ),
    SubjectSpec(
        pattern="binding.bound.*",
        stream="BINDING",
        event_tags=("binding.task_bound.v1",),
        published_by="binder",
        description="A group was bound to a task; key: chat id",
    ),
    SubjectSpec(
        pattern="binding.rejected.*",
        stream="BINDING",
        event_tags=("binding.bind_rejected.v1",),
        published_by="binder",
        description="A bind request was refused; key: chat id",
    ),
    SubjectSpec(
        pattern="binding.unbound.*",
        stream="BINDING",
        event_tags=("binding.task_unbound.v1",),
        published_by="bridge CLI (operator)",
        description="An operator removed a group's binding; key: chat id",
    ),
    SubjectSpec(
        pattern="effect.planfix.comment_posted.*",
        stream="EFFECTS",
        event_tags=("effect.planfix_comment_posted.v1",),
        published_by="relay",
        description="The relay wrote a comment into a Planfix task; key: task number",
    ),
    SubjectSpec(
        pattern="effect.planfix.comment_rewritten.*",
        stream="EFFECTS",
        event_tags=("effect.planfix_comment_rewritten.v1",),
        published_by="relay",
        description="The relay rewrote one of its comments (an edit or reactions); key: task number",
    ),
    SubjectSpec(
        pattern="effect.telegram.message_sent.*",
        stream="EFFECTS",
        event_tags=("effect.telegram_message_sent.v1",),
        published_by="relay",
        description="The relay sent a message into a Telegram group; key: chat id",
    ),
    SubjectSpec(
        pattern="deadletter.*",
        stream="DEADLETTER",
        event_tags=("ops.message_dead_lettered.v1",),
        published_by="any consumer",
        description="A message a consumer gave up on, with the reason; key: durable consumer name",
    ),
)


# Filters consumers subscribe with.
ALL_TELEGRAM_MESSAGES = "telegram.message.received.*"
# Messages, edits and reactions together, in stream order.
ALL_TELEGRAM_MESSAGE_ACTIVITY = "telegram.message.>"
ALL_BIND_REQUESTS = "telegram.bind.requested.*"
ALL_PLANFIX_COMMENT_WEBHOOKS = "planfix.webhook.comment.*"
ALL_PLANFIX_COMMENTS = "planfix.comment.added.*"
ALL_BINDING_EVENTS = "binding.>"
ALL_EFFECTS = "effect.>"
ALL_DEAD_LETTERS = "deadletter.>"


# Key-value buckets.
PLANFIX_PACING_BUCKET = "PLANFIX_PACING"
LEASES_BUCKET = "LEASES"
