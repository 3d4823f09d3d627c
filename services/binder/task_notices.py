"""Every bind and unbind announced in the task itself, so the task's people see where their
comments go: "Bound to Telegram group «…» by …", "Unbound from Telegram group «…» by …".

``notice_comments`` is pure: which comments an event makes, in which task, under which key.
``TaskNotices`` posts each once: a record keyed by the comment's key (``binding-notice:<event
id>``) is written before the comment and marked posted after; a record found unposted (a crash in
between) looks the comment up by its ``sourceObjectId`` before posting again. The comment carries
the bridge's ``PLANFIX_SOURCE_ID``, so the relay knows it for its own and does not echo it into
the group.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from typing import Protocol

import structlog

from bridge_lib.eventbus import TransientFailure
from bridge_lib.i18n import Translator, translator
from bridge_lib.planfix import CommentLister, PlanfixRejected, PlanfixUnavailable
from contracts.events import TaskBound, TaskUnbound, TelegramUser, planfix_source_object_id
from services.binder.store import TaskNotice

log = structlog.get_logger("binder.task_notices")

# Pages of a task's comments (newest first) searched for a notice posted before a crash.
_RECOVERY_PAGES = 2


@dataclass(frozen=True, slots=True)
class NoticeComment:
    key: str
    task_number: int
    html: str


def notice_key(event_id: str, suffix: str = "") -> str:
    return f"binding-notice:{event_id}{suffix}"


def notice_comments(
    event: TaskBound | TaskUnbound, *, group_title: str, by: str, texts: Translator | None = None
) -> list[NoticeComment]:
    """The comments announcing ``event`` (pure), in the group's language; ``by`` names who did it."""
    t = texts or translator()
    group = html.escape(group_title)
    if event.thread_id is not None:
        group += t.gettext(" (topic {topic})").format(topic=event.thread_id)
    who = html.escape(by)
    match event:
        case TaskBound():
            comments = [
                NoticeComment(
                    notice_key(event.event_id),
                    event.task_number,
                    t.gettext(
                        "Bound to Telegram group «{group}» by {person}. Comments in this task are sent "
                        "to the group, and the group's messages become comments here."
                    ).format(group=group, person=who),
                )
            ]
            if event.previous_task_number is not None and event.previous_task_number != event.task_number:
                comments.append(
                    NoticeComment(
                        notice_key(event.event_id, ":previous"),
                        event.previous_task_number,
                        t.gettext(
                            "Unbound from Telegram group «{group}» by {person} "
                            "(the group is now bound to task #{number})."
                        ).format(group=group, person=who, number=event.task_number),
                    )
                )
            return comments
        case TaskUnbound():
            return [
                NoticeComment(
                    notice_key(event.event_id),
                    event.task_number,
                    t.gettext("Unbound from Telegram group «{group}» by {person}.").format(
                        group=group, person=who
                    ),
                )
            ]


def who_did(
    user: TelegramUser | None,
    *,
    planfix_name: str | None,
    operator: str = "",
    texts: Translator | None = None,
) -> str:
    """The Planfix name of a linked person, else their Telegram name, else the operator."""
    t = texts or translator()
    if user is None:
        if operator:
            return t.gettext("the bridge's operator ({operator})").format(operator=operator)
        return t.gettext("the bridge's operator")
    return planfix_name or user.display


class NoticeStore(Protocol):
    async def notice_for(self, key: str) -> TaskNotice | None: ...
    async def save_notice(self, notice: TaskNotice) -> None: ...


class Comments(CommentLister, Protocol):
    async def add_comment(
        self, *, task_number: int, description_html: str, source_id: str, source_object_id: str
    ) -> int: ...


@dataclass(frozen=True, kw_only=True, eq=False)
class TaskNotices:
    store: NoticeStore
    planfix: Comments
    source_id: str

    async def post(self, comments: list[NoticeComment]) -> None:
        for comment in comments:
            await self._post_once(comment)

    async def _post_once(self, comment: NoticeComment) -> None:
        notice = await self.store.notice_for(comment.key)
        if notice is not None and notice.posted:
            return
        try:
            found = None
            if notice is None:
                await self.store.save_notice(TaskNotice(key=comment.key, task_number=comment.task_number))
            else:
                found = await self._find(comment)
            if found is None:
                found = await self.planfix.add_comment(
                    task_number=comment.task_number,
                    description_html=comment.html,
                    source_id=self.source_id,
                    source_object_id=planfix_source_object_id(comment.key),
                )
        except PlanfixUnavailable as error:
            raise TransientFailure(f"Planfix unavailable for a binding notice: {error}") from error
        except PlanfixRejected as error:
            # The task went away or the robot may not write there: the binding stands regardless.
            log.warning("binding_notice_refused", task_number=comment.task_number, code=error.code)
            found = None
        await self.store.save_notice(
            TaskNotice(key=comment.key, task_number=comment.task_number, posted=True, comment_id=found)
        )
        log.info("binding_notice_posted", task_number=comment.task_number, comment_id=found)

    async def _find(self, comment: NoticeComment) -> int | None:
        wanted = planfix_source_object_id(comment.key)
        for page in range(_RECOVERY_PAGES):
            found = await self.planfix.list_comments(
                comment.task_number, source_id=self.source_id, offset=page * 100, newest_first=True
            )
            for existing in found:
                if existing.source_object_id == wanted:
                    return existing.id
            if len(found) < 100:
                break
        return None
