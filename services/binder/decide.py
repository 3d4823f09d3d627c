"""The binder's decision on a bind or unbind request, as pure functions.

``planfix_question`` says what to ask Planfix first (if anything), ``decide`` turns the request,
the group's current binding and Planfix's answer into a ``BindOutcome`` (stored, so a redelivery
publishes the same answer), and ``announcement`` is the event that outcome publishes.
"""

from __future__ import annotations

import html
from dataclasses import dataclass

import msgspec

from bridge_lib.i18n import DEFAULT_LANGUAGE, LANGUAGES, N_, Translator, translator
from bridge_lib.task_links import LinkRefusal, task_in_link
from contracts import subjects
from contracts.bindings import Binding
from contracts.events import (
    BindingRejectionReason,
    BindRejected,
    BindRequested,
    Envelope,
    GroupLanguageChosen,
    GroupLanguageRejected,
    GroupLanguageRequested,
    TaskBound,
    TaskUnbound,
    UnbindGroup,
    UnbindRejected,
    UnbindRequested,
    derived_key,
    envelope_after,
    telegram_bind_key,
    telegram_language_key,
    telegram_unbind_key,
)
from services.binder.bind_policy import BindRefusal

BinderRequest = BindRequested | UnbindRequested | UnbindGroup | GroupLanguageRequested
Announcement = (
    TaskBound | BindRejected | TaskUnbound | UnbindRejected | GroupLanguageChosen | GroupLanguageRejected
)

# The group reads "Could not bind this group: <this>." in its language; the link itself is
# not repeated.
HOW_TO_BIND = N_("write /task <title of a new task>, /task <number of an existing task> or /task <its link>")
LINK_REFUSALS = {
    LinkRefusal.NOT_PLANFIX: N_(
        "that link is not a link to a Planfix task. To bind a task, paste the link of the task "
        "as Planfix shows it (https://<account>.planfix.com/task/<number>) or write /task <number>; "
        "to create a task, write its title in words"
    ),
    LinkRefusal.NOT_A_TASK: N_(
        "that Planfix link does not open a task; paste the link of the task itself "
        "(…/task/<number>) or write /task <number>"
    ),
    LinkRefusal.OTHER_ACCOUNT: N_(
        "that link is to another Planfix account; this bridge binds tasks of its own account "
        "only. Paste the link of one of its tasks or write /task <number>"
    ),
}


@dataclass(frozen=True, slots=True)
class BindRules:
    # PLANFIX_BASE_URL: the only account whose task links bind.
    account_url: str
    max_task_title: int = 250
    # Who may /task, /unbind and /lang: the group's admins only (False), or every member (True).
    everyone_may_bind: bool = False
    # BRIDGE_LANGUAGE: what a group hears until it has a language of its own.
    language: str = DEFAULT_LANGUAGE


class BindOutcome(msgspec.Struct, frozen=True, kw_only=True):
    """What the binder decided for one request; enough to publish the same event again."""

    request_key: str
    created_task_number: int | None = None
    decided: str | None = None  # "bound" | "unbound" | "rejected"
    task_number: int | None = None
    task_title: str | None = None
    previous_task_number: int | None = None
    reason: str | None = None
    detail: str | None = None
    # Under ``reason`` not_allowed: the bind policy's finer reason (``BindRefusal``).
    refusal: str | None = None
    # /lang: the language chosen ("chosen") or refused ("rejected").
    language: str | None = None


# --- What to ask Planfix, and what it said ---------------------------------------------------------


class LookUpTask(msgspec.Struct, frozen=True):
    number: int


class CreateTask(msgspec.Struct, frozen=True):
    title: str
    description: str


PlanfixQuestion = LookUpTask | CreateTask


class TaskFound(msgspec.Struct, frozen=True, kw_only=True):
    number: int
    title: str
    created: bool = False


class TaskNotVisible(msgspec.Struct, frozen=True):
    """Not found, or the bridge's Planfix user may not see it: one answer for both."""

    number: int | None


class PlanfixRefused(msgspec.Struct, frozen=True):
    number: int | None
    code: int | None


