"""The events every service shares: immutable, tagged, versioned msgspec Structs.

Rules (see ``contracts/__init__.py`` for subjects and streams):

* Each event is a past-tense fact with an explicit, stable tag ``<area>.<fact>.v<N>``; the
  tag, not the class name, is the wire format, so renaming a class changes nothing on the wire.
* Every event carries ``event_id``, ``occurred_at``, ``correlation_id`` and ``causation_id``.
  ``event_id`` is derived from the event's *source key* (``uuid5``), so an event rebuilt
  from the same source (a redelivered Telegram update, a re-posted webhook, a redelivered
  causing event) has the same id and the same ``Nats-Msg-Id``: JetStream drops the repeat.
* Evolution is additive: a new field gets a default and goes at the end; a breaking change is
  a new tag (``...v2``), never an edit of an existing one. No ``forbid_unknown_fields``, so an
  older consumer skips fields it does not know.
"""

from __future__ import annotations

import enum
import uuid
from datetime import UTC, datetime
from typing import TypedDict

import msgspec

# Namespace for event ids derived from source keys; never change it (ids would change).
_EVENT_ID_NAMESPACE = uuid.UUID("5b0f6c1e-3f0a-4b8e-9d2a-7c1f4e6a9b21")


def event_id_for(source_key: str) -> str:
    """The event id for a source key: the same key always gives the same id."""
    return str(uuid.uuid5(_EVENT_ID_NAMESPACE, source_key))


# Namespace of the ``sourceObjectId`` the bridge writes on each Planfix comment; never change it
# (a comment posted before would no longer be found after a crash).
_PLANFIX_SOURCE_OBJECT_NAMESPACE = uuid.UUID("8d5c2b7e-61a4-4f3e-b0c9-2e7a94d1c35f")


def planfix_source_object_id(source_key: str) -> str:
    """The ``sourceObjectId`` for a comment made from ``source_key`` (Planfix types it as a
    UUID): a retry of the same message carries the same id."""
    return str(uuid.uuid5(_PLANFIX_SOURCE_OBJECT_NAMESPACE, source_key))


def utc_now() -> datetime:
    return datetime.now(UTC)


class Event(msgspec.Struct, frozen=True, kw_only=True, tag_field="type"):
    """Fields every event carries."""

    event_id: str
    occurred_at: datetime
    # The id of the first event of the chain (e.g. the Telegram message that started it all).
    correlation_id: str
    # The id (or, for a root event, the source key) of what directly caused this event.
    causation_id: str

    @property
    def tag(self) -> str:
        return str(type(self).__struct_config__.tag)


class TelegramUser(msgspec.Struct, frozen=True, kw_only=True):
    id: int
    full_name: str
    username: str | None = None
    is_bot: bool = False
    # Posted as a chat (a group's linked channel, or a channel itself), not by a person.
    is_channel: bool = False
    # Telegram's IETF language tag of the person ("ru", "en-GB"); carried on commands only (the
    # first bind of a group speaks the binder's language until /lang chooses one).
    language_code: str | None = None

    @property
    def display(self) -> str:
        """ "Ivan Petrov (@ivan)", or just the name when there is no username."""
        return f"{self.full_name} (@{self.username})" if self.username else self.full_name


class PlanfixPerson(msgspec.Struct, frozen=True, kw_only=True):
    # Planfix person ids are prefixed strings: "user:5", "contact:10".
    id: str | None = None
    name: str = ""


class PlanfixFile(msgspec.Struct, frozen=True, kw_only=True):
    """A file attached to a Planfix comment: enough to decide how to send it and to fetch it."""

    id: int
    name: str = ""
    # Bytes; None when Planfix did not say (the relay then asks for it before downloading).
    size: int | None = None


# --- Telegram side -------------------------------------------------------------------------


class TelegramEntity(msgspec.Struct, frozen=True, kw_only=True):
    """A formatting entity; ``offset``/``length`` count UTF-16 code units, as Telegram does."""

    type: str
    offset: int
    length: int
    url: str | None = None
    language: str | None = None
    user_id: int | None = None


class TelegramAttachment(msgspec.Struct, frozen=True, kw_only=True):
    """A file of a message, by its Bot API ``file_id`` (downloaded later, through ``getFile``)."""

    kind: str  # photo, document, voice, audio, video, video_note, sticker, animation
    file_id: str
    file_unique_id: str
    file_name: str | None = None
    mime_type: str | None = None
    # As Telegram reported it; None when it did not say.
    file_size: int | None = None
    # Stickers: the emoji and the set; "animated"/"video" stickers are not images.
    emoji: str | None = None
    set_name: str | None = None
    is_image: bool = True


class TelegramQuote(msgspec.Struct, frozen=True, kw_only=True):
    """The message a reply answers: who wrote it and its first line."""

    message_id: int
    author: str
    first_line: str
    # The answered message is this bot's own (e.g. a Planfix comment it carried): the relay then
    # quotes the comment's author and first line instead of the bot's message.
    by_this_bot: bool = False
    # Where the quoted thing can be opened (set by the relay for a Planfix comment).
    url: str | None = None


class TelegramLocation(msgspec.Struct, frozen=True, kw_only=True):
    latitude: float
    longitude: float
    title: str | None = None
    address: str | None = None


