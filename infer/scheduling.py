"""The order in which the infer worker serves its streams when it is behind.

Each round of the scheduler takes one frame, the newest, from every stream that has one (older
unread frames are skipped and counted as ``infer_behind``), so a stream that sends more frames
gets no more turns than one that sends fewer: past capacity every stream loses frames at the same
rate. Within a round, streams are served round-robin (the round starts one stream further each
time) in groups that can share an engine call (same workflow, size and pixel format); each
group's results are written as soon as it is done, and a later group of the round re-takes its
streams' newest frames before it runs, so a stream waiting behind a slow group does not then
process a frame that went stale meanwhile.

Nothing here imports torch: the worker passes the grouping key.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from typing import TypeVar

Item = TypeVar("Item")


class RoundRobin:
    """Rotates each round's order by one place, so no stream always goes first."""

    def __init__(self) -> None:
        self._round = 0

    def order(self, items: Sequence[Item]) -> list[Item]:
        """``items`` (in a stable order, e.g. by stream start) rotated for this round."""
        if not items:
            return []
        shift = self._round % len(items)
        self._round += 1
        return [*items[shift:], *items[:shift]]


def groups_in_order(items: Sequence[Item], key: Callable[[Item], Hashable]) -> list[list[Item]]:
    """``items`` grouped by ``key``, groups in the order of their first member."""
    groups: dict[Hashable, list[Item]] = {}
    for item in items:
        groups.setdefault(key(item), []).append(item)
    return list(groups.values())