PlanfixAnswer = TaskFound | TaskNotVisible | PlanfixRefused


# What an older relay shows ("Could not bind this group: <this>."); a newer one words the
# refusal itself (services/relay/to_telegram/notices.py).
REFUSAL_DETAILS = {
    BindRefusal.NOT_ADMIN: N_("only the group's admins can bind it, sorry"),
    BindRefusal.CHAT_NOT_ALLOWED: N_("this group may not bind Planfix tasks; ask the bridge's operator"),
    BindRefusal.NOT_LINKED: N_(
        "your Telegram is not linked to a Planfix employee. Ask your Planfix admin to add your "
        "Telegram to your Planfix profile (Planfix → profile → Telegram), then write /task again"
    ),
    BindRefusal.NOT_AN_EMPLOYEE: N_("only Planfix employees can bind a group to a task"),
    BindRefusal.NOT_ON_THE_TASK: N_(
        "you are not among the task's people in Planfix (assigner, assignees, participants, "
        "auditors); ask one of them to bind it, or to add you to the task"
    ),
    BindRefusal.TASK_ALREADY_BOUND: N_(
        "the task is already bound to another Telegram group; /unbind it there first"
    ),
}


def refused(
    request: BinderRequest,
    refusal: BindRefusal,
    *,
    task_number: int | None = None,
    language: str = DEFAULT_LANGUAGE,
) -> BindOutcome:
    """A bind the policy refuses (``bind_policy.bind_refusal``): ``not_allowed``, with why."""
    return BindOutcome(
        request_key=request_key(request),
        decided="rejected",
        reason=str(BindingRejectionReason.NOT_ALLOWED),
        detail=translator(language).gettext(REFUSAL_DETAILS[refusal]),
        task_number=task_number,
        refusal=str(refusal),
    )


def request_key(request: BinderRequest) -> str:
    match request:
        case BindRequested():
            return telegram_bind_key(request.chat_id, request.message_id)
        case UnbindRequested():
            return telegram_unbind_key(request.chat_id, request.message_id)
        case UnbindGroup():
            return f"ops:{request.event_id}"
        case GroupLanguageRequested():
            return telegram_language_key(request.chat_id, request.message_id)


def planfix_question(
    request: BinderRequest, rules: BindRules, *, language: str | None = None
) -> PlanfixQuestion | None:
    """What Planfix must say before ``decide``; None when the decision needs nothing from it."""
    texts = translator(language or rules.language)
    if not isinstance(request, BindRequested) or _early_rejection(request, rules, texts) is not None:
        return None
    number = _asked_number(request, rules)
    if number is not None:
        return LookUpTask(number)
    assert request.task_title  # _early_rejection refuses a request with neither
    return CreateTask(_shorten(request.task_title, rules.max_task_title), _task_description(request, texts))


