"""The binder's decisions about bindings.

* ``BindRequested`` -> a stored binding and ``TaskBound``, or ``BindRejected``;
* ``UnbindRequested`` -> the binding removed and ``TaskUnbound``, or ``UnbindRejected``;
(the group's life-cycle, membership and migration, is in ``group_life.py``.)

Only the group's admins (as Telegram told the gateway) may bind or unbind, unless
``BINDER_EVERYONE_MAY_BIND`` is set; others get a polite refusal and nothing changes.

``/task <link>`` binds the task the link opens when it is a task of the bridge's own Planfix
account (``bridge_lib.task_links``); any other link is refused with why, never made a title.

Idempotent by construction: the outcome of each request or change is stored under its source
key before the resulting events are published, and each event's ``Nats-Msg-Id`` is derived from
the cause's event id. A redelivery republishes the same events (JetStream drops the repeats)
and, for ``/task <title>``, reuses the task created the first time.
"""

from __future__ import annotations

import html

import structlog

from bridge_lib.eventbus import Delivery, EventPublisher, TransientFailure
from bridge_lib.planfix import (
    CODE_ACCESS_DENIED,
    PlanfixClient,
    PlanfixRejected,
    PlanfixUnavailable,
    TaskNotFound,
)
from bridge_lib.task_links import LinkRefusal, task_in_link
from contracts import subjects
from contracts.events import (
    BindingRejectionReason,
    BindRejected,
    BindRequested,
    TaskBound,
    TaskUnbound,
    UnbindRejected,
    UnbindRequested,
    derived_key,
    envelope_after,
    telegram_bind_key,
    telegram_unbind_key,
    utc_now,
)
from services.binder.store import Binding, BindingStore, BindOutcome, group_key

log = structlog.get_logger("binder")

HOW_TO_BIND = "write /task <title of a new task>, /task <number of an existing task> or /task <its link>"
# The group reads "Could not bind this group: <this>."; the link itself is not repeated.
LINK_REFUSALS = {
    LinkRefusal.NOT_PLANFIX: (
        "that link is not a link to a Planfix task. To bind a task, paste the link of the task "
        "as Planfix shows it (https://<account>.planfix.com/task/<number>) or write /task <number>; "
        "to create a task, write its title in words"
    ),
    LinkRefusal.NOT_A_TASK: (
        "that Planfix link does not open a task; paste the link of the task itself "
        "(…/task/<number>) or write /task <number>"
    ),
    LinkRefusal.OTHER_ACCOUNT: (
        "that link is to another Planfix account; this bridge binds tasks of its own account "
        "only. Paste the link of one of its tasks or write /task <number>"
    ),
}


