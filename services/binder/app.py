"""The binder assembled: store, Planfix and publisher built once and handed to the handlers."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, get_args

import msgspec
import structlog
from faststream.nats import NatsRouter
from faststream.nats.annotations import NatsMessage

from bridge_lib import link_codes
from bridge_lib.cancel import cancelled
from bridge_lib.eventbus import (
    EventPublisher,
    Publisher,
    consume_durably,
    ensure_streams,
    start_subscribers,
    undecoded,
)
from bridge_lib.health import consumer_ref, mongo_ping
from bridge_lib.ordered_batches import Handlers as BatchHandlers
from bridge_lib.ordered_batches import OrderedBatches
from bridge_lib.people_directory import PeopleDirectory
from bridge_lib.planfix import PlanfixClient
from bridge_lib.planfix_setup import checked_planfix_client
from bridge_lib.retention import RECORDED_AT, start_retention
from bridge_lib.runtime import broker_and_health, wait_for_stop_signal
from bridge_lib.store import store_client
from contracts import subjects
from contracts.events import (
    AdmitGroup,
    AnswerPrivateCommand,
    AuditBindings,
    Event,
    PlanfixCommentAdded,
    PlanfixTaskStateChanged,
    RebuildBindingStore,
    TaskCommandRequested,
    TelegramGroupEvent,
)
from contracts.subjects import (
    BINDER_BIND_REQUESTS,
    BINDER_CLOSED_TASKS,
    BINDER_GROUP_CHANGES,
    BINDER_LINK_CODES,
    BINDER_TASK_COMMANDS,
)
from services.binder.admission import Admission
from services.binder.audit import BindingAudit
from services.binder.config import BinderSettings
from services.binder.decide import BinderRequest, BindRules
from services.binder.handlers import BindAccess, Binder, GroupLife, StoreRebuilder
from services.binder.linking import LinkCodes, Linking
from services.binder.people import Known, Requesters
from services.binder.people_refresh import PeopleRefresh
from services.binder.rebuild import bindings_in_stream
from services.binder.store import BindingStore
from services.binder.task_commands import ClosedTasks, TaskCommands
from services.binder.task_notices import TaskNotices

log = structlog.get_logger("binder")


def bindings_router(binder: Binder, group_life: GroupLife, rebuilder: StoreRebuilder) -> NatsRouter:
    """The subscribers that decide the bindings: requests, the groups' life, and the operator's
    rebuild of the store."""
    binder_router = NatsRouter()
    consume_durably(binder_router, BINDER_BIND_REQUESTS, get_args(BinderRequest), binder.handle)
    consume_durably(binder_router, BINDER_GROUP_CHANGES, get_args(TelegramGroupEvent), group_life.handle)
    answer_requests(binder_router, subjects.BINDER_REBUILD_STORE, RebuildBindingStore, rebuilder.handle)
    return binder_router


C = TypeVar("C", bound=Event)


def answer_requests(
    nats_router: NatsRouter, subject: str, command_type: type[C], handler: Callable[[C], Awaitable[Event]]
) -> None:
    """Answer each request on ``subject`` (one binder replica each: a queue group) with the
    handler's event."""

    async def on_request(msg: NatsMessage) -> bytes:
        return msgspec.json.encode(await handler(msgspec.json.decode(msg.body, type=command_type)))

    on_request.__name__ = f"on_{subject.rsplit('.', 1)[-1]}"
    nats_router.subscriber(subject, queue="binder", decoder=undecoded, include_in_schema=False)(on_request)