def decide(
    request: BinderRequest,
    binding: Binding | None,
    task: PlanfixAnswer | None,
    rules: BindRules,
    *,
    language: str | None = None,
) -> BindOutcome:
    """The outcome of ``request`` for a group bound as ``binding``, Planfix having said ``task``;
    a refusal's ``detail`` is worded in ``language`` (the group's; None: ``rules.language``)."""
    key = request_key(request)
    t = translator(language or rules.language)
    match request:
        case GroupLanguageRequested():
            if refusal := _not_allowed(request, "lang", t, rules):
                return _rejected(key, BindingRejectionReason.NOT_ALLOWED, refusal, language=request.language)
            if request.language not in LANGUAGES:
                detail = t.gettext("the bridge speaks {languages}: write /lang ru or /lang en").format(
                    languages=", ".join(LANGUAGES)
                )
                return _rejected(
                    key, BindingRejectionReason.INVALID_REQUEST, detail, language=request.language
                )
            return BindOutcome(request_key=key, decided="chosen", language=request.language)
        case BindRequested():
            if (rejection := _early_rejection(request, rules, t)) is not None:
                reason, detail = rejection
                return _rejected(key, reason, detail)
            match task:
                case TaskFound(number=number, title=title, created=created):
                    previous = binding.task_number if binding and binding.task_number != number else None
                    return BindOutcome(
                        request_key=key,
                        created_task_number=number if created else None,
                        decided="bound",
                        task_number=number,
                        task_title=title,
                        previous_task_number=previous,
                    )
                case TaskNotVisible(number=number):
                    return _rejected(
                        key,
                        BindingRejectionReason.TASK_NOT_FOUND,
                        t.gettext(
                            "task #{number} was not found in Planfix, "
                            "or the bridge's Planfix user cannot see it"
                        ).format(number=number),
                        task_number=number,
                    )
                case PlanfixRefused(number=number, code=code):
                    return _rejected(
                        key,
                        BindingRejectionReason.PLANFIX_REFUSED,
                        t.gettext("Planfix refused the request (error code {code})").format(code=code),
                        task_number=number,
                    )
                case None:
                    raise ValueError("a bind request is decided after Planfix answered")
        case UnbindRequested():
            if refusal := _not_allowed(request, "unbind", t, rules):
                return _rejected(key, BindingRejectionReason.NOT_ALLOWED, refusal)
            if binding is None:
                detail = (
                    t.gettext("this topic is not bound to a task")
                    if request.thread_id is not None
                    else t.gettext("this group is not bound to a task")
                )
                return _rejected(key, BindingRejectionReason.NOT_BOUND, detail)
            return BindOutcome(request_key=key, decided="unbound", task_number=binding.task_number)
        case UnbindGroup():
            if binding is None or binding.task_number != request.task_number:
                # An operator's request (bridge CLI): answered to the operator, in English.
                now = f"task #{binding.task_number}" if binding else "no task"
                return _rejected(
                    key,
                    BindingRejectionReason.NOT_BOUND,
                    f"the group is not bound to task #{request.task_number} (it is bound to {now})",
                    task_number=request.task_number,
                )
            return BindOutcome(request_key=key, decided="unbound", task_number=binding.task_number)


class _GroupEnvelope(Envelope):
    """The envelope of an announcement, with the group (or forum topic) it is about."""

    chat_id: int
    thread_id: int | None


def _in_group(request: BinderRequest, key: str) -> _GroupEnvelope:
    """An announcement's envelope: after ``request``, in its group, the message id from ``key``."""
    return {**envelope_after(request, key), "chat_id": request.chat_id, "thread_id": request.thread_id}


def announcement(request: BinderRequest, outcome: BindOutcome) -> tuple[Announcement, str, str]:
    """The event ``outcome`` publishes, its subject and its message id (derived from the request)."""
    chat_id = request.chat_id
    if isinstance(request, GroupLanguageRequested):
        if outcome.decided == "chosen" and outcome.language is not None:
            key = derived_key(request, "language-chosen")
            chosen = GroupLanguageChosen(
                **_in_group(request, key),
                language=outcome.language,
                chosen_by=request.requested_by,
            )
            return chosen, subjects.binding_language_chosen(chat_id), key
        key = derived_key(request, "language-rejected")
        language_refused = GroupLanguageRejected(
            **_in_group(request, key),
            language=outcome.language or request.language,
            reason=BindingRejectionReason(outcome.reason or BindingRejectionReason.INVALID_REQUEST),
            detail=outcome.detail or "",
        )
        return language_refused, subjects.binding_language_rejected(chat_id), key
    if isinstance(request, BindRequested):
        if outcome.decided == "bound" and outcome.task_number is not None:
            key = derived_key(request, "bound")
            bound = TaskBound(
                **_in_group(request, key),
                task_number=outcome.task_number,
                task_title=outcome.task_title or "",
                created_task=outcome.created_task_number is not None,
                requested_by=request.requested_by,
                previous_task_number=outcome.previous_task_number,
            )
            return bound, subjects.binding_bound(chat_id), key
        key = derived_key(request, "rejected")
        rejected = BindRejected(
            **_in_group(request, key),
            reason=BindingRejectionReason(outcome.reason or BindingRejectionReason.INVALID_REQUEST),
            detail=outcome.detail or "",
            task_number=outcome.task_number,
            refusal=outcome.refusal,
        )
        return rejected, subjects.binding_rejected(chat_id), key
    if outcome.decided == "unbound" and outcome.task_number is not None:
        key = derived_key(request, "unbound")
        if isinstance(request, UnbindRequested):
            by, why, person = (
                f"telegram:{request.requested_by.id}",
                "/unbind in the group",
                request.requested_by,
            )
        else:
            by, why, person = request.operator, request.reason, None
        unbound = TaskUnbound(
            **_in_group(request, key),
            task_number=outcome.task_number,
            unbound_by=by,
            reason=why,
            requested_by=person,
        )
        return unbound, subjects.binding_unbound(chat_id), key
    key = derived_key(request, "unbind-rejected")
    refused = UnbindRejected(
        **_in_group(request, key),
        reason=BindingRejectionReason(outcome.reason or BindingRejectionReason.NOT_BOUND),
        detail=outcome.detail or "",
    )
    return refused, subjects.binding_unbind_rejected(chat_id), key


