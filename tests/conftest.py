"""Suite-wide settings and guards.

Hypothesis profiles: ``default`` (what ``make test`` uses) and ``stress`` (``BYOC_STRESS=1``, set
by ``make test-stress``: many more examples). Neither has a deadline or the ``too_slow`` health
check: both are wall-clock assertions, and no test may fail because the machine is busy.

Guards: the suite may leave nothing of ours in /dev/shm and no runner process. Only what this
test run made counts (other runs may share the machine): segments owned by this process or by a
process that has exited, and worker processes that descend from this process or carry this run's
marker in their environment (an orphan, reparented to init, still inherits it).
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, settings
from PIL import Image

from ipc.shm import list_regions, parse_name, pid_alive

PROCESS_TITLE = b"comfystream-byoc:"
RUN_MARKER_VARIABLE = "BYOC_TEST_RUN"
STRESS_VARIABLE = "BYOC_STRESS"

settings.register_profile("default", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile(
    "stress",
    max_examples=10_000,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile("stress" if os.environ.get(STRESS_VARIABLE) == "1" else "default")
# Runners the tests start as commands get one infer worker on any machine (``auto`` would pick
# from the core count); tests of several infer workers pass their count.
os.environ.setdefault("INFER_WORKERS", "1")

# Every process this run starts inherits the marker. setproctitle would overwrite the environment
# block that /proc/<pid>/environ shows in order to fit a long title; SPT_NOENV keeps it intact
# (titles are then limited to the length of the original command line, which is plenty).
RUN_MARKER = f"{os.getpid()}-{secrets.token_hex(8)}"
os.environ[RUN_MARKER_VARIABLE] = RUN_MARKER
os.environ["SPT_NOENV"] = "1"
_MARKER_ENTRY = f"{RUN_MARKER_VARIABLE}={RUN_MARKER}".encode()


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


def _descends_from_us(pid: int) -> bool:
    me = os.getpid()
    parent = _parent_of(pid)
    while parent > 1:
        if parent == me:
            return True
        parent = _parent_of(parent)
    return False


def _carries_our_marker(pid: int) -> bool:
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return False
    return _MARKER_ENTRY in environ.split(b"\0")


def _our_processes() -> set[int]:
    pids = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        pid = int(entry.name)
        if cmdline.startswith(PROCESS_TITLE) and (
            _descends_from_us(pid) or _carries_our_marker(pid)
        ):
            pids.add(pid)
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


@pytest.fixture(scope="session")
def comfy_engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """The one real-ComfyUI engine of a test run, shared by every ``comfyui`` test. ComfyUI's
    settings and node registry are process-global: a second engine in the same process could
    neither take another workspace nor tell our fill-in nodes from ComfyUI's own. Its workspace
    holds the input image the LoadImage tests read."""
    import comfy  # noqa: F401  - in .venv-comfyui a failed import is a failure, not a skip

    from infer.engine import select_engine
    from infer.engine.comfyui import ComfyUIEngine

    workspace = tmp_path_factory.mktemp("comfy-workspace")
    (workspace / "input").mkdir()
    Image.fromarray(np.full((8, 12, 3), (10, 200, 30), np.uint8)).save(
        workspace / "input" / "bg.png"
    )
    engine = select_engine("auto", workspace, device="cpu")
    assert isinstance(engine, ComfyUIEngine)
    yield engine
    engine.close()
