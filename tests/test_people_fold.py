"""The one fold of the PEOPLE stream (``contracts.people``), as a table."""

from __future__ import annotations

from contracts.events import PersonLinked, PersonLinkMethod, PersonUnlinked, TelegramUser
from contracts.people import fold
from tests.support import envelope, person_linked


def linked(telegram_id: int, planfix_id: str, username: str | None = None) -> PersonLinked:
    user = TelegramUser(id=telegram_id, full_name="N", username=username)
    return person_linked(user, planfix_id, how=PersonLinkMethod.LINK_CODE)


def unlinked(telegram_id: int, planfix_id: str) -> PersonUnlinked:
    return PersonUnlinked(
        **envelope(), telegram_user_id=telegram_id, planfix_person_id=planfix_id, why="unlink"
    )


def test_a_linked_person_is_found_by_id_and_by_username_in_any_case() -> None:
    people = fold([linked(5, "user:7", "Olga_S")])
    assert people.get(5).planfix_id == "user:7"  # type: ignore[union-attr]
    assert people.by_username("@olga_s") == people.get(5)


def test_a_relink_replaces_and_an_old_unlink_leaves_the_new_link() -> None:
    people = fold([linked(5, "user:7", "olga"), linked(5, "user:9", "olga2"), unlinked(5, "user:7")])
    assert people.get(5).planfix_id == "user:9"  # type: ignore[union-attr]
    assert people.by_username("olga") is None
    assert people.by_username("olga2") == people.get(5)


def test_an_unlink_forgets_the_person() -> None:
    people = fold([linked(5, "user:7", "olga"), unlinked(5, "user:7")])
    assert (len(people), people.by_username("olga")) == (0, None)
