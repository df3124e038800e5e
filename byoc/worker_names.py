"""Names of worker slots: a role, plus an index when the role has several workers.

A runner with one infer worker names it ``infer``; with two, ``infer-0`` and ``infer-1``. The name
keys the supervisor's table, ``/health``, log lines and requests; the role and index travel in
the worker's own messages (``worker``, ``worker_index``).
"""

from __future__ import annotations


def worker_name(role: str, index: int, count: int) -> str:
    """The name of worker ``index`` of the ``count`` workers of ``role``."""
    return role if count == 1 else f"{role}-{index}"


def worker_role_index(name: str) -> tuple[str, int]:
    """(role, index) of a worker named ``infer`` or ``infer-1``."""
    role, found, index = name.rpartition("-")
    if found and index.isdigit():
        return role, int(index)
    return name, 0
