"""Telegram -> Planfix: group messages become comments in the bound task; edits and reactions
rewrite the comment they became.

The path: ``consumer`` (batches, one active replica) -> ``plan`` (what the batch becomes, pure)
-> ``carrier`` (posts and rewrites, with ``files`` and ``from_telegram_html``) -> ``ledger``.
"""

from __future__ import annotations

from typing import Any
from zoneinfo import ZoneInfo

from bridge_lib.lease import Lease
from services.relay.config import RelaySettings
from services.relay.directory import group_texts
from services.relay.effects import BridgedComments
from services.relay.shared import Shared
from services.relay.to_planfix.authors import Authors, ContactBook
from services.relay.to_planfix.carrier import Carrier
from services.relay.to_planfix.consumer import InboundConsumer
from services.relay.to_planfix.files import FileUploader
from services.relay.to_planfix.ledger import CommentLedger
from services.relay.to_planfix.plan import CombineLimits
from services.relay.to_planfix.previous_layout import adopt_previous_layout
from services.relay.to_planfix.replies import QuotedComments


async def build(settings: RelaySettings, shared: Shared, *, js: Any, lease: Lease) -> InboundConsumer:
    database, directory, planfix = shared.database, shared.directory, shared.planfix
    await adopt_previous_layout(database)
    ledger = CommentLedger(database)
    authors = Authors(
        people=lambda: shared.people.people,
        contacts=ContactBook(database, planfix) if settings.planfix_contacts == "create" else None,
        recipients=settings.planfix_recipients,
        notify_mentioned=settings.planfix_notify_mentioned,
    )
    carrier = Carrier(
        ledger=ledger,
        files=FileUploader(bot=shared.bot, planfix=planfix),
        planfix=planfix,
        publisher=shared.publisher,
        planfix_source_id=settings.planfix_source_id,
        zone=ZoneInfo(settings.relay_timezone),
        authors=authors,
        texts=group_texts(directory, settings.bridge_language),
    )
    return InboundConsumer(
        js,
        directory=directory,
        ledger=ledger,
        carrier=carrier,
        lease=lease,
        limits=CombineLimits(max_messages=settings.relay_combine_max_messages),
        album_window_s=settings.relay_album_window_s,
        bind_wait_s=settings.relay_bind_wait_s,
        quotes=QuotedComments(BridgedComments(database), directory, settings.planfix_web_url),
        concurrency=settings.planfix_concurrency,
        authors=authors,
    )
