"""How events look on a terminal: one line each, coloured by kind, no message text.

Message and comment bodies are left out on purpose (lengths only): the CLI's output ends up in
tickets and chats, and the people in the groups did not write for those.
"""

from __future__ import annotations

from datetime import datetime

from rich.text import Text

from bridge_cli.streams import StoredMessage
from bridge_lib.eventbus import REPLAY_HEADER, RETRY_OF_HEADER
from contracts.events import (
    AnyEvent,
    BindRejected,
    BindRequested,
    GroupLanguageChosen,
    GroupLanguageRejected,
    GroupLanguageRequested,
    MessageDeadLettered,
    PersonLinked,
    PersonLinkRefused,
    PersonUnlinked,
    PlanfixCommentAdded,
    PlanfixCommentPosted,
    PlanfixCommentWebhookReceived,
    PlanfixTaskStateChanged,
    PlanfixTaskWebhookReceived,
    TaskBound,
    TaskCommandAnswered,
    TaskCommandRequested,
    TaskUnbound,
    TelegramMessageReceived,
    TelegramMessageSent,
)
from contracts.subjects import CATALOGUE, DEAD_LETTERED

# Colour by where an event comes from; dead letters stand out.
STYLE_BY_AREA = {
    "telegram": "bright_blue",
    "planfix": "yellow",
    "binding": "cyan",
    "effect": "green",
    "ops": "bold red",
}


# Which service writes which stream's events (the "step" of a trace).
def published_by(subject: str) -> str:
    """The service that writes ``subject``, as the catalogue names it (its first publisher)."""
    family = subject.rsplit(".", 1)[0] + ".*"
    spec = next((spec for spec in CATALOGUE if spec.pattern == family), None)
    if spec is None:
        return "?"
    if spec is DEAD_LETTERED:
        return "dead letter"
    return spec.published_by.split(";")[0].split(",")[0].split(" (")[0].strip()


def style_of(event_type: str) -> str:
    return STYLE_BY_AREA.get(event_type.split(".", 1)[0], "white")


def summary(event: AnyEvent) -> str:
    """What happened, in a few words, without the text people wrote."""
    match event:
        case TelegramMessageReceived():
            return (
                f"chat {event.chat_id} message {event.message_id} from {event.sender.display}: "
                f"{len(event.text)} chars"
            )
        case BindRequested():
            what = f"task #{event.task_number}" if event.task_number else "a new task"
            return f"chat {event.chat_id}: /task asks for {what} ({event.requested_by.display})"
        case TaskBound():
            how = "created and bound" if event.created_task else "bound"
            return f"chat {event.chat_id} {how} to task #{event.task_number}"
        case PersonLinked():
            return f"Telegram user {event.telegram_user_id} is {event.planfix_person_id} ({event.how})"
        case PersonUnlinked():
            return (
                f"Telegram user {event.telegram_user_id} is no longer {event.planfix_person_id} ({event.why})"
            )
        case PersonLinkRefused():
            return f"a /link code of Telegram user {event.telegram_user_id} linked nobody ({event.refusal})"
        case BindRejected():
            return f"chat {event.chat_id}: bind refused ({event.reason}): {event.detail}"
        case TaskUnbound():
            return f"chat {event.chat_id} unbound from task #{event.task_number} by {event.unbound_by}"
        case GroupLanguageRequested():
            return f"chat {event.chat_id}: /lang {event.language} ({event.requested_by.display})"
        case GroupLanguageChosen():
            return f"chat {event.chat_id} speaks {event.language} from now on"
        case GroupLanguageRejected():
            return f"chat {event.chat_id}: /lang {event.language} refused ({event.reason}): {event.detail}"
        case PlanfixCommentWebhookReceived():
            return f"task #{event.task_number}: webhook for comment {event.comment_id}"
        case PlanfixCommentAdded():
            ours = " (written by the bridge)" if event.source_object_id else ""
            return (
                f"task #{event.task_number}: comment {event.comment_id} by {event.author.name or '?'}, "
                f"{len(event.text_html)} chars{ours}"
            )
        case PlanfixCommentPosted():
            return (
                f"posted comment {event.comment_id} in task #{event.task_number} "
                f"for chat {event.chat_id} message {event.message_id}"
            )
        case TelegramMessageSent():
            together = (
                f", together with comment(s) {[shown.comment_id for shown in event.also_shows]}"
                if event.also_shows
                else ""
            )
            return f"sent {event.kind} to chat {event.chat_id} as message(s) {event.message_ids}{together}"
        case PlanfixTaskWebhookReceived():
            return f"task #{event.task_number}: webhook for a task change"
        case PlanfixTaskStateChanged():
            was = f"{event.previous.status_name} -> " if event.previous is not None else ""
            return f"task #{event.task_number}: {was}{event.state.status_name or '?'} ({event.seen_on})"
        case TaskCommandRequested():
            return f"chat {event.chat_id}: /{event.command} ({event.requested_by.display})"
        case TaskCommandAnswered():
            verdict = "done" if event.done else "refused"
            task = f"task #{event.task_number}" if event.task_number else "no task"
            return f"chat {event.chat_id}: /{event.command} {verdict} ({event.outcome}) on {task}"
        case MessageDeadLettered():
            return (
                f"{event.consumer} gave up on {event.stream}/{event.stream_seq} "
                f"after {event.num_delivered} deliveries ({event.reason}): {event.detail}"
            )
    return ""


def clock(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] if moment else "-"


def event_line(message: StoredMessage, event: AnyEvent | None) -> Text:
    """``time  STREAM/seq  type  summary`` (and a replay marker), coloured by kind."""
    line = Text()
    line.append(clock(message.time), style="dim")
    line.append(f"  {f'{message.stream}/{message.seq}':<16} ")
    if event is None:
        line.append("undecodable message", style="bold red")
        line.append(f"  on {message.subject}")
        return line
    line.append(f"{event.tag:<36} ", style=style_of(event.tag))
    line.append(summary(event))
    replay = message.headers.get(REPLAY_HEADER)
    if replay:
        line.append(f"  [replay {replay}]", style="magenta")
    retry_of = message.headers.get(RETRY_OF_HEADER)
    if retry_of:
        line.append(f"  [retry of dead letter {retry_of}]", style="magenta")
    return line