class TelegramContact(msgspec.Struct, frozen=True, kw_only=True):
    full_name: str
    phone_number: str
    user_id: int | None = None


class TelegramPoll(msgspec.Struct, frozen=True, kw_only=True):
    question: str
    options: list[str]
    is_quiz: bool = False


class TelegramMessageReceived(Event, frozen=True, kw_only=True, tag="telegram.message_received.v1"):
    """A text message was written in a Telegram group the bot is in."""

    chat_id: int
    message_id: int
    sender: TelegramUser
    text: str
    sent_at: datetime
    chat_title: str | None = None
    thread_id: int | None = None
    update_id: int | None = None
    # Everything below describes more than plain text; all of it arrived after v1's first cut.
    # "text" is the text or the caption; ``entities`` format it.
    entities: list[TelegramEntity] = []
    attachments: list[TelegramAttachment] = []
    # Telegram's content type: text, photo, document, sticker, location, poll...
    content_type: str = "text"
    # Parts of one album share it.
    media_group_id: str | None = None
    reply_to: TelegramQuote | None = None
    # "Anna Ivanova (@anna)", "channel News", "hidden user Bob": whose message was forwarded.
    forwarded_from: str | None = None
    location: TelegramLocation | None = None
    contact: TelegramContact | None = None
    poll: TelegramPoll | None = None

    @property
    def source_key(self) -> str:
        return telegram_message_key(self.chat_id, self.message_id)


class TelegramMessageEdited(Event, frozen=True, kw_only=True, tag="telegram.message_edited.v1"):
    """Someone edited a group message: its new text (or caption) and formatting."""

    chat_id: int
    message_id: int
    sender: TelegramUser
    text: str
    edited_at: datetime
    entities: list[TelegramEntity] = []
    thread_id: int | None = None
    update_id: int | None = None
    # The message's files after the edit: an edit may swap the photo or document (empty for text).
    attachments: list[TelegramAttachment] = []

    @property
    def message_key(self) -> str:
        return telegram_message_key(self.chat_id, self.message_id)


class TelegramReaction(msgspec.Struct, frozen=True, kw_only=True):
    """One reaction: an emoji, or a custom emoji / paid star shown by a stand-in."""

    emoji: str


class TelegramReactionChanged(Event, frozen=True, kw_only=True, tag="telegram.reaction_changed.v1"):
    """Someone's reactions to a message changed; ``reactions`` is their whole current set."""

    chat_id: int
    message_id: int
    actor: TelegramUser
    reactions: list[TelegramReaction]
    changed_at: datetime
    update_id: int | None = None

    @property
    def message_key(self) -> str:
        return telegram_message_key(self.chat_id, self.message_id)


class BindRequested(Event, frozen=True, kw_only=True, tag="binding.bind_requested.v1"):
    """Someone wrote ``/task <title>`` (create a task), ``/task <number>`` or ``/task <link>``
    (bind an existing one)."""

    chat_id: int
    message_id: int
    requested_by: TelegramUser
    task_number: int | None = None
    task_title: str | None = None
    chat_title: str | None = None
    thread_id: int | None = None
    # What getChatMember said when the command arrived: True for the group's creator and
    # administrators, None when Telegram could not be asked. The binder decides what it means.
    requester_is_admin: bool | None = None
    # ``/task <link>``: the link as written (neither number nor title is set); the binder binds
    # the task it names when it is a task of the bridge's Planfix account, and refuses otherwise.
    task_link: str | None = None


class UnbindRequested(Event, frozen=True, kw_only=True, tag="binding.unbind_requested.v1"):
    """Someone wrote ``/unbind``: the group (or forum topic) should stop talking to its task."""

    chat_id: int
    message_id: int
    requested_by: TelegramUser
    thread_id: int | None = None
    requester_is_admin: bool | None = None


class GroupLanguageRequested(Event, frozen=True, kw_only=True, tag="binding.language_requested.v1"):
    """Someone wrote ``/lang <language>`` in a group: the bridge should speak it there."""

    chat_id: int
    message_id: int
    requested_by: TelegramUser
    # As written, lower-cased ("ru", "en", or anything else: the binder refuses what it lacks).
    language: str
    thread_id: int | None = None
    requester_is_admin: bool | None = None


class GroupCommand(enum.StrEnum):
    STATUS = "status"
    HELP = "help"
    # /link (or /whoami, /unlink) in a group: the answer is "write to me in private".
    LINK = "link"


class GroupCommandReceived(Event, frozen=True, kw_only=True, tag="telegram.group_command_received.v1"):
    """``/status`` or ``/help`` in a group: a question the relay answers in the group."""

    chat_id: int
    message_id: int
    command: GroupCommand
    requested_by: TelegramUser
    thread_id: int | None = None
    # From getMe at the gateway's start: False means Group Privacy is on (the bot sees only
    # commands), and /status says how to switch it off.
    bot_reads_all_messages: bool = True
    bot_username: str | None = None
    # /status only: other bots of the group that may answer /task too (admin bots, as
    # getChatAdministrators lists them, and bots someone wrote /task@<bot> to; see
    # OtherBotCommanded), by username. Each bound to a task, every message reaches Planfix twice.
    other_bots: list[str] = []


