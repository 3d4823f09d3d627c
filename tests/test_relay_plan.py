"""What a batch of Telegram activity becomes in Planfix (``plan_batch``): a table of batches, the
bindings and the ledger in, the steps out. No NATS, no store, no fakes."""

from __future__ import annotations

from collections.abc import Mapping

from contracts.events import (
    TelegramMessageEdited,
    TelegramMessageReceived,
    TelegramReaction,
    TelegramReactionChanged,
    TelegramUser,
    event_id_for,
    telegram_message_key,
    utc_now,
)
from services.relay.to_planfix.plan import (
    AddToAlbum,
    CombineLimits,
    Group,
    InboundEvent,
    Post,
    Resume,
    Rewrite,
    Skip,
    Step,
    album_key,
    plan_batch,
    replan,
)
from tests.support import envelope, named_cases

ANNA = TelegramUser(id=1, full_name="Anna")
BORIS = TelegramUser(id=2, full_name="Boris")
CLARA = TelegramUser(id=3, full_name="Clara")
A, B, UNBOUND = -100001, -100002, -100009
TASK_A, TASK_B = 11, 22
BINDINGS: Mapping[Group, int | None] = {(A, None): TASK_A, (B, None): TASK_B, (UNBOUND, None): None}


def msg(
    chat_id: int, message_id: int, text: str = "", album: str | None = None, by: TelegramUser = ANNA
) -> TelegramMessageReceived:
    return TelegramMessageReceived(
        **envelope(event_id_for(telegram_message_key(chat_id, message_id))),
        chat_id=chat_id,
        message_id=message_id,
        sender=by,
        text=text or f"m{message_id}",
        sent_at=utc_now(),
        media_group_id=album,
    )


def edit(chat_id: int, message_id: int) -> TelegramMessageEdited:
    return TelegramMessageEdited(
        **envelope(f"edit-{chat_id}-{message_id}"),
        chat_id=chat_id,
        message_id=message_id,
        sender=ANNA,
        text="new",
        edited_at=utc_now(),
    )


def reaction(chat_id: int, message_id: int) -> TelegramReactionChanged:
    return TelegramReactionChanged(
        **envelope(f"reaction-{chat_id}-{message_id}"),
        chat_id=chat_id,
        message_id=message_id,
        actor=ANNA,
        reactions=[TelegramReaction(emoji="👍")],
        changed_at=utc_now(),
    )


def key(chat_id: int, message_id: int) -> str:
    return telegram_message_key(chat_id, message_id)


def shape(step: Step) -> tuple[object, ...]:
    """A step as (kind, task or target, message ids): what a table row can say at a glance."""
    ids = tuple(event.message_id for event in step.events)
    match step:
        case Post(task_number=task):
            return ("post", task, ids)
        case Resume(run_key=run_key):
            return ("resume", run_key, ids)
        case AddToAlbum(album_key=album):
            return ("album", album, ids)
        case Rewrite():
            return ("rewrite", None, ids)
        case Skip(why=why):
            return ("skip", why, ids)
    raise AssertionError(step)


CASES: list[tuple[str, list[InboundEvent], dict[str, str], CombineLimits, list[list[tuple[object, ...]]]]] = [
    (
        "a backlog of one group is one comment",
        [msg(A, 1), msg(A, 2), msg(A, 3)],
        {},
        CombineLimits(),
        [[("post", TASK_A, (1, 2, 3))]],
    ),
    (
        "two groups: one chain per task, in the order tasks first appear",
        [msg(B, 1), msg(A, 1), msg(B, 2)],
        {},
        CombineLimits(),
        [[("post", TASK_B, (1, 2))], [("post", TASK_A, (1,))]],
    ),
    (
        "a comment holds at most max_messages",
        [msg(A, n) for n in range(1, 6)],
        {},
        CombineLimits(max_messages=2),
        [[("post", TASK_A, (1, 2)), ("post", TASK_A, (3, 4)), ("post", TASK_A, (5,))]],
    ),
    (
        "a comment holds at most max_chars (300 of overhead per message)",
        [msg(A, 1, "x" * 400), msg(A, 2, "y" * 400), msg(A, 3, "z")],
        {},
        CombineLimits(max_chars=1500),
        [[("post", TASK_A, (1, 2)), ("post", TASK_A, (3,))]],
    ),
    (
        "an album is never cut in two: a full comment still takes its last parts",
        [msg(A, 1), msg(A, 2, album="g"), msg(A, 3, album="g"), msg(A, 4)],
        {},
        CombineLimits(max_messages=2),
        [[("post", TASK_A, (1, 2, 3)), ("post", TASK_A, (4,))]],
    ),
    (
        "messages the ledger holds are finished as planned, the rest posted after them",
        [msg(A, 1), msg(A, 2), msg(A, 3)],
        {key(A, 2): key(A, 1)},
        CombineLimits(),
        [[("resume", key(A, 1), (2,)), ("post", TASK_A, (1, 3))]],
    ),
    (
        "a late album part goes to the album's comment",
        [msg(A, 7, album="g")],
        {album_key(A, "g"): key(A, 5)},
        CombineLimits(),
        [[("album", album_key(A, "g"), (7,))]],
    ),
    (
        "an album whose comment an earlier chunk of this batch posts: its later parts join it",
        [msg(A, 1, album="g"), msg(A, 2), msg(A, 3, album="g")],
        {},
        CombineLimits(max_messages=2),
        [[("post", TASK_A, (1, 2)), ("album", album_key(A, "g"), (3,))]],
    ),
]


