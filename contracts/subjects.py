"""Subjects and JetStream streams: the one place that names them.

Subject scheme: ``<area>.<noun>.<fact>.<routing key>`` where the routing key is the Telegram
chat id (for things that happen in or go to a group) or the Planfix task number (for things
that happen in a task). Consumers filter with ``>``/``*`` on the leading tokens; the key comes
last so that a later partition mapping (``{{partition(N, <key position>)}}``) can keep per-group
order while groups run in parallel.

The subjects, their streams, events and publishers are declared once, in ``CATALOGUE`` below;
the table a reader wants is generated from it (``subject_table()``, printed into
``docs/architecture.md`` and ``docs/asyncapi/bridge.yaml``; tests fail when either is stale).
Publishers name no subject: ``subject_for(event)`` routes an event by its type.

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
* Planfix webhook notices: one batch consumer held by one gateway replica at a time (lease
  ``planfix_comment_fetcher``); a batch's new comments cost one read-back per task, and the
  account's request limit leaves nothing for parallel readers to gain.
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

Streams are on file storage, each with a byte cap (``max_bytes``) besides its age limit. A full
stream refuses new messages rather than dropping old ones (discard policy ``new``): a publisher
sees the refusal ("maximum bytes exceeded"), logs ``stream_full`` and retries, and what it was
carrying waits where it came from (unacknowledged, or unanswered to Telegram or Planfix), so
nothing is silently discarded; nats-server reserves each cap's bytes on its disk when the stream
is created. Each stream has a duplicate window: a publish whose ``Nats-Msg-Id``
was seen within the window is acknowledged as a duplicate and not stored. Inbound streams keep
24 h of ids because Telegram redelivers unconfirmed updates for up to 24 h and Planfix retries a
failed webhook for up to about 2 h 45 min. The BINDING stream keeps every event forever: it is
the source of truth that services (and ``bridge binder rebuild``) replay to learn bindings.
The DEADLETTER stream keeps a dead letter 30 days.

Dead letters: when a consumer gives up on a message (undecodable, a permanent failure, or its
last allowed delivery failed), ``bridge_lib.eventbus.consume`` stores a ``MessageDeadLettered``
event (the original subject, headers and body, the reason, the consumer and the delivery count)
on ``deadletter.<consumer>`` before it terminates the message. The DEADLETTER stream keeps them
30 days, or until an operator retries (``bridge dlq retry``) or drops (``bridge dlq drop``) them. The
Telegram gateway stores an update from ``getUpdates`` (or posted to its webhook) that aiogram
cannot decode the same way, on ``deadletter.telegram_gateway`` (stream ``telegram-bot-api``,
sequence = the update id); it cannot be retried, only read and dropped. The relay stores a message
Telegram refused for good (it stays in the relay's outbox) as one too, on
``deadletter.relay-telegram-outbox`` (stream ``telegram-outbox``, sequence = its place in the
outbox), naming the group, the reason and the first words; ``bridge dlq retry`` asks the relay to
queue it again (``ops.relay.retry_telegram_delivery``).
"""

from __future__ import annotations

from collections.abc import Sequence

import msgspec

from contracts import events as ev
from contracts.events import Event

HOUR = 3600.0
DAY = 24 * HOUR
MIB = 1024 * 1024
GIB = 1024 * MIB