class OtherBotCommanded(Event, frozen=True, kw_only=True, tag="telegram.other_bot_commanded.v1"):
    """Someone wrote ``/task@<another bot>`` in a group: that bot answers ``/task`` too (Planfix's
    own Telegram integration does). Bots never see each other's messages, so this is the one
    trace of it; ``/status`` and ``bridge doctor`` name the bot. The message itself is carried
    as any other (``TelegramMessageReceived``)."""

    chat_id: int
    message_id: int
    bot_username: str
    command: str
    sent_by: TelegramUser | None = None
    thread_id: int | None = None


class AnonymousAdminPosted(Event, frozen=True, kw_only=True, tag="telegram.anonymous_admin_posted.v1"):
    """A message was sent as the group itself (an anonymous admin): it cannot be relayed."""

    chat_id: int
    message_id: int
    thread_id: int | None = None
    # The message was one of this bot's commands ("task", "unbind", "status", "help"): it is
    # answered with what to do, since nobody can be checked or named.
    command: str | None = None


class BotMembershipChanged(Event, frozen=True, kw_only=True, tag="telegram.bot_membership_changed.v1"):
    """The bot was added to a group, or removed or kicked from it (``my_chat_member``)."""

    chat_id: int
    # Telegram's ChatMember status after the change: member, administrator, left, kicked...
    status: str
    is_member: bool
    chat_title: str | None = None
    changed_by: TelegramUser | None = None
    # TELEGRAM_LEAVE_UNKNOWN_GROUPS: the binder did not admit the group; the bot said why and left.
    left_unknown_group: bool = False


class ChatMigrated(Event, frozen=True, kw_only=True, tag="telegram.chat_migrated.v1"):
    """A group became a supergroup and got a new chat id; what was bound to the old id follows."""

    old_chat_id: int
    chat_id: int


class BindingRejectionReason(enum.StrEnum):
    # No new members: msgspec refuses an enum value it does not know ("Invalid enum value"), so an
    # older relay could not read the event. Finer reasons travel in ``BindRejected.refusal``.
    TASK_NOT_FOUND = "task_not_found"
    PLANFIX_REFUSED = "planfix_refused"
    INVALID_REQUEST = "invalid_request"
    NOT_ALLOWED = "not_allowed"
    NOT_BOUND = "not_bound"


class TaskBound(Event, frozen=True, kw_only=True, tag="binding.task_bound.v1"):
    """The binder stored a binding: from now on this group and this task talk to each other."""

    chat_id: int
    task_number: int
    task_title: str
    created_task: bool
    requested_by: TelegramUser
    thread_id: int | None = None
    previous_task_number: int | None = None


class BindRejected(Event, frozen=True, kw_only=True, tag="binding.bind_rejected.v1"):
    """A bind request could not be carried out; nothing was stored."""

    chat_id: int
    reason: BindingRejectionReason
    detail: str
    task_number: int | None = None
    thread_id: int | None = None
    # Why, more precisely, under ``reason`` ``not_allowed`` (the binder's bind policy, issue 15):
    # "not_linked", "not_an_employee", "not_on_the_task", "task_already_bound",
    # "chat_not_allowed". A string, not an enum, so a new value never breaks an older reader;
    # an older relay shows ``detail``, which says the same in plain words.
    refusal: str | None = None


class TaskUnbound(Event, frozen=True, kw_only=True, tag="binding.task_unbound.v1"):
    """A group's binding was removed (``/unbind`` in the group, or an operator's
    ``bridge bindings unbind``); nothing is relayed any more."""

    chat_id: int
    task_number: int
    # Who did it: "telegram:<user id>" for /unbind, e.g. "bridge-cli:alice" for an operator.
    unbound_by: str
    reason: str = ""
    thread_id: int | None = None
    # The person who wrote /unbind (None for an operator).
    requested_by: TelegramUser | None = None


class UnbindRejected(Event, frozen=True, kw_only=True, tag="binding.unbind_rejected.v1"):
    """An ``/unbind`` could not be carried out (not bound, or not allowed); nothing changed."""

    chat_id: int
    reason: BindingRejectionReason
    detail: str
    thread_id: int | None = None


class GroupLanguageChosen(Event, frozen=True, kw_only=True, tag="binding.group_language_chosen.v1"):
    """The bridge speaks ``language`` in this group from now on (bot texts and the comments it
    writes into the group's task)."""

    chat_id: int
    language: str
    chosen_by: TelegramUser | None = None
    # Where /lang was written (the confirmation answers there).
    thread_id: int | None = None


class GroupLanguageRejected(Event, frozen=True, kw_only=True, tag="binding.group_language_rejected.v1"):
    """A ``/lang`` was refused (a language the bridge lacks, or not allowed); nothing changed."""

    chat_id: int
    language: str
    reason: BindingRejectionReason
    detail: str
    thread_id: int | None = None


class BindingSuspended(Event, frozen=True, kw_only=True, tag="binding.binding_suspended.v1"):
    """The bot left the group: the binding is kept but nothing is carried until it comes back."""

    chat_id: int
    task_number: int
    thread_id: int | None = None


class BindingResumed(Event, frozen=True, kw_only=True, tag="binding.binding_resumed.v1"):
    """The bot is back in a group whose binding was suspended: carrying starts again."""

    chat_id: int
    task_number: int
    task_title: str
    thread_id: int | None = None