# Why someone may not do what they asked, by what they asked: whole sentences, for translators.
_NOT_ADMIN = {
    "bind": N_("only the group's admins can bind it, sorry"),
    "unbind": N_("only the group's admins can unbind it, sorry"),
    "lang": N_("only the group's admins can change its language, sorry"),
}
_ADMIN_UNKNOWN = {
    "bind": N_("Telegram could not tell whether you are an admin of this group; please bind again later"),
    "unbind": N_("Telegram could not tell whether you are an admin of this group; please unbind again later"),
    "lang": N_(
        "Telegram could not tell whether you are an admin of this group; please change the language "
        "again later"
    ),
}


def _not_allowed(
    request: BindRequested | UnbindRequested | GroupLanguageRequested,
    action: str,
    t: Translator,
    rules: BindRules,
) -> str | None:
    """Why this person may not change the binding (or the language), or None when they may;
    ``action``: "bind", "unbind" or "lang"."""
    if rules.everyone_may_bind or request.requester_is_admin:
        return None
    if request.requester_is_admin is None:
        return t.gettext(_ADMIN_UNKNOWN[action])
    return t.gettext(_NOT_ADMIN[action])


def _early_rejection(
    request: BindRequested, rules: BindRules, t: Translator
) -> tuple[BindingRejectionReason, str] | None:
    """A refusal that needs no Planfix: not allowed, a foreign link, or nothing to bind."""
    if refusal := _not_allowed(request, "bind", t, rules):
        return BindingRejectionReason.NOT_ALLOWED, refusal
    if request.task_link is not None:
        link = task_in_link(request.task_link, account_url=rules.account_url)
        if link.refusal is not None or link.number is None:
            return BindingRejectionReason.INVALID_REQUEST, t.gettext(
                LINK_REFUSALS[link.refusal or LinkRefusal.NOT_PLANFIX]
            )
    elif request.task_number is None and not request.task_title:
        return BindingRejectionReason.INVALID_REQUEST, t.gettext(HOW_TO_BIND)
    return None


def _asked_number(request: BindRequested, rules: BindRules) -> int | None:
    if request.task_link is not None:
        return task_in_link(request.task_link, account_url=rules.account_url).number
    return request.task_number


def _rejected(
    key: str,
    reason: BindingRejectionReason,
    detail: str,
    *,
    task_number: int | None = None,
    language: str | None = None,
) -> BindOutcome:
    return BindOutcome(
        request_key=key,
        decided="rejected",
        reason=str(reason),
        detail=detail,
        task_number=task_number,
        language=language,
    )


def _shorten(title: str, limit: int) -> str:
    title = " ".join(title.split())
    return title if len(title) <= limit else title[: limit - 1].rstrip() + "…"


def _task_description(request: BindRequested, t: Translator) -> str:
    group = request.chat_title or str(request.chat_id)
    text = t.gettext("Created from Telegram group «{group}» by {person}.")
    return html.escape(text.format(group=group, person=request.requested_by.display))
