"""Counting what a fault did to a burst: sent, delivered, lost, duplicated, reordered.

Messages are counted by the marker each carries (``<fault>-<way>-g<group>-m<seq>``), read out of
whatever the far side shows, because the relay may combine several messages of a task into one
Planfix comment, and several comments of a group into one Telegram message.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass


def marker(fault: str, way: str, group: int, seq: int) -> str:
    return f"{fault}-{way}-g{group:03d}-m{seq:05d}"


def markers_in(text: str, fault: str, way: str) -> list[tuple[int, int]]:
    """(group, seq) of every marker of this fault and way in ``text``, in reading order."""
    pattern = re.compile(rf"(?<![\w-]){re.escape(fault)}-{way}-g(\d+)-m(\d+)(?![\w-])")
    return [(int(group), int(seq)) for group, seq in pattern.findall(text)]


@dataclass(frozen=True)
class Figures:
    sent: int
    delivered: int
    lost: int
    duplicated: int
    reordered: int

    def line(self, fault: str, way: str) -> str:
        return (
            f"{fault:<22} {way:<18} sent {self.sent:>5}  delivered {self.delivered:>5}  "
            f"lost {self.lost:>4}  duplicated {self.duplicated:>4}  reordered {self.reordered:>4}"
        )


def count(sent: Mapping[int, int], seen: Mapping[int, Iterable[int]]) -> Figures:
    """``sent``: messages written per group (seq 0..n-1); ``seen``: seqs per group as they arrived.

    A message is reordered when it first shows up after a later message of its own group did.
    """
    delivered = duplicated = reordered = 0
    for group, written in sent.items():
        arrivals = [seq for seq in seen.get(group, ()) if 0 <= seq < written]
        first_seen: set[int] = set()
        highest = -1
        for seq in arrivals:
            if seq in first_seen:
                duplicated += 1
                continue
            first_seen.add(seq)
            if seq < highest:
                reordered += 1
            highest = max(highest, seq)
        delivered += len(first_seen)
    total = sum(sent.values())
    return Figures(total, delivered, total - delivered, duplicated, reordered)


def assert_exact(to_planfix: Figures, to_telegram: Figures, *, telegram_in_flight: int = 0) -> None:
    """Nothing lost or reordered either way, nothing posted twice to Planfix; Telegram may show at
    most ``telegram_in_flight`` messages twice (sent, but their record cut by the fault)."""
    figures = f"to Planfix: {to_planfix}; to Telegram: {to_telegram}"
    assert to_planfix.lost == 0, figures
    assert to_telegram.lost == 0, figures
    assert to_planfix.duplicated == 0, f"Planfix must get every message exactly once ({figures})"
    assert to_telegram.duplicated <= telegram_in_flight, figures
    assert to_planfix.reordered == 0, figures
    assert to_telegram.reordered == 0, figures