class BindingMoved(Event, frozen=True, kw_only=True, tag="binding.binding_moved.v1"):
    """The group migrated to a supergroup: its binding now belongs to the new chat id."""

    old_chat_id: int
    chat_id: int
    task_number: int
    task_title: str
    thread_id: int | None = None


# --- Planfix side --------------------------------------------------------------------------


class PlanfixCommentAction(enum.StrEnum):
    """What a Planfix scenario says happened to a comment (the webhook body's ``event``)."""

    ADDED = "comment.added"
    UPDATED = "comment.updated"
    DELETED = "comment.deleted"


class PlanfixCommentWebhookReceived(
    Event, frozen=True, kw_only=True, tag="planfix.comment_webhook_received.v1"
):
    """Planfix's scenario told us a comment was added, changed or deleted; ids only."""

    task_number: int
    comment_id: int
    action: PlanfixCommentAction = PlanfixCommentAction.ADDED


class PlanfixCommentAdded(Event, frozen=True, kw_only=True, tag="planfix.comment_added.v1"):
    """A comment in a Planfix task, with its content as fetched through the REST API."""

    task_number: int
    comment_id: int
    # Planfix comment bodies are HTML.
    text_html: str
    author: PlanfixPerson
    source_id: str | None = None
    source_object_id: str | None = None
    written_at: str | None = None
    is_hidden: bool = False
    files: list[PlanfixFile] = msgspec.field(default_factory=list)


class PlanfixCommentUpdated(Event, frozen=True, kw_only=True, tag="planfix.comment_updated.v1"):
    """A Planfix comment was changed; its content as fetched after the change."""

    task_number: int
    comment_id: int
    text_html: str
    author: PlanfixPerson
    source_id: str | None = None
    source_object_id: str | None = None
    files: list[PlanfixFile] = msgspec.field(default_factory=list)


class PlanfixCommentDeleted(Event, frozen=True, kw_only=True, tag="planfix.comment_deleted.v1"):
    """A Planfix comment was deleted (checked: Planfix no longer shows it)."""

    task_number: int
    comment_id: int


# --- A task's life: its state, changes, and commands about it (issue 18) -------------------


class PlanfixTaskState(msgspec.Struct, frozen=True, kw_only=True):
    """What a group's task card shows, as ``GET /task/{id}`` answered (the fields the bridge asks
    for); compared with the previous state to tell what changed."""

    name: str = ""
    status_id: int | None = None
    status_name: str = ""
    # Planfix's ``isActive`` of the status: False for a final one (completed, cancelled...);
    # None when Planfix did not say.
    status_active: bool | None = None
    process_id: int | None = None
    assigner: PlanfixPerson | None = None
    assignees: list[PlanfixPerson] = msgspec.field(default_factory=list)
    # The deadline (``endDateTime``) as ``YYYY-MM-DD`` or ``YYYY-MM-DD HH:MM``; None: none.
    deadline: str | None = None
    is_deleted: bool = False
    # The task's own files (``files`` of ``GET /task/{id}``), by id: a new one is named in the group.
    files: list[PlanfixFile] = msgspec.field(default_factory=list)


class PlanfixTaskWebhookReceived(Event, frozen=True, kw_only=True, tag="planfix.task_webhook_received.v1"):
    """Planfix's scenario told us a task changed; its number only (the task is fetched later)."""

    task_number: int


class TaskStateSeen(enum.StrEnum):
    """Why the gateway read the task: a scenario's notice, a group was bound to it, or the
    re-read's reconciliation pass found it due (a change no notice announced)."""

    WEBHOOK = "webhook"
    BOUND = "bound"
    RECONCILE = "reconcile"


class PlanfixTaskStateChanged(Event, frozen=True, kw_only=True, tag="planfix.task_state_changed.v1"):
    """A task read through the REST API differs from the last state stored for it (``previous``,
    None for the first read). The last event of ``planfix.task.changed.<task>`` is the task's
    last known state: a repeated notice that finds the same state stores nothing."""

    task_number: int
    state: PlanfixTaskState
    previous: PlanfixTaskState | None = None
    seen_on: TaskStateSeen = TaskStateSeen.WEBHOOK


class TaskCommand(enum.StrEnum):
    DONE = "done"
    DEADLINE = "deadline"
    ASSIGN = "assign"


class TaskCommandRequested(Event, frozen=True, kw_only=True, tag="telegram.task_command_requested.v1"):
    """``/done``, ``/deadline <date>`` or ``/assign @user`` in a group: a change of the bound task
    the binder decides (who may) and makes in Planfix."""

    chat_id: int
    message_id: int
    command: TaskCommand
    requested_by: TelegramUser
    # The rest of the command as written (a date, an @username); "" for /done.
    argument: str = ""
    thread_id: int | None = None
    requester_is_admin: bool | None = None


class TaskCommandAnswered(Event, frozen=True, kw_only=True, tag="binding.task_command_answered.v1"):
    """What came of a task command: done (``outcome`` says what) or refused (``outcome`` says
    why). A string, not an enum, so a new outcome never breaks an older reader."""

    chat_id: int
    message_id: int
    command: TaskCommand
    done: bool
    # done: "completed", "deadline_set", "assigned"; refused: "not_bound", "not_admin",
    # "not_linked", "not_an_employee", "not_on_the_task", "bad_date", "no_completed_status",
    # "unknown_person", "already_done", "planfix_refused", "task_not_found".
    outcome: str
    # What the group is shown beside it: the status's name, the date, the person's name.
    detail: str = ""
    task_number: int | None = None
    thread_id: int | None = None
    # Who asked, as the group knows them (the line says who did it).
    requested_by: str = ""


