"""Redeeming a /link code in memory: a Planfix outage writes nothing half-way, a retry links."""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec
import pytest

from bridge_lib import link_codes
from bridge_lib.eventbus import TransientFailure
from bridge_lib.planfix import PersonStatus, PlanfixPerson, PlanfixUnavailable
from contracts import people as people_fold
from contracts.events import Event, PersonLinked, PlanfixCommentAdded, root_envelope
from contracts.events import PlanfixPerson as Author
from contracts.people import People
from services.binder.linking import IssuedCode, Linking

NOW = 1_000_000.0


class Codes:
    def __init__(self, code: IssuedCode) -> None:
        self.by_digest = {code.digest: code}

    async def find(self, digest: str) -> IssuedCode | None:
        return self.by_digest.get(digest)

    async def spend(self, digest: str, comment_id: int) -> bool:
        code = self.by_digest[digest]
        if code.spent_by_comment not in (None, comment_id):
            return False
        self.by_digest[digest] = msgspec.structs.replace(code, spent_by_comment=comment_id)
        return True


class Known:
    def __init__(self) -> None:
        self.people = People()

    def apply(self, event: Any) -> None:
        self.people = people_fold.evolve(self.people, event)

    async def catch_up(self, timeout_s: float = 10.0) -> None:
        return None


class Planfix:
    def __init__(self) -> None:
        self.away = True
        self.deleted: list[int] = []

    async def get_employee(self, person_id: str) -> PlanfixPerson | None:
        if self.away:
            raise PlanfixUnavailable("HTTP 502")
        return PlanfixPerson(id=person_id, name="Lena Orlova", status=PersonStatus.ACTIVE)

    async def delete_comment(self, comment_id: int) -> None:
        self.deleted.append(comment_id)


class Published:
    def __init__(self) -> None:
        self.events: list[Event] = []

    async def publish(self, event: Event, *, subject: str, msg_id: str) -> bool:
        self.events.append(event)
        return True


def test_a_planfix_outage_during_a_link_writes_nothing_and_the_retry_links() -> None:
    code = link_codes.new_code()
    issued = IssuedCode(
        digest=link_codes.digest(code),
        telegram_user_id=11,
        telegram_username=None,
        full_name="Lena",
        language_code=None,
        issued_at=NOW,
        expires_at=NOW + 600,
    )
    codes, known, planfix, published = Codes(issued), Known(), Planfix(), Published()
    linking = Linking(
        codes=codes,  # type: ignore[arg-type]
        known=known,
        requesters=None,  # type: ignore[arg-type]
        planfix=planfix,
        publisher=published,
        our_source_id="0c6b7f0e-2d7a-4f0e-9a56-6a3f1c9b8e11",
        clock=lambda: NOW + 60,
    )
    comment = PlanfixCommentAdded(
        **root_envelope("pf:comment:77", caused_by="test"),
        task_number=5,
        comment_id=77,
        text_html=f"<p>{code}</p>",
        author=Author(id="user:5", name="Lena Orlova"),
    )

    with pytest.raises(TransientFailure):
        asyncio.run(linking.redeem(comment, None))  # type: ignore[arg-type]
    assert published.events == []
    assert codes.by_digest[issued.digest].spent_by_comment is None

    planfix.away = False
    asyncio.run(linking.redeem(comment, None))  # type: ignore[arg-type]

    [linked] = published.events
    assert isinstance(linked, PersonLinked)
    assert linked.planfix_person_id == "user:5"
    assert planfix.deleted == [77]
    asyncio.run(linking.redeem(comment, None))  # type: ignore[arg-type]  # redelivered
    assert len(published.events) == 1
