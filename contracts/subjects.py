"""Subjects and JetStream streams: the one place that names them.

Subject scheme: ``<area>.<noun>.<fact>.<routing key>`` where the routing key is the Telegram
chat id (for things that happen in or go to a group) or the Planfix task number (for things
that happen in a task). Consumers filter with ``>``/``*`` on the leading tokens; the key comes
last so that a later partition mapping (``{{partition(N, <key position>)}}``) can keep per-group
order while groups run in parallel.

====================================================  ===========  ================================
subject                                               stream       published by
====================================================  ===========  ================================
``telegram.message.received.<chat_id>``               TELEGRAM     telegram_gateway
``telegram.message.edited.<chat_id>``                 TELEGRAM     telegram_gateway
``telegram.message.reacted.<chat_id>``                TELEGRAM     telegram_gateway
``telegram.bind.requested.<chat_id>``                 TELEGRAM     telegram_gateway (/task, /unbind),
                                                                   bridge CLI (bindings unbind)
``telegram.group.command_received.<chat_id>``         TELEGRAM     telegram_gateway (/status, /help)
``telegram.group.anonymous_admin_posted.<chat_id>``   TELEGRAM     telegram_gateway
``telegram.group.bot_membership_changed.<chat_id>``   TELEGRAM     telegram_gateway (my_chat_member)
``telegram.group.migrated.<new_chat_id>``             TELEGRAM     telegram_gateway, relay
``telegram.other_bot.commanded.<chat_id>``            TELEGRAM     telegram_gateway (/task@<other bot>)
``planfix.webhook.comment.<task_number>``             PLANFIX      planfix_gateway (HTTP, ids only)
``planfix.comment.added.<task_number>``               PLANFIX      planfix_gateway (content fetched)
``planfix.comment.updated.<task_number>``             PLANFIX      planfix_gateway (fetched, re-read)
``planfix.comment.deleted.<task_number>``             PLANFIX      planfix_gateway (checked, re-read)
``binding.bound.<chat_id>``                           BINDING      binder
``binding.rejected.<chat_id>``                        BINDING      binder
``binding.unbound.<chat_id>``                         BINDING      binder
``binding.unbind_rejected.<chat_id>``                 BINDING      binder
``binding.suspended.<chat_id>``                       BINDING      binder
``binding.resumed.<chat_id>``                         BINDING      binder
``binding.moved.<new_chat_id>``                       BINDING      binder
``effect.planfix.comment_posted.<task_number>``       EFFECTS      relay
``effect.planfix.comment_rewritten.<task_number>``    EFFECTS      relay
``effect.telegram.message_sent.<chat_id>``            EFFECTS      relay
``effect.telegram.messages_edited.<chat_id>``         EFFECTS      relay
``effect.telegram.messages_deleted.<chat_id>``        EFFECTS      relay
``effect.telegram.delivery_failed.<chat_id>``         EFFECTS      relay
``deadletter.<consumer>``                             DEADLETTER   any consumer (bridge_lib.eventbus)
====================================================  ===========  ================================

``/task`` and ``/unbind`` share one subject so the binder sees them in the order they were
written. ``telegram.group.*`` carries what happens to a group as a whole, for the binder
(membership, migration) and the relay (answers, greetings); each skips the kinds it does not
act on. ``planfix.comment.*`` keeps a task's added, updated and deleted comments in one order.
An operator's ``UnbindGroup`` shares the ``/task`` subject too, so it is decided in that order.
``telegram.other_bot.*`` is read, not consumed: by the gateway when it answers ``/status`` and
by ``bridge doctor`` (which other bot of a group answers ``/task`` too).

Messages, their edits and reactions share the ``telegram.message.`` prefix so that one consumer
(``telegram.message.>``) sees them in the order they happened: an edit never overtakes its
message.

Order and scale (the choice, and why not N subject partitions):

* Ingesting consumers are durable pull consumers with ``max_ack_pending=1``
  (``bridge_lib.eventbus.durable_pull``): JetStream hands out the next message only after the
  previous one is acknowledged, so the stream's order is the handling order even with several
  replicas on one durable, and after a replica dies mid-message the next delivery is that same
  message. Their work is cheap and local (a store write, an outbox entry, one paced Planfix fetch).
* Telegram -> Planfix: one batch consumer held by one relay replica at a time (lease
  ``relay_inbound``); the calls are bounded by Planfix's limit per *account*, which no number of
  parallel partitions could raise, and a batch's messages for one task become one comment. When
  the holder dies with messages in flight the next holder rewinds to the acknowledgement floor.
* Planfix -> Telegram, where the limits are per *group*: comments go to a per-group outbox; each
  group is drained in order by the one replica holding its lease (``owner.<chat_id>``), and
  different groups are drained in parallel by whichever replicas hold them. This is the
  partitioning the issue asks for at the finest grain (one partition per group): a group held
  back by its own 429 never blocks another group in the same partition, and replicas take over
  a dead replica's groups when its lease lapses (``RELAY_GROUP_LEASE_TTL_S``).
* The routing key stays the last subject token, so a deterministic mapping
  (``{{partition(N, <position>)}}`` in the stream's subject transform) can still be added should
  one ingesting consumer ever become the bottleneck; measured cost today: docs/benchmarks.md.

Key-value buckets (JetStream streams named ``KV_<bucket>``):

==================  ==========================================================================
bucket              what
==================  ==========================================================================
``telegram_pace``   relay: when the next message may go to each group (``chat.<chat_id>``) and
                    to Telegram at all (``bot``), and which relay replica currently sends to a
                    group (``owner.<chat_id>``)
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
until an operator retries (``bridge dlq retry``) or drops (``bridge dlq drop``) them. The
Telegram gateway stores an update from ``getUpdates`` (or posted to its webhook) that aiogram
cannot decode the same way, on ``deadletter.telegram_gateway`` (stream ``telegram-bot-api``,
sequence = the update id); it cannot be retried, only read and dropped.
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


def telegram_message_edited(chat_id: int) -> str:
    return f"telegram.message.edited.{chat_id}"


def telegram_message_reacted(chat_id: int) -> str:
    return f"telegram.message.reacted.{chat_id}"


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


def telegram_other_bot_commanded(chat_id: int) -> str:
    return f"telegram.other_bot.commanded.{chat_id}"


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
        event_tags=("binding.bind_requested.v1", "binding.unbind_requested.v1", "binding.unbind_group.v1"),
        published_by="telegram_gateway; bridge CLI (an operator's unbind)",
        description="/task <title>, /task <number> or /unbind in a group, or an operator's unbind, "
        "in order; key: chat id",
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
        published_by="binder",
        description="A group's binding was removed; key: chat id",
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
        pattern="telegram.group.command_received.*",
        stream="TELEGRAM",
        event_tags=("telegram.group_command_received.v1",),
        published_by="telegram_gateway",
        description="/status or /help in a group; key: chat id",
    ),
    SubjectSpec(
        pattern="telegram.group.anonymous_admin_posted.*",
        stream="TELEGRAM",
        event_tags=("telegram.anonymous_admin_posted.v1",),
        published_by="telegram_gateway",
        description="A message sent anonymously as the group (not carried); key: chat id",
    ),
    SubjectSpec(
        pattern="telegram.group.bot_membership_changed.*",
        stream="TELEGRAM",
        event_tags=("telegram.bot_membership_changed.v1",),
        published_by="telegram_gateway",
        description="The bot was added to or removed from a group; key: chat id",
    ),
    SubjectSpec(
        pattern="telegram.group.migrated.*",
        stream="TELEGRAM",
        event_tags=("telegram.chat_migrated.v1",),
        published_by="telegram_gateway, relay",
        description="A group became a supergroup with a new chat id; key: the new chat id",
    ),
    SubjectSpec(
        pattern="telegram.other_bot.commanded.*",
        stream="TELEGRAM",
        event_tags=("telegram.other_bot_commanded.v1",),
        published_by="telegram_gateway",
        description="/task@<another bot> was written in a group: that bot answers /task too; key: chat id",
    ),
    SubjectSpec(
        pattern="planfix.comment.updated.*",
        stream="PLANFIX",
        event_tags=("planfix.comment_updated.v1",),
        published_by="planfix_gateway",
        description="A Planfix comment was changed, with its new content (after a scenario's notice, "
        "or noticed by the paced re-read of the task); key: task number",
    ),
    SubjectSpec(
        pattern="planfix.comment.deleted.*",
        stream="PLANFIX",
        event_tags=("planfix.comment_deleted.v1",),
        published_by="planfix_gateway",
        description="A Planfix comment was deleted (checked; after a scenario's notice, or noticed by "
        "the paced re-read of the task); key: task number",
    ),
    SubjectSpec(
        pattern="binding.unbind_rejected.*",
        stream="BINDING",
        event_tags=("binding.unbind_rejected.v1",),
        published_by="binder",
        description="An /unbind was refused; key: chat id",
    ),
    SubjectSpec(
        pattern="binding.suspended.*",
        stream="BINDING",
        event_tags=("binding.binding_suspended.v1",),
        published_by="binder",
        description="The bot left the group: its binding waits; key: chat id",
    ),
    SubjectSpec(
        pattern="binding.resumed.*",
        stream="BINDING",
        event_tags=("binding.binding_resumed.v1",),
        published_by="binder",
        description="The bot is back: the binding carries again; key: chat id",
    ),
    SubjectSpec(
        pattern="binding.moved.*",
        stream="BINDING",
        event_tags=("binding.binding_moved.v1",),
        published_by="binder",
        description="The binding followed the group to its new chat id; key: the new chat id",
    ),
    SubjectSpec(
        pattern="effect.telegram.messages_edited.*",
        stream="EFFECTS",
        event_tags=("effect.telegram_messages_edited.v1",),
        published_by="relay",
        description="The relay edited its messages for an edited comment; key: chat id",
    ),
    SubjectSpec(
        pattern="effect.telegram.messages_deleted.*",
        stream="EFFECTS",
        event_tags=("effect.telegram_messages_deleted.v1",),
        published_by="relay",
        description="The relay deleted its messages for a deleted comment; key: chat id",
    ),
    SubjectSpec(
        pattern="effect.telegram.delivery_failed.*",
        stream="EFFECTS",
        event_tags=("effect.telegram_delivery_failed.v1",),
        published_by="relay",
        description="Telegram refused a message for good; it is kept in the outbox; key: chat id",
    ),
    SubjectSpec(
        pattern="deadletter.*",
        stream="DEADLETTER",
        event_tags=("ops.message_dead_lettered.v1",),
        published_by="any consumer; telegram_gateway for an update Telegram sent that it cannot read",
        description="A message a consumer gave up on, with the reason; key: durable consumer name "
        "(``telegram_gateway``: updates from getUpdates that do not decode)",
    ),
)


def telegram_messages_edited(chat_id: int) -> str:
    return f"effect.telegram.messages_edited.{chat_id}"


def telegram_messages_deleted(chat_id: int) -> str:
    return f"effect.telegram.messages_deleted.{chat_id}"


def telegram_delivery_failed(chat_id: int) -> str:
    return f"effect.telegram.delivery_failed.{chat_id}"


# Filters consumers subscribe with.
ALL_TELEGRAM_MESSAGES = "telegram.message.received.*"
# Messages, edits and reactions together, in stream order.
ALL_TELEGRAM_MESSAGE_ACTIVITY = "telegram.message.>"
ALL_BIND_REQUESTS = "telegram.bind.requested.*"
ALL_PLANFIX_COMMENT_WEBHOOKS = "planfix.webhook.comment.*"
ALL_PLANFIX_COMMENTS = "planfix.comment.added.*"
ALL_PLANFIX_COMMENT_CHANGES = "planfix.comment.*.*"
ALL_TELEGRAM_GROUP_EVENTS = "telegram.group.*.*"
ALL_OTHER_BOTS_COMMANDED = "telegram.other_bot.commanded.*"
ALL_BINDING_EVENTS = "binding.>"
ALL_EFFECTS = "effect.>"
ALL_DEAD_LETTERS = "deadletter.>"


# Key-value buckets (besides TELEGRAM_PACE_BUCKET above).
# File storage for pacing: a restarted NATS must not hand out a burst of slots already used.
PLANFIX_PACING_BUCKET = BucketSpec(
    name="PLANFIX_PACING", description="Next free Planfix request slot per account"
)
LEASES_BUCKET = BucketSpec(name="LEASES", description="Leases of single-active work")

# Not a stream's: a NATS request the binder answers (``RebuildBindingStore`` -> ``BindingStoreRebuilt``).
BINDER_REBUILD_STORE = "ops.binder.rebuild_store"