# --- Effects: what the bridge did in the outside world ---------------------------------------


class PlanfixCommentPosted(Event, frozen=True, kw_only=True, tag="effect.planfix_comment_posted.v1"):
    """The bridge wrote a comment into a Planfix task (a Telegram message carried over)."""

    task_number: int
    comment_id: int
    source_object_id: str
    chat_id: int
    message_id: int
    # A combined comment holds several messages (backlog) or an album's parts; all are listed.
    message_ids: list[int] = []
    file_ids: list[int] = []


class PlanfixCommentRewritten(Event, frozen=True, kw_only=True, tag="effect.planfix_comment_rewritten.v1"):
    """The bridge rewrote one of its comments (an edit or a reaction in Telegram)."""

    task_number: int
    comment_id: int
    chat_id: int
    message_id: int
    reason: str  # "edit" | "reaction" | "album_part"


class TelegramMessageKind(enum.StrEnum):
    PLANFIX_COMMENT = "planfix_comment"
    BIND_CONFIRMATION = "bind_confirmation"
    BIND_REJECTION = "bind_rejection"
    UNBIND_CONFIRMATION = "unbind_confirmation"
    STATUS = "status"
    HELP = "help"
    GREETING = "greeting"
    ANONYMOUS_ADMIN_GUIDANCE = "anonymous_admin_guidance"
    BINDING_RESUMED = "binding_resumed"
    TASK_CARD = "task_card"
    TASK_CHANGE = "task_change"
    TASK_COMMAND_ANSWER = "task_command_answer"


class CommentAlsoShown(msgspec.Struct, frozen=True, kw_only=True):
    """A further comment one Telegram message shows (comments sent together), with its own story's
    ids, so that ``bridge trace`` of that comment finds the message too."""

    comment_id: int
    task_number: int | None = None
    correlation_id: str
    causation_id: str


class TelegramMessageSent(Event, frozen=True, kw_only=True, tag="effect.telegram_message_sent.v1"):
    """The bridge sent a message into a Telegram group.

    Comments sent together as one message are one event: the first comment's (its envelope,
    ``comment_id``), the others in ``also_shows`` in the order the message shows them."""

    chat_id: int
    message_ids: list[int]
    kind: TelegramMessageKind
    task_number: int | None = None
    comment_id: int | None = None
    thread_id: int | None = None
    also_shows: list[CommentAlsoShown] = []

    def correlation_ids(self) -> list[str]:
        """Every story this message is a step of: its own and each further comment's."""
        return [self.correlation_id, *(shown.correlation_id for shown in self.also_shows)]


# --- Operations: messages a consumer gave up on ------------------------------------------------


class DeadLetterReason(enum.StrEnum):
    # The body is not an event this version can read.
    UNDECODABLE = "undecodable"
    # The handler said retrying cannot help (``PermanentFailure``).
    PERMANENT_FAILURE = "permanent_failure"
    # The handler crashed ``CRASH_LIMIT`` times in a row on it (or, where a consumer sets a
    # ``max_deliver``, every delivery allowed failed).
    RETRIES_EXHAUSTED = "retries_exhausted"


# ``MessageDeadLettered.stream`` of an update the Telegram gateway could not decode: it came from
# the Bot API (getUpdates), not from a stream, so there is nothing to re-publish it to.
TELEGRAM_UPDATES_SOURCE = "telegram-bot-api"


# ``MessageDeadLettered.stream`` of a message Telegram refused for good: it sits in the relay's
# outbox, not in a stream; ``bridge dlq retry`` asks the relay to send it again
# (``RetryTelegramDelivery``). Its ``consumer`` is ``TELEGRAM_OUTBOX_CONSUMER``.
TELEGRAM_OUTBOX_SOURCE = "telegram-outbox"
TELEGRAM_OUTBOX_CONSUMER = "relay-telegram-outbox"


class MessageDeadLettered(Event, frozen=True, kw_only=True, tag="ops.message_dead_lettered.v1"):
    """A consumer gave up on a message; it is kept, as it was, until an operator retries or drops it.

    The original body travels base64-encoded because an undecodable message may not be text.
    """

    consumer: str
    stream: str
    stream_seq: int
    original_subject: str
    original_headers: dict[str, str]
    body_b64: str
    reason: DeadLetterReason
    detail: str
    num_delivered: int
    original_event_type: str | None = None
    original_event_id: str | None = None


class TelegramMessagesEdited(Event, frozen=True, kw_only=True, tag="effect.telegram_messages_edited.v1"):
    """The bridge changed the messages it had sent for a Planfix comment that was edited."""

    chat_id: int
    comment_id: int
    message_ids: list[int]
    thread_id: int | None = None


class TelegramMessagesDeleted(Event, frozen=True, kw_only=True, tag="effect.telegram_messages_deleted.v1"):
    """The bridge removed the messages it had sent for a Planfix comment that was deleted."""

    chat_id: int
    comment_id: int
    message_ids: list[int]
    thread_id: int | None = None