def build(
    settings: BinderSettings,
    *,
    store: BindingStore,
    planfix: PlanfixClient,
    publisher: Publisher,
    js: Any,
    people: Known,
    codes: LinkCodes,
) -> tuple[NatsRouter, OrderedBatches[PlanfixCommentAdded]]:
    """The binder's handlers, each with its collaborators, behind its subscribers, and the
    reader of /link codes in comments (run beside them); ``people`` is the PEOPLE fold, started
    (caught up) before the subscribers are."""
    rules = BindRules(
        account_url=settings.planfix_base_url,
        max_task_title=settings.max_task_title,
        everyone_may_bind=settings.everyone_may_bind,
        language=settings.bridge_language,
    )
    access = BindAccess(
        policy=settings.bind_policy,
        allowed_chats=settings.allowed_chats,
        groups_per_task=settings.groups_per_task,
    )
    requesters = Requesters(known=people, planfix=planfix, publisher=publisher)
    linking = Linking(
        codes=codes,
        known=people,
        requesters=requesters,
        planfix=planfix,
        publisher=publisher,
        our_source_id=settings.planfix_source_id,
    )
    binder = Binder(
        store=store,
        planfix=planfix,
        publisher=publisher,
        rules=rules,
        access=access,
        requesters=requesters,
        notices=TaskNotices(store=store, planfix=planfix, source_id=settings.planfix_source_id),
    )
    rebuilder = StoreRebuilder(store=store, read_stream=lambda: bindings_in_stream(js))
    binder_router = bindings_router(binder, GroupLife(store=store, publisher=publisher), rebuilder)
    task_commands = TaskCommands(
        store=store,
        planfix=planfix,
        publisher=publisher,
        requesters=requesters,
        known=people,
        policy=settings.bind_policy,
    )
    closed_tasks = ClosedTasks(store=store, publisher=publisher, enabled=settings.unbind_closed_tasks)

    code_reader = OrderedBatches(
        js,
        BINDER_LINK_CODES,
        PlanfixCommentAdded,
        BatchHandlers(batch=linking.redeem_all, one=linking.redeem),
        lease=None,
        wanted=link_codes.may_hold_code,
        linger_s=LINK_CODE_READER_LINGER_S,
    )
    consume_durably(binder_router, BINDER_TASK_COMMANDS, TaskCommandRequested, task_commands.handle)
    consume_durably(binder_router, BINDER_CLOSED_TASKS, PlanfixTaskStateChanged, closed_tasks.handle)

    # NATS requests, not streams' messages (left out of the AsyncAPI document of the streams):
    # from the gateway (a private command's answer may hold a /link code: never stored) and the CLI.
    audit = BindingAudit(store=store, known=people, planfix=planfix, access=access)
    admission = Admission(store=store, requesters=requesters, access=access)
    answer_requests(binder_router, subjects.BINDER_PRIVATE_COMMAND, AnswerPrivateCommand, linking.answer)
    answer_requests(binder_router, subjects.BINDER_ADMIT_GROUP, AdmitGroup, admission.handle)
    answer_requests(binder_router, subjects.BINDER_AUDIT_BINDINGS, AuditBindings, audit.handle)
    return binder_router, code_reader


# A link code is redeemed a quarter of a second later at most, and the binder reads a busy
# task->group stream in a few fetches a second instead of one per comment.
LINK_CODE_READER_LINGER_S = 0.25

# The binder's decision records (collection -> date field), deleted after RETENTION_DAYS
# (bridge_lib.retention); bindings and group titles are state, kept.
RECORD_COLLECTIONS = {"bind_requests": RECORDED_AT, "group_changes": RECORDED_AT, "task_notices": RECORDED_AT}


async def run(settings: BinderSettings) -> None:
    mongo = store_client(settings.mongodb_url)
    store = BindingStore(mongo[settings.mongodb_database])
    await store.create_indexes()
    codes = LinkCodes(mongo[settings.mongodb_database])
    await codes.create_indexes()
    database = mongo[settings.mongodb_database]
    retention = await start_retention(database, RECORD_COLLECTIONS, settings)
    broker, health = await broker_and_health(
        "binder",
        settings,
        checks={"mongodb": mongo_ping(mongo)},
        extra_consumers=[consumer_ref(BINDER_LINK_CODES)],
    )
    await broker.connect()
    await ensure_streams(
        broker, replicas=settings.nats_stream_replicas, timeout_s=settings.nats_startup_timeout_s
    )
    js = broker.connection.jetstream()
    planfix = await checked_planfix_client(settings, js, settings)
    if planfix is None:
        raise SystemExit(2)
    # Who people are, caught up before the first request is decided.
    people = PeopleDirectory()
    await people.start(js)
    binder_router, code_reader = build(
        settings,
        store=store,
        planfix=planfix,
        publisher=EventPublisher(broker),
        js=js,
        people=people,
        codes=codes,
    )
    broker.include_router(binder_router)
    await start_subscribers(broker, timeout_s=settings.nats_startup_timeout_s)
    reading_codes = asyncio.create_task(code_reader.run(), name="link-codes")
    refreshing = None
    if settings.people_refresh_h > 0:
        refresh = PeopleRefresh(known=people, planfix=planfix, publisher=EventPublisher(broker))
        refreshing = asyncio.create_task(refresh.forever(settings.people_refresh_h * 3600), name="people")
    log.info("binder_started")
    try:
        await wait_for_stop_signal()
    finally:
        log.info("binder_stopping")
        retention.cancel()
        await code_reader.stop(reading_codes, grace_s=1.0)
        await cancelled(refreshing)
        await people.stop()
        await broker.stop()
        await health.stop()
        await planfix.aclose()
        mongo.close()