@named_cases(("events", "ledger", "limits", "chains"), CASES)
def test_a_batch_becomes_one_chain_of_steps_per_task(
    events: list[InboundEvent],
    ledger: dict[str, str],
    limits: CombineLimits,
    chains: list[list[tuple[object, ...]]],
) -> None:
    plan = plan_batch(events, BINDINGS, ledger, limits=limits)

    assert [[shape(step) for step in chain] for chain in plan.chains] == chains
    assert plan.skipped == ()
    assert plan.rewrite is None


def test_messages_of_an_unbound_group_and_edits_of_messages_never_carried_are_skipped() -> None:
    plan = plan_batch([msg(UNBOUND, 1), msg(A, 1), edit(A, 99), reaction(UNBOUND, 1)], BINDINGS, {})

    assert [shape(step) for step in plan.skipped] == [
        ("skip", "unbound group", (1,)),
        ("skip", "message never carried", (99, 1)),
    ]
    assert [[shape(step) for step in chain] for chain in plan.chains] == [[("post", TASK_A, (1,))]]


def test_edits_and_reactions_come_last_for_messages_carried_before_or_in_this_batch() -> None:
    plan = plan_batch(
        [edit(A, 1), msg(A, 2), reaction(A, 2), edit(B, 1)],
        BINDINGS,
        {key(A, 1): key(A, 1)},
    )

    assert plan.rewrite is not None
    assert shape(plan.rewrite) == ("rewrite", None, (1, 2))
    assert [shape(step) for step in plan.skipped] == [("skip", "message never carried", (1,))]
    assert [shape(step) for step in plan.steps][-1] == ("rewrite", None, (1, 2))


def test_an_operators_forced_replay_posts_new_comments_whatever_the_ledger_says() -> None:
    events = [msg(A, 1), msg(A, 2, album="g")]
    ledger = {key(A, 1): key(A, 1), album_key(A, "g"): key(A, 1)}

    plan = plan_batch(events, BINDINGS, ledger, forced=True)

    assert [[shape(step) for step in chain] for chain in plan.chains] == [[("post", TASK_A, (1, 2))]]


def test_a_post_decided_again_finds_messages_an_earlier_step_carried_meanwhile() -> None:
    [post] = plan_batch([msg(A, 3), msg(A, 4, album="g"), msg(A, 5)], BINDINGS, {}).chains[0]
    assert isinstance(post, Post)
    # An earlier step finished an intent (left by a crash) that held message 3 and album g.
    now = {key(A, 3): key(A, 1), album_key(A, "g"): key(A, 1)}

    assert replan(post, {}) == (post,)
    assert [shape(step) for step in replan(post, now)] == [
        ("resume", key(A, 1), (3,)),
        ("album", album_key(A, "g"), (4,)),
        ("post", TASK_A, (5,)),
    ]


# Comments written as their authors: (name, batch, owners by sender id, the most messages
# a comment holds, chains).
OwnerCase = tuple[str, list[InboundEvent], dict[int, str | None], int, list[list[tuple[object, ...]]]]
OWNER_CASES: list[OwnerCase] = [
    (
        "owners in use: one comment per author run",
        [msg(A, 1), msg(A, 2, by=BORIS), msg(A, 3, by=BORIS), msg(A, 4)],
        {1: "user:5", 2: "contact:9"},
        50,
        [[("post", TASK_A, (1,)), ("post", TASK_A, (2, 3)), ("post", TASK_A, (4,))]],
    ),
    (
        "a linked author between robot-written strangers splits them",
        [msg(A, 1, by=BORIS), msg(A, 2), msg(A, 3, by=CLARA), msg(A, 4, by=BORIS)],
        {1: "user:5", 2: None, 3: None},
        50,
        [[("post", TASK_A, (1,)), ("post", TASK_A, (2,)), ("post", TASK_A, (3, 4))]],
    ),
    (
        "PLANFIX_CONTACTS=none and nobody linked: strangers combine as before",
        [msg(A, 1), msg(A, 2, by=BORIS), msg(A, 3, by=CLARA)],
        {1: None, 2: None, 3: None},
        50,
        [[("post", TASK_A, (1, 2, 3))]],
    ),
    (
        "no owners at all (refused by Planfix lately): combined as before",
        [msg(A, 1), msg(A, 2, by=BORIS)],
        {},
        50,
        [[("post", TASK_A, (1, 2))]],
    ),
    (
        "two tasks: each chain split by its own authors",
        [msg(A, 1), msg(B, 1, by=BORIS), msg(A, 2, by=BORIS), msg(B, 2, by=BORIS)],
        {1: "user:5", 2: "tg:2"},
        50,
        [[("post", TASK_A, (1,)), ("post", TASK_A, (2,))], [("post", TASK_B, (1, 2))]],
    ),
    (
        "an author run still holds at most max_messages",
        [msg(A, 1), msg(A, 2), msg(A, 3), msg(A, 4, by=BORIS)],
        {1: "user:5", 2: "user:6"},
        2,
        [[("post", TASK_A, (1, 2)), ("post", TASK_A, (3,)), ("post", TASK_A, (4,))]],
    ),
]


@named_cases(("events", "owners", "max_messages", "chains"), OWNER_CASES)
def test_with_owners_only_consecutive_messages_of_one_owner_share_a_comment(
    events: list[InboundEvent],
    owners: dict[int, str | None],
    max_messages: int,
    chains: list[list[tuple[object, ...]]],
) -> None:
    plan = plan_batch(events, BINDINGS, {}, limits=CombineLimits(max_messages=max_messages), owners=owners)

    assert [[shape(step) for step in chain] for chain in plan.chains] == chains