class TelegramDeliveryFailed(Event, frozen=True, kw_only=True, tag="effect.telegram_delivery_failed.v1"):
    """Telegram refused a message for good (after the retry budget): an operator should look.

    The message is kept in the relay's outbox with this reason; nothing is dropped silently.
    """

    chat_id: int
    outbox_key: str
    reason: str
    kind: TelegramMessageKind
    task_number: int | None = None
    comment_id: int | None = None
    thread_id: int | None = None


# --- People: Telegram users as Planfix people (issue 15) ------------------------------------


class PersonLinkMethod(enum.StrEnum):
    """How a Telegram user came to be a Planfix person."""

    # An employee whose Planfix profile carries the Telegram id or username ("authorize Telegram").
    PLANFIX_PROFILE = "planfix_profile"
    # The person wrote a one-time /link code as a comment in Planfix.
    LINK_CODE = "link_code"
    # The bridge created a contact for an unknown Telegram user.
    CONTACT_CREATED = "contact_created"


class PersonLinked(Event, frozen=True, kw_only=True, tag="people.person_linked.v1"):
    """A Telegram user is now known as a Planfix employee ("user:N") or contact ("contact:N")."""

    telegram_user_id: int
    planfix_person_id: str
    # The Planfix person's name when linked (for messages and the sandbox page).
    name: str
    how: PersonLinkMethod
    telegram_username: str | None = None
    # The person's Telegram language when they asked for their /link code (their notice's).
    language_code: str | None = None


class PersonUnlinked(Event, frozen=True, kw_only=True, tag="people.person_unlinked.v1"):
    """A Telegram user is no longer that Planfix person."""

    telegram_user_id: int
    planfix_person_id: str
    # Free text, e.g. "unlink_command", "planfix_profile_changed", "employee_inactive",
    # "operator": a string, not an enum, so a new reason never breaks an older consumer.
    why: str


class LinkRefusal(enum.StrEnum):
    """Why a /link code written in Planfix linked nobody."""

    EXPIRED = "expired"
    # The comment's author is a contact, not an employee.
    NOT_AN_EMPLOYEE = "not_an_employee"
    # Fired or deleted in Planfix.
    EMPLOYEE_INACTIVE = "employee_inactive"
    # The Telegram user is linked to another Planfix person already (/unlink first).
    ALREADY_LINKED = "already_linked"
    # The employee is linked to another Telegram account already.
    EMPLOYEE_LINKED_ELSEWHERE = "employee_linked_elsewhere"


class PersonLinkRefused(Event, frozen=True, kw_only=True, tag="people.person_link_refused.v1"):
    """A /link code was written in Planfix, and linked nobody: the person is told why.

    Carries no code (a code is a secret while it lives; ``bridge_lib.link_codes``)."""

    telegram_user_id: int
    refusal: LinkRefusal
    # Who wrote the code in Planfix ("" when Planfix named nobody), and where.
    planfix_person_id: str
    task_number: int
    comment_id: int
    language_code: str | None = None


# --- Private chat with the bot (NATS requests, not stored) -----------------------------------


class PrivateCommand(enum.StrEnum):
    LINK = "link"
    UNLINK = "unlink"
    WHOAMI = "whoami"


class AnswerPrivateCommand(Event, frozen=True, kw_only=True, tag="ops.answer_private_command.v1"):
    """``/link``, ``/unlink`` or ``/whoami`` written to the bot in a private chat; the gateway
    asks the binder (a NATS request, never stored: a /link answer holds a code) and answers the
    person with ``PrivateCommandAnswered``."""

    command: PrivateCommand
    user: TelegramUser
    language_code: str | None = None


class PrivateAnswer(enum.StrEnum):
    CODE_ISSUED = "code_issued"
    ALREADY_LINKED = "already_linked"
    TOO_MANY_CODES = "too_many_codes"
    UNLINKED = "unlinked"
    NOT_LINKED = "not_linked"
    LINKED = "linked"
    # Planfix could not be asked now; nothing changed.
    PLANFIX_AWAY = "planfix_away"


class PrivateCommandAnswered(Event, frozen=True, kw_only=True, tag="ops.private_command_answered.v1"):
    """The binder's answer to ``AnswerPrivateCommand``: what the gateway tells the person."""

    answer: PrivateAnswer
    planfix_person_id: str | None = None
    person_name: str | None = None
    # CODE_ISSUED only: the code and how long it lives. Never logged, never stored in a stream.
    code: str | None = None
    expires_in_s: int | None = None
    retry_after_s: int | None = None


# --- Operator commands ---------------------------------------------------------------------


class UnbindGroup(Event, frozen=True, kw_only=True, tag="binding.unbind_group.v1"):
    """Remove this group's binding to ``task_number`` (``bridge bindings unbind``), unless it is
    bound to another task by the time the binder gets to it; the binder answers with
    ``TaskUnbound`` or ``UnbindRejected``.

    Trusted as an operator's: whoever may publish to NATS may send it (NATS credentials are a
    later issue)."""

    chat_id: int
    task_number: int
    # Who: e.g. "bridge-cli:alice".
    operator: str
    reason: str = ""
    thread_id: int | None = None


class BindingStoreDifference(msgspec.Struct, frozen=True, kw_only=True):
    group_key: str
    what: str  # "restored" | "changed" | "removed"
    detail: str


