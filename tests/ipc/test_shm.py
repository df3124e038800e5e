"""SharedRegion names, mapping without ownership, and sweeping what dead processes left."""

from __future__ import annotations

import logging
import os
import secrets
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator

import numpy as np
import pytest

from ipc.shm import (
    MAX_NAME_LEN,
    Direction,
    RegionName,
    SharedRegion,
    list_regions,
    parse_name,
    pid_alive,
    ring_name,
    stream_token,
    sweep,
    validate_name,
    validate_prefix,
)


@pytest.fixture
def prefix() -> Iterator[str]:
    value = "t" + secrets.token_hex(4)
    yield value
    assert sweep(value) == [], "test left shared memory behind"


@pytest.fixture
def segments() -> Iterator[Callable[[str, int], SharedRegion]]:
    """Create segments owned by the test; closed and unlinked at teardown."""
    made: list[SharedRegion] = []

    def create(name: str, size: int = 4096) -> SharedRegion:
        segment = SharedRegion.create(name, size)
        made.append(segment)
        return segment

    yield create
    for segment in made:
        segment.close()
        segment.unlink()


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_ring_names() -> None:
    assert ring_name("abc", "in", owner_pid=42) == "cbyoc-42-abc-in"
    assert ring_name("abc", Direction.OUT, prefix="x1") == f"x1-{os.getpid()}-abc-out"
    assert parse_name("cbyoc-42-abc-in") == RegionName("cbyoc", 42, "abc", "in")
    with pytest.raises(ValueError, match="'sideways' is not a valid Direction"):
        ring_name("abc", "sideways")
    with pytest.raises(ValueError, match="owner pid must be a positive integer"):
        ring_name("abc", "in", owner_pid=0)
    with pytest.raises(ValueError, match="region prefix must be 1-16 lower-case"):
        ring_name("abc", "in", prefix="Bad-Prefix")
    with pytest.raises(ValueError, match="stream id must be a non-empty string"):
        ring_name("", "in")


def test_stream_tokens_are_short_safe_and_distinct() -> None:
    assert stream_token("cam_01") == "cam_01"
    long_ids = ["x" * 200, "x" * 201, "live/stream-1", "live/stream-2", "Ω" * 10]
    tokens = [stream_token(s) for s in long_ids]
    assert len(set(tokens)) == len(tokens)
    for token in tokens:
        assert len(token) <= 14 and token.isascii() and "-" not in token and "/" not in token
    assert stream_token("live/stream-1").startswith("livest")
    # Whatever the id, the name fits comfortably and parses back.
    name = ring_name("a" * 500, "out", owner_pid=4194304)
    assert len(name) <= 40
    assert parse_name(name) == RegionName("cbyoc", 4194304, stream_token("a" * 500), "out")


@pytest.mark.parametrize(
    "name",
    ["cbyoc-42-abc", "cbyoc-x-abc-in", "cbyoc-42-abc-up", "cbyoc-42-a.b-in", "CB-42-abc-in", "x"],
)
def test_foreign_names_are_not_ours(name: str) -> None:
    assert parse_name(name) is None


def test_name_validation() -> None:
    validate_name("a" * MAX_NAME_LEN)
    with pytest.raises(ValueError, match=f"is {MAX_NAME_LEN + 1} characters long; the limit"):
        validate_name("a" * (MAX_NAME_LEN + 1))
    for bad in ("", "a/b", "-lead", "sp ace", ".hidden"):
        with pytest.raises(ValueError, match="shared memory name"):
            validate_name(bad)
    with pytest.raises(ValueError, match="prefix"):
        validate_prefix("a" * 17)


def test_create_attach_close_unlink(prefix: str) -> None:
    name = ring_name("seg", "in", prefix=prefix)
    owner = SharedRegion.create(name, 10000)
    assert owner.is_owner and owner.size == 10000
    with pytest.raises(FileExistsError, match="already exists"):
        SharedRegion.create(name, 4096)
    other = SharedRegion.attach(name)
    assert not other.is_owner and other.size == 10000
    owner.buf[123] = 45
    assert other.buf[123] == 45
    with pytest.raises(PermissionError, match="only the creator"):
        other.unlink()
    other.close()
    other.close()
    assert other.closed
    owner.unlink()
    owner.unlink()
    assert list_regions(prefix) == []
    assert owner.buf[123] == 45  # the mapping outlives the name
    owner.close()
    with pytest.raises(FileNotFoundError, match="no shared memory region named"):
        SharedRegion.attach(name)
    with pytest.raises(ValueError, match="size must be a positive integer"):
        SharedRegion.create(name, 0)


def test_attaching_process_does_not_unlink_at_exit(
    prefix: str, segments: Callable[[str, int], SharedRegion]
) -> None:
    """A process outside multiprocessing attaches and exits; the owner's segment survives.

    (``SharedMemory(name)`` on Python < 3.13 would register it with that process's own resource
    tracker, which unlinks it when the process exits.)
    """
    segment = segments(ring_name("keep", "in", prefix=prefix), 4096)
    code = (
        "import sys; from ipc.shm import SharedRegion\n"
        "s = SharedRegion.attach(sys.argv[1]); s.buf[0] = 7; s.close()\n"
    )
    subprocess.run([sys.executable, "-c", code, segment.name], check=True, timeout=60)
    assert list_regions(prefix) == [segment.name]
    assert segment.buf[0] == 7


def test_close_with_a_live_view_defers_the_unmap(
    prefix: str, segments: Callable[[str, int], SharedRegion], caplog: pytest.LogCaptureFixture
) -> None:
    segment = segments(ring_name("view", "in", prefix=prefix), 4096)
    view = np.frombuffer(segment.buf, dtype=np.uint8)
    view[:4] = 9
    with caplog.at_level(logging.WARNING, logger="ipc.shm"):
        segment.close()
    assert "closed while views of it are alive" in caplog.text
    assert segment.closed
    assert view[:4].tolist() == [9, 9, 9, 9]  # still mapped: no dangling pointer
    del view


def test_pid_alive() -> None:
    assert pid_alive(os.getpid())
    assert not pid_alive(dead_pid())
    zombie = subprocess.Popen(["sleep", "30"])
    try:
        assert pid_alive(zombie.pid)
        os.kill(zombie.pid, signal.SIGKILL)
        # Killed but not reaped yet: a zombie, which owns nothing any more.
        for _ in range(200):
            if not pid_alive(zombie.pid):
                break
            subprocess.run(["sleep", "0.01"], check=True)
        assert not pid_alive(zombie.pid)
    finally:
        zombie.wait()


def test_sweep_by_owner_and_dead_owner(
    prefix: str, segments: Callable[[str, int], SharedRegion]
) -> None:
    gone = dead_pid()
    mine = [segments(ring_name(s, "in", prefix=prefix), 4096).name for s in ("a", "b")]
    orphans = [
        segments(ring_name(s, d, prefix=prefix, owner_pid=gone), 4096).name
        for s, d in (("c", "in"), ("c", "out"))
    ]
    foreign = segments(f"{prefix}-notours", 4096).name
    other_prefix = segments(ring_name("z", "in", prefix=prefix + "x"), 4096).name

    assert list_regions(prefix) == sorted(mine + orphans)
    assert sweep(prefix, dead_only=True) == sorted(orphans)
    assert sweep(prefix, owners={gone}) == []
    assert sweep(prefix, owners={os.getpid()}) == sorted(mine)
    assert list_regions(prefix) == []
    # Names that are not ours, or carry another prefix, are never touched.
    assert os.path.exists(f"/dev/shm/{foreign}") and os.path.exists(f"/dev/shm/{other_prefix}")
