"""What knowing people costs per message (issue 15): Planfix requests per 1,000 messages from 50
people, and the time the relay's author lookup adds to a message.

In-process, with the relay's own ``Authors`` and ``ContactBook``, the real ``PlanfixClient``
against the fake Planfix and a real store (nx-27017): 25 people linked in the PEOPLE fold, 15
employees whose Planfix profile carries their Telegram but never linked, 10 strangers (a contact
each). 1,000 messages are written round-robin, twice: the first thousand (warm-up: each unknown
person costs a lookup once, a stranger a contact) and the second (what a running bridge pays).
The lookup's time is compared with a bare dictionary read in the same run.

    python -m bench.people
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from motor.motor_asyncio import AsyncIOMotorClient

from bridge_lib.planfix import PlanfixClient
from contracts.events import PersonLinkMethod, TelegramUser
from contracts.people import People, Person
from devtools import devstack
from sandbox.fake_planfix import FakePlanfix
from services.relay.to_planfix.authors import Authors, ContactBook

TOKEN = "bench-token"
MESSAGES = 1_000


def cast() -> tuple[People, list[TelegramUser], FakePlanfix]:
    fake = FakePlanfix(token=TOKEN)
    people = People()
    users: list[TelegramUser] = []
    for i in range(50):
        user = TelegramUser(id=9_000_000 + i, full_name=f"Person {i}", username=f"person_{i}")
        users.append(user)
        if i < 25:
            employee = fake.add_employee(f"Linked {i}", telegram_id=user.id)
            people = people.with_person(
                Person(
                    telegram_user_id=user.id,
                    planfix_id=employee,
                    name=f"Linked {i}",
                    how=PersonLinkMethod.PLANFIX_PROFILE,
                )
            )
        elif i < 40:
            fake.add_employee(f"Profile {i}", telegram_id=user.id)
    return people, users, fake


async def run(store_url: str) -> dict[str, float]:
    people, users, fake = cast()
    await fake.start()
    mongo: AsyncIOMotorClient[dict[str, object]] = AsyncIOMotorClient(store_url)
    try:
        async with PlanfixClient(base_url=fake.base_url, token=TOKEN) as planfix:
            authors = Authors(
                people=lambda: people,
                contacts=ContactBook(mongo["bench_people"], planfix),
                recipients=None,
                notify_mentioned=True,
            )
            figures: dict[str, float] = {}
            for round_name in ("warm-up", "warm"):
                before = len(fake.calls)
                spent: list[float] = []
                for n in range(MESSAGES):
                    user = users[n % len(users)]
                    started = time.perf_counter()
                    await authors.owner(user)
                    spent.append(time.perf_counter() - started)
                figures[f"planfix_requests_per_1000_{round_name}"] = len(fake.calls) - before
                figures[f"lookup_p50_us_{round_name}"] = statistics.median(spent) * 1e6
                figures[f"lookup_p99_us_{round_name}"] = sorted(spent)[int(len(spent) * 0.99)] * 1e6
            # The baseline: a dictionary read per message, in this run.
            table = {user.id: user.id for user in users}
            base: list[float] = []
            for n in range(MESSAGES):
                started = time.perf_counter()
                table.get(users[n % len(users)].id)
                base.append(time.perf_counter() - started)
            figures["baseline_dict_p50_us"] = statistics.median(base) * 1e6
            figures["contacts_created"] = len(fake.contacts())
            return figures
    finally:
        mongo.close()
        await fake.stop()


def main() -> None:
    with tempfile.TemporaryDirectory() as work:
        store = devstack.start_nx27017(Path(work) / "store")
        try:
            figures = asyncio.run(run(store.extra["url"]))
        finally:
            store.stop()
    print(
        "people lookup: 50 people (25 linked, 15 employees by profile, 10 strangers), 1,000 messages a round"
    )
    for name, value in figures.items():
        print(f"  {name:<40} {value:,.1f}")


if __name__ == "__main__":
    main()