class RebuildBindingStore(Event, frozen=True, kw_only=True, tag="ops.rebuild_binding_store.v1"):
    """Make the binder's store say what the BINDING stream adds up to (``bridge binder rebuild``;
    with ``dry_run`` only compare). A NATS request, not stored; answered with
    ``BindingStoreRebuilt``. Trusted as an operator's, like ``UnbindGroup``."""

    operator: str
    dry_run: bool = False


class BindingStoreRebuilt(Event, frozen=True, kw_only=True, tag="ops.binding_store_rebuilt.v1"):
    """The binder's answer to ``RebuildBindingStore``: what differed (and was repaired unless a
    dry run), out of how many bindings and binding events."""

    differences: list[BindingStoreDifference]
    bindings: int
    events: int
    dry_run: bool


class AdmitGroup(Event, frozen=True, kw_only=True, tag="ops.admit_group.v1"):
    """The bot was added to a group and ``TELEGRAM_LEAVE_UNKNOWN_GROUPS`` is on: may it stay?
    A NATS request from the gateway to the binder, answered with ``GroupAdmissionDecided``."""

    chat_id: int
    added_by: TelegramUser | None = None


class GroupAdmissionDecided(Event, frozen=True, kw_only=True, tag="ops.group_admission_decided.v1"):
    admitted: bool
    # "known_group", "allowed_chat", "linked_employee", "policy_admins", "planfix_away" (admitted);
    # "not_linked", "not_an_employee", "chat_not_allowed" (not).
    why: str


class AuditBindings(Event, frozen=True, kw_only=True, tag="ops.audit_bindings.v1"):
    """``bridge bindings audit``: which bindings the binder would refuse today (the people who
    bound them, checked under today's bind policy). A NATS request, not stored; answered with
    ``BindingsAudited``. ``max_planfix_reads`` caps the task reads it may spend (paced)."""

    operator: str
    max_planfix_reads: int = 200


class BindingAuditFinding(msgspec.Struct, frozen=True, kw_only=True):
    group_key: str
    chat_id: int
    task_number: int
    bound_by_user_id: int | None
    # A ``BindRefusal`` value ("not_linked", "not_on_the_task", ...), or "unchecked" when the
    # task's people were not read (the read cap, or Planfix away).
    refusal: str


class BindingsAudited(Event, frozen=True, kw_only=True, tag="ops.bindings_audited.v1"):
    """The binder's answer to ``AuditBindings``: the bindings it would refuse today."""

    policy: str
    findings: list[BindingAuditFinding]
    bindings: int
    planfix_reads: int


class RetryTelegramDelivery(Event, frozen=True, kw_only=True, tag="ops.retry_telegram_delivery.v1"):
    """Send again a message Telegram refused for good (``bridge dlq retry`` of a dead letter from
    ``TELEGRAM_OUTBOX_SOURCE``). A NATS request, not stored; the relay answers with
    ``TelegramDeliveryRetried``. Trusted as an operator's, like ``UnbindGroup``."""

    outbox_key: str
    operator: str


class TelegramDeliveryRetried(Event, frozen=True, kw_only=True, tag="ops.telegram_delivery_retried.v1"):
    """The relay's answer to ``RetryTelegramDelivery``: whether the message waits to go again
    (last in its group's queue), and if not, why (already sent, or unknown)."""

    outbox_key: str
    queued: bool
    detail: str


AnyEvent = (
    TelegramMessageReceived
    | TelegramMessageEdited
    | TelegramReactionChanged
    | BindRequested
    | UnbindRequested
    | GroupCommandReceived
    | AnonymousAdminPosted
    | BotMembershipChanged
    | ChatMigrated
    | OtherBotCommanded
    | TaskBound
    | BindRejected
    | TaskUnbound
    | UnbindRejected
    | BindingSuspended
    | BindingResumed
    | BindingMoved
    | PlanfixCommentWebhookReceived
    | PlanfixCommentAdded
    | PlanfixCommentUpdated
    | PlanfixCommentDeleted
    | PlanfixCommentPosted
    | PlanfixCommentRewritten
    | TelegramMessageSent
    | TelegramMessagesEdited
    | TelegramMessagesDeleted
    | TelegramDeliveryFailed
    | MessageDeadLettered
    | PersonLinked
    | PersonUnlinked
    | PersonLinkRefused
    | UnbindGroup
    | PlanfixTaskWebhookReceived
    | PlanfixTaskStateChanged
    | TaskCommandRequested
    | TaskCommandAnswered
    | GroupLanguageRequested
    | GroupLanguageChosen
    | GroupLanguageRejected
)

BindingEvent = (
    TaskBound
    | BindRejected
    | TaskUnbound
    | UnbindRejected
    | BindingSuspended
    | BindingResumed
    | BindingMoved
    | GroupLanguageChosen
    | GroupLanguageRejected
)
PlanfixCommentChange = PlanfixCommentAdded | PlanfixCommentUpdated | PlanfixCommentDeleted
TelegramGroupEvent = GroupCommandReceived | AnonymousAdminPosted | BotMembershipChanged | ChatMigrated
PersonEvent = PersonLinked | PersonUnlinked | PersonLinkRefused

_encoder = msgspec.json.Encoder()
_decoder: msgspec.json.Decoder[AnyEvent] = msgspec.json.Decoder(AnyEvent)