class StreamSpec(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    subjects: list[str]
    description: str
    duplicate_window_s: float
    # 0 means "keep forever".
    max_age_s: float = 0.0
    # The most the stream may hold; when full it refuses new messages (discard policy "new").
    # About 20 MB a day at 1,000 groups with 20 messages and 10 comments each.
    max_bytes: int = 1 * GIB


TELEGRAM_STREAM = StreamSpec(
    name="TELEGRAM",
    subjects=["telegram.>"],
    description="What people did in Telegram groups, as the gateway saw it",
    duplicate_window_s=DAY,
    max_age_s=30 * DAY,
    max_bytes=2 * GIB,
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
    max_bytes=256 * MIB,
)
EFFECTS_STREAM = StreamSpec(
    name="EFFECTS",
    subjects=["effect.>"],
    description="What the bridge wrote to the outside world",
    duplicate_window_s=DAY,
    max_age_s=30 * DAY,
)

PEOPLE_STREAM = StreamSpec(
    name="PEOPLE",
    subjects=["people.>"],
    description="Telegram people linked to Planfix employees and contacts; kept forever",
    duplicate_window_s=DAY,
    max_bytes=256 * MIB,
)

DEADLETTER_STREAM = StreamSpec(
    name="DEADLETTER",
    subjects=["deadletter.>"],
    description="Messages a consumer gave up on, with the reason; kept 30 days, or until retried or dropped",
    duplicate_window_s=DAY,
    max_age_s=30 * DAY,
)

ALL_STREAMS: tuple[StreamSpec, ...] = (
    TELEGRAM_STREAM,
    PLANFIX_STREAM,
    BINDING_STREAM,
    EFFECTS_STREAM,
    PEOPLE_STREAM,
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


class SubjectSpec(msgspec.Struct, frozen=True, kw_only=True):
    """One subject family: where its events go, who publishes them, and what the key is."""

    # As consumers filter it: the routing key is the last token, "*".
    pattern: str
    stream: str
    events: tuple[type[Event], ...]
    # The event field whose value is the routing key.
    key: str
    published_by: str
    description: str

    @property
    def event_tags(self) -> tuple[str, ...]:
        return tuple(str(event.__struct_config__.tag) for event in self.events)

    def subject(self, key: int | str) -> str:
        return f"{self.pattern[:-1]}{key}"


def _spec(
    pattern: str, stream: StreamSpec, *events: type[Event], key: str, by: str, what: str
) -> SubjectSpec:
    return SubjectSpec(
        pattern=pattern, stream=stream.name, events=events, key=key, published_by=by, description=what
    )


T, P, B, E, D = TELEGRAM_STREAM, PLANFIX_STREAM, BINDING_STREAM, EFFECTS_STREAM, DEADLETTER_STREAM
PEOPLE = PEOPLE_STREAM
GATEWAY, RELAY, BINDER, FETCHER = "telegram_gateway", "relay", "binder", "planfix_gateway"

TELEGRAM_MESSAGE_RECEIVED = _spec(
    "telegram.message.received.*", T, ev.TelegramMessageReceived, key="chat_id", by=GATEWAY,
    what="A message written in a Telegram group; key: chat id",
)  # fmt: skip
TELEGRAM_MESSAGE_EDITED = _spec(
    "telegram.message.edited.*", T, ev.TelegramMessageEdited, key="chat_id", by=GATEWAY,
    what="A group message was edited; key: chat id",
)  # fmt: skip
TELEGRAM_MESSAGE_REACTED = _spec(
    "telegram.message.reacted.*", T, ev.TelegramReactionChanged, key="chat_id", by=GATEWAY,
    what="The reactions on a group message changed; key: chat id",
)  # fmt: skip
TELEGRAM_BIND_REQUESTED = _spec(
    "telegram.bind.requested.*", T, ev.BindRequested, ev.UnbindRequested, ev.UnbindGroup,
    ev.GroupLanguageRequested, key="chat_id",
    by=f"{GATEWAY}; bridge CLI (an operator's unbind)",
    what="/task <title>, /task <number or link>, /unbind or /lang in a group, or an operator's unbind, in "
    "order (one subject, so they are decided in the order written); key: chat id",
)  # fmt: skip
TELEGRAM_GROUP_COMMAND = _spec(
    "telegram.group.command_received.*", T, ev.GroupCommandReceived, key="chat_id", by=GATEWAY,
    what="/status or /help in a group; key: chat id",
)  # fmt: skip
TELEGRAM_ANONYMOUS_ADMIN_POSTED = _spec(
    "telegram.group.anonymous_admin_posted.*", T, ev.AnonymousAdminPosted, key="chat_id", by=GATEWAY,
    what="A message sent anonymously as the group (not carried); key: chat id",
)  # fmt: skip
TELEGRAM_BOT_MEMBERSHIP_CHANGED = _spec(
    "telegram.group.bot_membership_changed.*", T, ev.BotMembershipChanged, key="chat_id", by=GATEWAY,
    what="The bot was added to or removed from a group; key: chat id",
)  # fmt: skip
TELEGRAM_GROUP_MIGRATED = _spec(
    "telegram.group.migrated.*", T, ev.ChatMigrated, key="chat_id", by=f"{GATEWAY}, {RELAY}",
    what="A group became a supergroup with a new chat id; key: the new chat id",
)  # fmt: skip
TELEGRAM_OTHER_BOT_COMMANDED = _spec(
    "telegram.other_bot.commanded.*", T, ev.OtherBotCommanded, key="chat_id", by=GATEWAY,
    what="/task@<another bot> was written in a group: that bot answers /task too; key: chat id",
)  # fmt: skip
TELEGRAM_TASK_COMMAND_REQUESTED = _spec(
    "telegram.task.command_requested.*", T, ev.TaskCommandRequested, key="chat_id", by=GATEWAY,
    what="/done, /deadline <date> or /assign @user in a bound group; key: chat id",
)  # fmt: skip
PLANFIX_COMMENT_WEBHOOK = _spec(
    "planfix.webhook.comment.*", P, ev.PlanfixCommentWebhookReceived, key="task_number", by=FETCHER,
    what="Planfix's scenario said a comment was added (ids only); key: task number",
)  # fmt: skip
PLANFIX_COMMENT_ADDED = _spec(
    "planfix.comment.added.*", P, ev.PlanfixCommentAdded, key="task_number", by=FETCHER,
    what="A Planfix comment with its content, fetched through the REST API; key: task number",
)  # fmt: skip
PLANFIX_COMMENT_UPDATED = _spec(
    "planfix.comment.updated.*", P, ev.PlanfixCommentUpdated, key="task_number", by=FETCHER,
    what="A Planfix comment was changed, with its new content (after a scenario's notice, or noticed "
    "by the paced re-read of the task); key: task number",
)  # fmt: skip
PLANFIX_COMMENT_DELETED = _spec(
    "planfix.comment.deleted.*", P, ev.PlanfixCommentDeleted, key="task_number", by=FETCHER,
    what="A Planfix comment was deleted (checked; after a scenario's notice, or noticed by the paced "
    "re-read of the task); key: task number",
)  # fmt: skip
PLANFIX_TASK_WEBHOOK = _spec(
    "planfix.webhook.task.*", P, ev.PlanfixTaskWebhookReceived, key="task_number", by=FETCHER,
    what="Planfix's scenario said a task changed (its number only); key: task number",
)  # fmt: skip
PLANFIX_TASK_CHANGED = _spec(
    "planfix.task.changed.*", P, ev.PlanfixTaskStateChanged, key="task_number", by=FETCHER,
    what="A task's state (status, assigner, assignees, deadline) as read after a notice or a bind, "
    "when it differs from the last one stored here (the last event is the last known state); "
    "key: task number",
)  # fmt: skip
BINDING_BOUND = _spec(
    "binding.bound.*", B, ev.TaskBound, key="chat_id", by=BINDER,
    what="A group was bound to a task; key: chat id",
)  # fmt: skip
BINDING_REJECTED = _spec(
    "binding.rejected.*", B, ev.BindRejected, key="chat_id", by=BINDER,
    what="A bind request was refused; key: chat id",
)  # fmt: skip
BINDING_UNBOUND = _spec(
    "binding.unbound.*", B, ev.TaskUnbound, key="chat_id", by=BINDER,
    what="A group's binding was removed (/unbind, or an operator's command); key: chat id",
)  # fmt: skip
BINDING_UNBIND_REJECTED = _spec(
    "binding.unbind_rejected.*", B, ev.UnbindRejected, key="chat_id", by=BINDER,
    what="An /unbind was refused; key: chat id",
)  # fmt: skip
BINDING_SUSPENDED = _spec(
    "binding.suspended.*", B, ev.BindingSuspended, key="chat_id", by=BINDER,
    what="The bot left the group: its binding waits; key: chat id",
)  # fmt: skip
BINDING_RESUMED = _spec(
    "binding.resumed.*", B, ev.BindingResumed, key="chat_id", by=BINDER,
    what="The bot is back: the binding carries again; key: chat id",
)  # fmt: skip
BINDING_MOVED = _spec(
    "binding.moved.*", B, ev.BindingMoved, key="chat_id", by=BINDER,
    what="The binding followed the group to its new chat id; key: the new chat id",
)  # fmt: skip
BINDING_TASK_COMMAND_ANSWERED = _spec(
    "binding.task_command_answered.*", B, ev.TaskCommandAnswered, key="chat_id", by=BINDER,
    what="What came of /done, /deadline or /assign: done, or refused with why; key: chat id",
)  # fmt: skip
BINDING_LANGUAGE_CHOSEN = _spec(
    "binding.language_chosen.*", B, ev.GroupLanguageChosen, key="chat_id", by=BINDER,
    what="A group chose the language the bridge speaks there (/lang); key: chat id",
)  # fmt: skip
BINDING_LANGUAGE_REJECTED = _spec(
    "binding.language_rejected.*", B, ev.GroupLanguageRejected, key="chat_id", by=BINDER,
    what="A /lang was refused; key: chat id",
)  # fmt: skip
EFFECT_PLANFIX_COMMENT_POSTED = _spec(
    "effect.planfix.comment_posted.*", E, ev.PlanfixCommentPosted, key="task_number", by=RELAY,
    what="The relay wrote a comment into a Planfix task; key: task number",
)  # fmt: skip
EFFECT_PLANFIX_COMMENT_REWRITTEN = _spec(
    "effect.planfix.comment_rewritten.*", E, ev.PlanfixCommentRewritten, key="task_number", by=RELAY,
    what="The relay rewrote one of its comments (an edit or reactions); key: task number",
)  # fmt: skip
EFFECT_TELEGRAM_MESSAGE_SENT = _spec(
    "effect.telegram.message_sent.*", E, ev.TelegramMessageSent, key="chat_id", by=RELAY,
    what="The relay sent a message into a Telegram group; key: chat id",
)  # fmt: skip
EFFECT_TELEGRAM_MESSAGES_EDITED = _spec(
    "effect.telegram.messages_edited.*", E, ev.TelegramMessagesEdited, key="chat_id", by=RELAY,
    what="The relay edited its messages for an edited comment; key: chat id",
)  # fmt: skip
EFFECT_TELEGRAM_MESSAGES_DELETED = _spec(
    "effect.telegram.messages_deleted.*", E, ev.TelegramMessagesDeleted, key="chat_id", by=RELAY,
    what="The relay deleted its messages for a deleted comment; key: chat id",
)  # fmt: skip
EFFECT_TELEGRAM_DELIVERY_FAILED = _spec(
    "effect.telegram.delivery_failed.*", E, ev.TelegramDeliveryFailed, key="chat_id", by=RELAY,
    what="Telegram refused a message for good; it is kept in the outbox; key: chat id",
)  # fmt: skip
PERSON_LINKED = _spec(
    "people.linked.*", PEOPLE, ev.PersonLinked, key="telegram_user_id", by=BINDER,
    what="A Telegram person acts as a Planfix employee or contact from now on; key: Telegram user id",
)  # fmt: skip
PERSON_UNLINKED = _spec(
    "people.unlinked.*", PEOPLE, ev.PersonUnlinked, key="telegram_user_id", by=BINDER,
    what="A Telegram person no longer acts as that Planfix person; key: Telegram user id",
)  # fmt: skip
PERSON_LINK_REFUSED = _spec(
    "people.link_refused.*", PEOPLE, ev.PersonLinkRefused, key="telegram_user_id", by=BINDER,
    what="A /link code written in Planfix linked nobody (the person is told why); key: Telegram user id",
)  # fmt: skip
DEAD_LETTERED = _spec(
    "deadletter.*", D, ev.MessageDeadLettered, key="consumer", by="every consumer (bridge_lib.eventbus)",
    what="A message a consumer gave up on, with the reason; key: durable consumer name "
    "(``telegram_gateway``: updates from getUpdates that do not decode)",
)  # fmt: skip

CATALOGUE: tuple[SubjectSpec, ...] = tuple(
    value for value in list(globals().values()) if isinstance(value, SubjectSpec)
)
_SPEC_BY_EVENT: dict[type[Event], SubjectSpec] = {event: spec for spec in CATALOGUE for event in spec.events}


def spec_for(event_type: type[Event]) -> SubjectSpec:
    try:
        return _SPEC_BY_EVENT[event_type]
    except KeyError:
        raise LookupError(f"{event_type.__name__} has no subject in the catalogue") from None


def subject_for(event: Event) -> str:
    """The subject ``event`` is published on: its family's, with its routing key."""
    spec = spec_for(type(event))
    return spec.subject(getattr(event, spec.key))


# Subjects by routing key, for readers (e.g. the last migration of a chat).
telegram_message_received = TELEGRAM_MESSAGE_RECEIVED.subject
telegram_message_edited = TELEGRAM_MESSAGE_EDITED.subject
telegram_message_reacted = TELEGRAM_MESSAGE_REACTED.subject
telegram_bind_requested = TELEGRAM_BIND_REQUESTED.subject
telegram_group_command = TELEGRAM_GROUP_COMMAND.subject
telegram_anonymous_admin_posted = TELEGRAM_ANONYMOUS_ADMIN_POSTED.subject
telegram_bot_membership_changed = TELEGRAM_BOT_MEMBERSHIP_CHANGED.subject
telegram_group_migrated = TELEGRAM_GROUP_MIGRATED.subject
telegram_other_bot_commanded = TELEGRAM_OTHER_BOT_COMMANDED.subject
planfix_comment_webhook = PLANFIX_COMMENT_WEBHOOK.subject
planfix_task_webhook = PLANFIX_TASK_WEBHOOK.subject
planfix_task_changed = PLANFIX_TASK_CHANGED.subject
telegram_task_command_requested = TELEGRAM_TASK_COMMAND_REQUESTED.subject
binding_task_command_answered = BINDING_TASK_COMMAND_ANSWERED.subject
planfix_comment_added = PLANFIX_COMMENT_ADDED.subject
planfix_comment_updated = PLANFIX_COMMENT_UPDATED.subject
planfix_comment_deleted = PLANFIX_COMMENT_DELETED.subject
binding_bound = BINDING_BOUND.subject
binding_rejected = BINDING_REJECTED.subject
binding_unbound = BINDING_UNBOUND.subject
binding_unbind_rejected = BINDING_UNBIND_REJECTED.subject
binding_suspended = BINDING_SUSPENDED.subject
binding_resumed = BINDING_RESUMED.subject
binding_moved = BINDING_MOVED.subject
binding_language_chosen = BINDING_LANGUAGE_CHOSEN.subject
binding_language_rejected = BINDING_LANGUAGE_REJECTED.subject
planfix_comment_posted = EFFECT_PLANFIX_COMMENT_POSTED.subject
planfix_comment_rewritten = EFFECT_PLANFIX_COMMENT_REWRITTEN.subject
telegram_message_sent = EFFECT_TELEGRAM_MESSAGE_SENT.subject
telegram_messages_edited = EFFECT_TELEGRAM_MESSAGES_EDITED.subject
telegram_messages_deleted = EFFECT_TELEGRAM_MESSAGES_DELETED.subject
telegram_delivery_failed = EFFECT_TELEGRAM_DELIVERY_FAILED.subject
dead_letter = DEAD_LETTERED.subject

# Filters consumers subscribe with.
ALL_TELEGRAM_MESSAGES = TELEGRAM_MESSAGE_RECEIVED.pattern
# Messages, edits and reactions together, in stream order: an edit never overtakes its message.
ALL_TELEGRAM_MESSAGE_ACTIVITY = "telegram.message.>"
ALL_BIND_REQUESTS = TELEGRAM_BIND_REQUESTED.pattern
ALL_PLANFIX_COMMENT_WEBHOOKS = PLANFIX_COMMENT_WEBHOOK.pattern
ALL_PLANFIX_COMMENTS = PLANFIX_COMMENT_ADDED.pattern
# Added, updated and deleted comments of a task in one order.
ALL_PLANFIX_COMMENT_CHANGES = "planfix.comment.*.*"
ALL_TELEGRAM_GROUP_EVENTS = "telegram.group.*.*"
ALL_OTHER_BOTS_COMMANDED = TELEGRAM_OTHER_BOT_COMMANDED.pattern
ALL_BINDING_EVENTS = "binding.>"
ALL_EFFECTS = "effect.>"
ALL_DEAD_LETTERS = "deadletter.>"
ALL_PLANFIX_TASK_WEBHOOKS = PLANFIX_TASK_WEBHOOK.pattern
ALL_PLANFIX_TASK_CHANGES = PLANFIX_TASK_CHANGED.pattern
ALL_TASK_COMMANDS = TELEGRAM_TASK_COMMAND_REQUESTED.pattern
ALL_BINDING_BOUND = BINDING_BOUND.pattern
ALL_PEOPLE_EVENTS = "people.>"


class ConsumerSpec(msgspec.Struct, frozen=True, kw_only=True):
    """A durable consumer: declared here, created by its service at start, read by the CLI
    (``doctor``, ``trace``, ``events replay --into``) and by health checks."""

    durable: str
    stream: str
    filter_subject: str
    service: str
    description: str
    # Longer than the slowest call a handler makes (Planfix timeout x retries): no redelivery
    # while a slow call is still under way.
    ack_wait_s: float = 60.0
    # No last delivery: an outage is waited out however long it lasts, and a message that keeps
    # crashing its handler is set aside by ``bridge_lib.eventbus`` (CRASH_LIMIT), not by JetStream.
    max_deliver: int = -1
    # Messages handed out before the first is acknowledged. 1 keeps the stream's order, also
    # across replicas and a replica's death; more, for a reader to whom order means nothing,
    # spares a round trip per message (or is one batch, when ``batched``).
    in_flight: int = 1
    # Read in batches of up to ``in_flight`` (``bridge_lib.ordered_batches``), not by a FastStream
    # subscriber; when ``ordered``, in order, by one replica at a time (a lease), rewound on
    # taking over.
    batched: bool = False
    ordered: bool = True


def _consumer(
    durable: str,
    stream: StreamSpec,
    filter_subject: str,
    service: str,
    what: str,
    in_flight: int = 1,
    *,
    batched: bool = False,
    ordered: bool = True,
) -> ConsumerSpec:
    return ConsumerSpec(
        durable=durable,
        stream=stream.name,
        filter_subject=filter_subject,
        service=service,
        description=what,
        in_flight=in_flight,
        batched=batched,
        ordered=ordered,
    )


FETCHER_COMMENT_WEBHOOKS = _consumer(
    "planfix_gateway-comment-fetcher", P, ALL_PLANFIX_COMMENT_WEBHOOKS, FETCHER,
    "fetches the comments webhooks named and stores them with their content, in batches "
    "(one read-back per task; one active replica)",
    in_flight=100, batched=True,
)  # fmt: skip
BINDER_BIND_REQUESTS = _consumer(
    "binder-bind-requests", T, ALL_BIND_REQUESTS, BINDER,
    "decides /task, /unbind and /lang",
)  # fmt: skip
BINDER_GROUP_CHANGES = _consumer(
    "binder-group-changes", T, ALL_TELEGRAM_GROUP_EVENTS, BINDER,
    "suspends, resumes and moves bindings as the bot leaves, rejoins or the group migrates",
)  # fmt: skip
RELAY_TELEGRAM_INBOUND = _consumer(
    "relay-telegram-inbound", T, ALL_TELEGRAM_MESSAGE_ACTIVITY, RELAY,
    "carries group messages, edits and reactions to Planfix, in batches (one active replica)",
    in_flight=1000, batched=True,
)  # fmt: skip
RELAY_PLANFIX_COMMENT_CHANGES = _consumer(
    "relay-planfix-comment-changes", P, ALL_PLANFIX_COMMENT_CHANGES, RELAY,
    "queues added, edited and deleted comments for their groups, in batches (one active replica)",
    in_flight=100, batched=True,
)  # fmt: skip
RELAY_BINDING_NOTICES = _consumer(
    "relay-binding-notices", B, ALL_BINDING_EVENTS, RELAY,
    "tells groups what the binder decided",
)  # fmt: skip
BINDER_LINK_CODES = _consumer(
    "binder-link-codes", P, ALL_PLANFIX_COMMENTS, BINDER,
    "links a Telegram user to the Planfix employee who wrote their /link code as a comment",
    # Codes are independent of each other, and almost no comment holds one: read in batches by
    # every replica, the others acknowledged unread.
    in_flight=100, batched=True, ordered=False,
)  # fmt: skip
RELAY_PEOPLE_NOTICES = _consumer(
    "relay-people-notices", PEOPLE, ALL_PEOPLE_EVENTS, RELAY,
    "tells a person in private that their /link code linked them, or why not",
)  # fmt: skip
RELAY_GROUP_EVENTS = _consumer(
    "relay-group-events", T, ALL_TELEGRAM_GROUP_EVENTS, RELAY,
    "answers /status and /help, greets, guides anonymous admins",
)  # fmt: skip
FETCHER_TASK_WEBHOOKS = _consumer(
    "planfix_gateway-task-fetcher", P, ALL_PLANFIX_TASK_WEBHOOKS, FETCHER,
    "reads each task a scenario named and stores its state when it changed",
)  # fmt: skip
FETCHER_TASK_BOUND = _consumer(
    "planfix_gateway-task-on-bind", B, ALL_BINDING_BOUND, FETCHER,
    "reads a task when a group is bound to it, so its card and later changes have a state to start from",
)  # fmt: skip
RELAY_TASK_CHANGES = _consumer(
    "relay-task-changes", P, ALL_PLANFIX_TASK_CHANGES, RELAY,
    "announces a task's changes in its groups and keeps their task cards current",
)  # fmt: skip
BINDER_TASK_COMMANDS = _consumer(
    "binder-task-commands", T, ALL_TASK_COMMANDS, BINDER,
    "decides and makes /done, /deadline and /assign in Planfix",
)  # fmt: skip
BINDER_CLOSED_TASKS = _consumer(
    "binder-closed-tasks", P, ALL_PLANFIX_TASK_CHANGES, BINDER,
    "unbinds the groups of a task closed in Planfix (only with BINDER_UNBIND_CLOSED_TASKS=true)",
)  # fmt: skip

CONSUMERS: tuple[ConsumerSpec, ...] = tuple(
    value for value in list(globals().values()) if isinstance(value, ConsumerSpec)
)


def consumer_named(durable: str) -> ConsumerSpec | None:
    return next((consumer for consumer in CONSUMERS if consumer.durable == durable), None)


def consumer_table() -> str:
    """The durable consumers as a reader's table (rendered into docs/architecture.md)."""
    header = ("durable consumer", "stream", "reads", "service")
    rows = [(c.durable, c.stream, c.filter_subject, c.service) for c in CONSUMERS]
    return _table(header, rows)


def subject_table() -> str:
    """The catalogue as a reader's table (rendered into docs/architecture.md)."""
    rows = [(spec.subject(f"<{spec.key}>"), spec.stream, spec.published_by) for spec in CATALOGUE]
    return _table(("subject", "stream", "published by"), rows)


def _table(header: tuple[str, ...], rows: Sequence[tuple[str, ...]]) -> str:
    widths = [max(len(row[i]) for row in [*rows, header]) for i in range(len(header))]

    def line(cells: tuple[str, ...]) -> str:
        return "| " + " | ".join(cell.ljust(width) for cell, width in zip(cells, widths, strict=True)) + " |"

    rule = "|" + "|".join("-" * (width + 2) for width in widths) + "|"
    return "\n".join([line(header), rule, *(line(row) for row in rows)])


# Key-value buckets (besides TELEGRAM_PACE_BUCKET above).
# File storage for pacing: a restarted NATS must not hand out a burst of slots already used.
PLANFIX_PACING_BUCKET = BucketSpec(
    name="PLANFIX_PACING", description="Next free Planfix request slot per account"
)
LEASES_BUCKET = BucketSpec(name="LEASES", description="Leases of single-active work")
PLANFIX_COMMENT_MARKS_BUCKET = BucketSpec(
    name="PLANFIX_COMMENT_MARKS",
    description="Per bound task, the Planfix comment id up to which reconciliation has checked",
)

# Not a stream's: a NATS request the binder answers (``RebuildBindingStore`` -> ``BindingStoreRebuilt``).
BINDER_REBUILD_STORE = "ops.binder.rebuild_store"
# Not a stream's: a NATS request the binder answers (``AnswerPrivateCommand`` ->
# ``PrivateCommandAnswered``): a /link answer holds a code, which no stream may keep.
BINDER_PRIVATE_COMMAND = "ops.binder.private_command"
# Not a stream's: may the bot stay in a group it was added to (``AdmitGroup`` ->
# ``GroupAdmissionDecided``; only with TELEGRAM_LEAVE_UNKNOWN_GROUPS=true).
BINDER_ADMIT_GROUP = "ops.binder.admit_group"
# Not a stream's: ``bridge bindings audit`` (``AuditBindings`` -> ``BindingsAudited``).
BINDER_AUDIT_BINDINGS = "ops.binder.audit_bindings"
# Not a stream's: a NATS request a relay replica answers (``RetryTelegramDelivery`` ->
# ``TelegramDeliveryRetried``): a message Telegram refused for good goes back into its group's queue.
RELAY_RETRY_TELEGRAM_DELIVERY = "ops.relay.retry_telegram_delivery"
# Not a stream's: a relay replica wakes the one sending to a group (nothing answers).
RELAY_OUTBOX_NUDGE = "relay.outbox.nudge"


class RequestSpec(msgspec.Struct, frozen=True, kw_only=True):
    """A core NATS subject, never stored: who listens (answers), which services send on it (the
    operator's CLI may send on any). NATS permissions (tools/nats_auth.py) are made from these."""

    subject: str
    answered_by: str
    asked_by: tuple[str, ...] = ()
    description: str = ""


REQUESTS: tuple[RequestSpec, ...] = (
    RequestSpec(subject=BINDER_REBUILD_STORE, answered_by=BINDER, description="bridge binder rebuild"),
    RequestSpec(subject=BINDER_AUDIT_BINDINGS, answered_by=BINDER, description="bridge bindings audit"),
    RequestSpec(
        subject=BINDER_PRIVATE_COMMAND, answered_by=BINDER, asked_by=(GATEWAY,),
        description="/link, /unlink, /whoami in a private chat",
    ),
    RequestSpec(
        subject=BINDER_ADMIT_GROUP, answered_by=BINDER, asked_by=(GATEWAY,),
        description="may the bot stay in a group (TELEGRAM_LEAVE_UNKNOWN_GROUPS)",
    ),
    RequestSpec(
        subject=RELAY_RETRY_TELEGRAM_DELIVERY, answered_by=RELAY,
        description="bridge dlq retry of a send Telegram refused",
    ),
    RequestSpec(
        subject=RELAY_OUTBOX_NUDGE, answered_by=RELAY, asked_by=(RELAY,),
        description="a replica wakes the group's sender",
    ),
)  # fmt: skip