class Binder:
    def __init__(
        self,
        *,
        store: BindingStore,
        planfix: PlanfixClient,
        publisher: EventPublisher,
        account_url: str,
        max_task_title: int = 250,
        everyone_may_bind: bool = False,
    ) -> None:
        self._store = store
        # PLANFIX_BASE_URL: the only account whose task links bind.
        self._account_url = account_url
        self._planfix = planfix
        self._publisher = publisher
        self._max_task_title = max_task_title
        self._everyone_may_bind = everyone_may_bind

    async def handle_bind_request(self, request: BindRequested | UnbindRequested, delivery: Delivery) -> None:
        if isinstance(request, UnbindRequested):
            await self.handle_unbind_request(request)
            return
        structlog.contextvars.bind_contextvars(chat_id=request.chat_id, task_number=request.task_number)
        request_key = telegram_bind_key(request.chat_id, request.message_id)
        outcome = await self._store.outcome_for(request_key)
        if outcome is None or outcome.decided is None:
            outcome = await self._decide(request, request_key, outcome)
            await self._store.save_outcome(outcome)
        await self._publish(request, outcome)

    def _refusal(self, request: BindRequested | UnbindRequested, what: str) -> str | None:
        """Why this person may not change the binding, or None when they may."""
        if self._everyone_may_bind or request.requester_is_admin:
            return None
        if request.requester_is_admin is None:
            return (
                f"Telegram could not tell whether you are an admin of this group; please {what} again later"
            )
        return f"only the group's admins can {what} it, sorry"

    async def _decide(
        self, request: BindRequested, request_key: str, earlier: BindOutcome | None
    ) -> BindOutcome:
        if refusal := self._refusal(request, "bind"):
            return _rejected(request_key, BindingRejectionReason.NOT_ALLOWED, refusal)
        asked_for = request.task_number
        if request.task_link is not None:
            link = task_in_link(request.task_link, account_url=self._account_url)
            if link.refusal is not None or link.number is None:
                why = LINK_REFUSALS[link.refusal or LinkRefusal.NOT_PLANFIX]
                return _rejected(request_key, BindingRejectionReason.INVALID_REQUEST, why)
            asked_for = link.number
        try:
            if asked_for is not None:
                task = await self._planfix.get_task(asked_for)
                number, title, created = task.number, task.name or f"#{task.number}", None
            elif request.task_title:
                title = _shorten(request.task_title, self._max_task_title)
                reused = earlier.created_task_number if earlier else None
                if reused is None:
                    number = await self._planfix.create_task(
                        name=title, description=_task_description(request)
                    )
                    # Remember the task before anything else can fail, so a retry reuses it.
                    await self._store.save_outcome(
                        BindOutcome(request_key=request_key, created_task_number=number)
                    )
                    log.info("task_created", task_number=number)
                else:
                    number = reused
                created = number
            else:
                return _rejected(request_key, BindingRejectionReason.INVALID_REQUEST, HOW_TO_BIND)
        except TaskNotFound:
            return _not_found_or_hidden(request_key, asked_for)
        except PlanfixUnavailable as error:
            raise TransientFailure(str(error)) from error
        except PlanfixRejected as error:
            if error.code == CODE_ACCESS_DENIED:
                # Worded exactly like "not found": the group must not learn that the task exists.
                return _not_found_or_hidden(request_key, asked_for)
            log.warning("planfix_refused_bind", error=str(error), code=error.code)
            return _rejected(
                request_key,
                BindingRejectionReason.PLANFIX_REFUSED,
                f"Planfix refused the request (error code {error.code})",
                task_number=asked_for,
            )
        key = group_key(request.chat_id, request.thread_id)
        previous = await self._store.binding_for(key)
        await self._store.bind(
            Binding(
                group_key=key,
                chat_id=request.chat_id,
                thread_id=request.thread_id,
                task_number=number,
                task_title=title,
                bound_at=utc_now(),
                bound_by_user_id=request.requested_by.id,
                request_key=request_key,
            )
        )
        log.info("group_bound", task_number=number, created_task=created is not None)
        return BindOutcome(
            request_key=request_key,
            created_task_number=created,
            decided="bound",
            task_number=number,
            task_title=title,
            previous_task_number=previous.task_number
            if previous and previous.task_number != number
            else None,
        )

    async def _publish(self, request: BindRequested, outcome: BindOutcome) -> None:
        if outcome.decided == "bound" and outcome.task_number is not None:
            key = derived_key(request, "bound")
            await self._publisher.publish(
                TaskBound(
                    **envelope_after(request, key),
                    chat_id=request.chat_id,
                    thread_id=request.thread_id,
                    task_number=outcome.task_number,
                    task_title=outcome.task_title or "",
                    created_task=outcome.created_task_number is not None,
                    requested_by=request.requested_by,
                    previous_task_number=outcome.previous_task_number,
                ),
                subject=subjects.binding_bound(request.chat_id),
                msg_id=key,
            )
        else:
            key = derived_key(request, "rejected")
            await self._publisher.publish(
                BindRejected(
                    **envelope_after(request, key),
                    chat_id=request.chat_id,
                    thread_id=request.thread_id,
                    reason=BindingRejectionReason(outcome.reason or BindingRejectionReason.INVALID_REQUEST),
                    detail=outcome.detail or "",
                    task_number=outcome.task_number,
                ),
                subject=subjects.binding_rejected(request.chat_id),
                msg_id=key,
            )

    # --- /unbind ----------------------------------------------------------------------------------

    async def handle_unbind_request(self, request: UnbindRequested) -> None:
        structlog.contextvars.bind_contextvars(chat_id=request.chat_id)
        request_key = telegram_unbind_key(request.chat_id, request.message_id)
        outcome = await self._store.outcome_for(request_key)
        if outcome is None or outcome.decided is None:
            outcome = await self._decide_unbind(request, request_key)
            await self._store.save_outcome(outcome)
        if outcome.decided == "unbound" and outcome.task_number is not None:
            key = derived_key(request, "unbound")
            event: TaskUnbound | UnbindRejected = TaskUnbound(
                **envelope_after(request, key),
                chat_id=request.chat_id,
                thread_id=request.thread_id,
                task_number=outcome.task_number,
                unbound_by=f"telegram:{request.requested_by.id}",
                reason="/unbind in the group",
                requested_by=request.requested_by,
            )
            subject = subjects.binding_unbound(request.chat_id)
        else:
            key = derived_key(request, "unbind-rejected")
            event = UnbindRejected(
                **envelope_after(request, key),
                chat_id=request.chat_id,
                thread_id=request.thread_id,
                reason=BindingRejectionReason(outcome.reason or BindingRejectionReason.NOT_BOUND),
                detail=outcome.detail or "",
            )
            subject = subjects.binding_unbind_rejected(request.chat_id)
        await self._publisher.publish(event, subject=subject, msg_id=key)

    async def _decide_unbind(self, request: UnbindRequested, request_key: str) -> BindOutcome:
        if refusal := self._refusal(request, "unbind"):
            return _rejected(request_key, BindingRejectionReason.NOT_ALLOWED, refusal)
        key = group_key(request.chat_id, request.thread_id)
        binding = await self._store.binding_for(key)
        if binding is None:
            where = "this topic" if request.thread_id is not None else "this group"
            return _rejected(request_key, BindingRejectionReason.NOT_BOUND, f"{where} is not bound to a task")
        await self._store.unbind(key)
        log.info("group_unbound", task_number=binding.task_number)
        return BindOutcome(request_key=request_key, decided="unbound", task_number=binding.task_number)


def _rejected(
    request_key: str, reason: BindingRejectionReason, detail: str, *, task_number: int | None = None
) -> BindOutcome:
    log.info("bind_rejected", reason=str(reason))
    return BindOutcome(
        request_key=request_key,
        decided="rejected",
        reason=str(reason),
        detail=detail,
        task_number=task_number,
    )


def _not_found_or_hidden(request_key: str, task_number: int | None) -> BindOutcome:
    """One answer for a task that does not exist and one the token may not see."""
    return _rejected(
        request_key,
        BindingRejectionReason.TASK_NOT_FOUND,
        f"task #{task_number} was not found in Planfix, or the bridge's Planfix user cannot see it",
        task_number=task_number,
    )


def _shorten(title: str, limit: int) -> str:
    title = " ".join(title.split())
    return title if len(title) <= limit else title[: limit - 1].rstrip() + "…"


def _task_description(request: BindRequested) -> str:
    group = request.chat_title or str(request.chat_id)
    return html.escape(f"Created from Telegram group «{group}» by {request.requested_by.display}.")