def encode_event(event: Event) -> bytes:
    return _encoder.encode(event)


def decode_event(data: bytes) -> AnyEvent:
    """Decode any event by its tag; raises ``msgspec.ValidationError``/``DecodeError`` on bad input."""
    return _decoder.decode(data)


# --- Source keys: the one place that says how a source becomes a dedup id -------------------


def telegram_message_key(chat_id: int, message_id: int) -> str:
    return f"tg:msg:{chat_id}:{message_id}"


def telegram_update_key(kind: str, chat_id: int, update_id: int) -> str:
    """Edits and reactions: the update id tells two changes within one second apart."""
    return f"tg:{kind}:{chat_id}:{update_id}"


def telegram_bind_key(chat_id: int, message_id: int) -> str:
    return f"tg:bind:{chat_id}:{message_id}"


def telegram_unbind_key(chat_id: int, message_id: int) -> str:
    return f"tg:unbind:{chat_id}:{message_id}"


def telegram_language_key(chat_id: int, message_id: int) -> str:
    return f"tg:lang:{chat_id}:{message_id}"


def telegram_command_key(chat_id: int, message_id: int) -> str:
    return f"tg:command:{chat_id}:{message_id}"


def telegram_other_bot_key(chat_id: int, message_id: int) -> str:
    return f"tg:other-bot:{chat_id}:{message_id}"


def operator_unbind_key(chat_id: int, thread_id: int | None, bound_event_id: str) -> str:
    """One operator unbind per binding: sending the command twice stores one command."""
    return f"ops:unbind:{chat_id}:{thread_id}:{bound_event_id}"


def telegram_migration_key(old_chat_id: int, new_chat_id: int) -> str:
    # Both service messages of one upgrade (migrate_to_chat_id in the old group,
    # migrate_from_chat_id in the new one) give this key: one event per migration.
    return f"tg:migrate:{old_chat_id}:{new_chat_id}"


def telegram_membership_key(chat_id: int, update_id: int) -> str:
    return f"tg:membership:{chat_id}:{update_id}"


def planfix_webhook_key(comment_id: int) -> str:
    return f"pf:webhook:comment:{comment_id}"


def planfix_change_webhook_key(comment_id: int, action: str, received_at_ms: int) -> str:
    """Key of an edit/delete notice. An edit has no id of its own (a comment may change many
    times), so the arrival time is part of it; a rare repeat is harmless downstream."""
    return f"pf:webhook:comment:{comment_id}:{action}:{received_at_ms}"


def planfix_task_webhook_key(task_number: int, received_at_ms: int) -> str:
    """A task changes many times: the arrival time tells two notices apart (a repeat of one
    notice is harmless: the state it finds is the state already stored)."""
    return f"pf:webhook:task:{task_number}:{received_at_ms}"


def planfix_task_state_key(task_number: int, state_hash: str, previous_seq: int) -> str:
    """One state change per (state, the stored state it follows): a repeated read, or two
    replicas, store it once; A -> B -> A -> B is three changes, not one."""
    return f"pf:task:{task_number}:state:{previous_seq}:{state_hash}"


def telegram_task_command_key(chat_id: int, message_id: int) -> str:
    return f"tg:task-command:{chat_id}:{message_id}"


def planfix_comment_key(comment_id: int) -> str:
    return f"pf:comment:{comment_id}"


def dead_letter_key(stream: str, stream_seq: int, consumer: str) -> str:
    """One dead letter per consumer and stored message: a repeated give-up is not a second one."""
    return f"dlq:{stream}:{stream_seq}:{consumer}"


def planfix_comment_deleted_key(comment_id: int) -> str:
    return f"pf:comment:{comment_id}:deleted"


def planfix_comment_reread_key(comment_id: int, changes_seen: int, content_hash: str) -> str:
    """Key of an edit noticed by re-reading the task's comments: the same content after the
    same number of earlier changes is the same edit (a repeated pass publishes nothing), while
    A -> B -> A -> B is three edits, not two."""
    return f"pf:comment:{comment_id}:reread:{changes_seen}:{content_hash}"


def derived_key(cause: Event, what: str) -> str:
    """Key for an event caused by ``cause``: redelivering the cause rebuilds the same event."""
    return f"{what}:from:{cause.event_id}"


class Envelope(TypedDict):
    """The fields every event carries; spread into an event with ``**``."""

    event_id: str
    occurred_at: datetime
    correlation_id: str
    causation_id: str


def root_envelope(source_key: str, *, caused_by: str) -> Envelope:
    """For the first event of a chain: it correlates with itself; ``caused_by`` names the source."""
    event_id = event_id_for(source_key)
    return {
        "event_id": event_id,
        "occurred_at": utc_now(),
        "correlation_id": event_id,
        "causation_id": caused_by,
    }


def envelope_after(cause: Event, key: str) -> Envelope:
    """For an event caused by another: same correlation, caused by it, id from ``key``."""
    return envelope_in(key, correlation_id=cause.correlation_id, causation_id=cause.event_id)


def envelope_in(key: str, *, correlation_id: str, causation_id: str) -> Envelope:
    """``envelope_after`` where only the cause's ids were kept (in a store or a fold)."""
    return {
        "event_id": event_id_for(key),
        "occurred_at": utc_now(),
        "correlation_id": correlation_id,
        "causation_id": causation_id,
    }
