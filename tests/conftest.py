"""Suite-wide guards: nothing of ours may be left in /dev/shm, and no runner process may outlive
the suite."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

SHM_DIR = Path("/dev/shm")
SHM_PREFIX = "cbyoc"


def _our_segments() -> set[str]:
    if not SHM_DIR.is_dir():
        return set()
    return {p.name for p in SHM_DIR.iterdir() if p.name.startswith(SHM_PREFIX)}


def _our_processes() -> set[int]:
    pids = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if cmdline.startswith(b"comfystream-byoc:"):
            pids.add(int(entry.name))
    return pids


@pytest.fixture(scope="session", autouse=True)
def nothing_left_behind() -> Iterator[None]:
    """Fail the run if the suite leaves shared memory segments or worker processes behind."""
    shm_before = _our_segments()
    procs_before = _our_processes()
    yield
    leaked_shm = _our_segments() - shm_before
    leaked_procs = _our_processes() - procs_before
    assert not leaked_shm, f"shared memory left in /dev/shm: {sorted(leaked_shm)}"
    assert not leaked_procs, f"worker processes left running: {sorted(leaked_procs)}"
