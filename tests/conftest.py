"""Suite-wide guards: the suite may leave nothing of ours in /dev/shm and no runner process.

Hypothesis profiles: "default" (modest example counts, no deadline) and "stress"
(10,000 examples a property), loaded when ``BYOC_STRESS=1`` (``make test-stress``). Property
tests leave ``max_examples`` to the profile.

Only what this test run could have made counts (other runs may share the machine): segments
owned by this process or by a process that has exited, and worker processes that descend from
this process or were orphaned while it ran.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from ipc.shm import list_regions, parse_name, pid_alive

settings.register_profile("default", max_examples=50, deadline=None)
settings.register_profile(
    "stress",
    max_examples=10_000,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.load_profile("stress" if os.environ.get("BYOC_STRESS") == "1" else "default")

PROCESS_TITLE = b"comfystream-byoc:"


def _our_segments() -> set[str]:
    me = os.getpid()
    found = set()
    for name in list_regions():
        parsed = parse_name(name)
        if parsed is not None and (parsed.owner_pid == me or not pid_alive(parsed.owner_pid)):
            found.add(name)
    return found


def _parent_of(pid: int) -> int:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0
    return int(stat.rsplit(")", 1)[1].split()[1])


def _descends_from_us_or_orphaned(pid: int) -> bool:
    me = os.getpid()
    parent = _parent_of(pid)
    if parent == 1:
        return True
    while parent > 1:
        if parent == me:
            return True
        parent = _parent_of(parent)
    return False


def _our_processes() -> set[int]:
    pids = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if cmdline.startswith(PROCESS_TITLE) and _descends_from_us_or_orphaned(int(entry.name)):
            pids.add(int(entry.name))
    return pids


@pytest.fixture(scope="session", autouse=True)
def nothing_left_behind() -> Iterator[None]:
    """Fail the run if the suite leaves shared memory regions or worker processes behind."""
    shm_before = _our_segments()
    procs_before = _our_processes()
    yield
    leaked_shm = _our_segments() - shm_before
    leaked_procs = _our_processes() - procs_before
    assert not leaked_shm, f"shared memory left in /dev/shm: {sorted(leaked_shm)}"
    assert not leaked_procs, f"worker processes left running: {sorted(leaked_procs)}"
