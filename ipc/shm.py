"""Our shared-memory regions (POSIX "shared memory segments"; in this project "segment" means a
trickle segment): names, mapping, and sweeping what a dead process left.

Names look like ``cbyoc-<owner pid>-<stream token>-<direction>``, e.g. ``cbyoc-4242-a1b2c3-in``.
The owner pid in the name lets a starting parent remove the regions of a previous parent that was
killed (``sweep(dead_only=True)``), and a parent remove whatever a given process left
(``sweep(owners={pid})``).

Ownership: one process (the parent) creates and unlinks a region; others only map it. The
creator registers the region with ``multiprocessing``'s resource tracker, so if the creator is
killed the tracker unlinks it once every process sharing that tracker has exited. Processes that
attach must *not* register: on Python < 3.13, ``SharedMemory(name)`` registers the region with
the attaching process's tracker, and a process started outside ``multiprocessing`` (own tracker)
would unlink the owner's region when it exits (bpo-39959). Unregistering after attaching is no
fix either: spawned children share their parent's tracker, whose registry is a set, so the child
would drop the owner's registration and the owner's own unlink would later make the tracker
raise ``KeyError``. Attaching therefore maps the region directly with the same primitives
``SharedMemory`` uses (``shm_open`` + ``mmap``), and never talks to the tracker.
"""

from __future__ import annotations

import _posixshmem  # the module multiprocessing.shared_memory is built on (POSIX only)
import errno
import hashlib
import logging
import mmap
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum
from multiprocessing import shared_memory

log = logging.getLogger(__name__)

PREFIX = "cbyoc"
"""Prefix of every region this project creates."""

MAX_NAME_LEN = 64
"""Longest region name accepted (Linux allows 255; short names keep ``ls /dev/shm`` readable)."""

SHM_DIR = "/dev/shm"

_PREFIX_RE = re.compile(r"[a-z0-9]{1,16}")
_NAME_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")
_TOKEN_UNSAFE = re.compile(r"[^A-Za-z0-9_]")
_MAX_PLAIN_TOKEN = 12


class Direction(str, Enum):
    """Which way a stream's frames flow through a ring."""

    IN = "in"  # ingest -> infer
    OUT = "out"  # infer -> egress


@dataclass(frozen=True)
class RegionName:
    """The parts of one of our region names."""

    prefix: str
    owner_pid: int
    token: str
    direction: str


def validate_name(name: str) -> None:
    """Raise ``ValueError`` unless ``name`` is usable as a region name."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"shared memory name must be a non-empty string, got {name!r}")
    if len(name) > MAX_NAME_LEN:
        raise ValueError(
            f"shared memory name {name!r} is {len(name)} characters long; "
            f"the limit is {MAX_NAME_LEN}"
        )
    if not _NAME_RE.fullmatch(name):
        raise ValueError(
            f"shared memory name {name!r} may only contain letters, digits, '_', '.' and '-' "
            "and must start with a letter, digit or '_'"
        )


def validate_prefix(prefix: str) -> None:
    """Raise ``ValueError`` unless ``prefix`` is 1-16 lower-case letters or digits."""
    if not isinstance(prefix, str) or not _PREFIX_RE.fullmatch(prefix):
        raise ValueError(f"region prefix must be 1-16 lower-case letters or digits, got {prefix!r}")


def stream_token(stream_id: str) -> str:
    """A short name-safe token for ``stream_id``.

    Short ids made of letters, digits and ``_`` are kept as they are (readable in ``ls``); any
    other id becomes up to 6 of its safe characters plus 8 hex digits of its hash, so distinct ids
    give distinct tokens.
    """
    if not isinstance(stream_id, str) or not stream_id:
        raise ValueError(f"stream id must be a non-empty string, got {stream_id!r}")
    safe = _TOKEN_UNSAFE.sub("", stream_id)
    if safe == stream_id and len(stream_id) <= _MAX_PLAIN_TOKEN:
        return stream_id
    digest = hashlib.blake2s(stream_id.encode(), digest_size=4).hexdigest()
    return f"{safe[:6]}{digest}"


def ring_name(
    stream_id: str,
    direction: Direction | str,
    *,
    prefix: str = PREFIX,
    owner_pid: int | None = None,
) -> str:
    """The region name of ``stream_id``'s ring in ``direction``, owned by ``owner_pid``.

    ``owner_pid`` defaults to the calling process (the creator).
    """
    validate_prefix(prefix)
    direction = Direction(direction)
    pid = os.getpid() if owner_pid is None else owner_pid
    if isinstance(pid, bool) or not isinstance(pid, int) or pid <= 0:
        raise ValueError(f"owner pid must be a positive integer, got {pid!r}")
    name = f"{prefix}-{pid}-{stream_token(stream_id)}-{direction.value}"
    validate_name(name)
    return name


def parse_name(name: str) -> RegionName | None:
    """Split one of our region names into its parts; ``None`` if it is not one of ours."""
    parts = name.split("-")
    if len(parts) != 4:
        return None
    prefix, pid, token, direction = parts
    if not _PREFIX_RE.fullmatch(prefix) or not pid.isdigit() or not token:
        return None
    if direction not in (d.value for d in Direction) or _TOKEN_UNSAFE.search(token):
        return None
    return RegionName(prefix, int(pid), token, direction)


def list_regions(prefix: str = PREFIX) -> list[str]:
    """Names of the existing regions that are ours and carry ``prefix``, sorted."""
    validate_prefix(prefix)
    try:
        entries = os.listdir(SHM_DIR)
    except FileNotFoundError:
        return []
    found = []
    for entry in entries:
        parsed = parse_name(entry)
        if parsed is not None and parsed.prefix == prefix:
            found.append(entry)
    return sorted(found)


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists and is not a zombie."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, belongs to another user
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            # "pid (comm) state ...": comm may contain spaces and parentheses.
            state = stat.read().rsplit(b")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state not in (b"Z", b"X")


def unlink_region(name: str) -> bool:
    """Unlink region ``name``; ``False`` if it did not exist."""
    validate_name(name)
    try:
        _posixshmem.shm_unlink("/" + name)
    except FileNotFoundError:
        return False
    return True


def sweep(
    prefix: str = PREFIX,
    *,
    owners: Iterable[int] | None = None,
    dead_only: bool = False,
) -> list[str]:
    """Unlink our leftover regions that carry ``prefix``; return the names unlinked.

    ``owners`` limits the sweep to regions whose owner pid is listed (a parent cleaning up after
    a child, or after itself). ``dead_only`` limits it to regions whose owner is no longer
    running (a parent starting after a crash of its predecessor). With neither, every region
    with ``prefix`` goes: use a prefix of your own.
    """
    wanted = None if owners is None else set(owners)
    removed = []
    for name in list_regions(prefix):
        parsed = parse_name(name)
        assert parsed is not None
        if wanted is not None and parsed.owner_pid not in wanted:
            continue
        if dead_only and pid_alive(parsed.owner_pid):
            continue
        if unlink_region(name):
            removed.append(name)
            log.info("unlinked leftover shared memory %s (owner pid %d)", name, parsed.owner_pid)
    return removed


class SharedRegion:
    """A POSIX shared-memory region mapped into this process.

    ``SharedRegion.create`` makes a new region (this process owns it and must ``unlink`` it);
    ``SharedRegion.attach`` maps an existing one without taking ownership. ``buf`` is a writable
    memoryview of the whole region. ``close`` and ``unlink`` may be called any number of times.
    """

    def __init__(self, name: str, mapping: mmap.mmap, owner: shared_memory.SharedMemory | None):
        self.name = name
        self.size = len(mapping)
        self._mmap: mmap.mmap | None = mapping
        self.buf: memoryview = memoryview(mapping)
        self._owner = owner
        self._unlinked = False

    @classmethod
    def create(cls, name: str, size: int) -> SharedRegion:
        """Create region ``name`` of ``size`` bytes (zero-filled, memory reserved up front).

        Raises ``FileExistsError`` if it exists, ``OSError`` (ENOSPC) if ``/dev/shm`` cannot hold
        it: reserving now turns a later SIGBUS on first write into a clear error at creation.
        """
        validate_name(name)
        if isinstance(size, bool) or not isinstance(size, int) or size <= 0:
            raise ValueError(f"region size must be a positive integer, got {size!r}")
        try:
            owner = shared_memory.SharedMemory(name=name, create=True, size=size)
        except FileExistsError:
            raise FileExistsError(
                errno.EEXIST, f"shared memory region {name!r} already exists"
            ) from None
        try:
            fd = getattr(owner, "_fd", -1)
            if fd >= 0:
                try:
                    os.posix_fallocate(fd, 0, size)
                except OSError as exc:
                    if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL):
                        raise OSError(
                            exc.errno,
                            f"cannot reserve {size} bytes for shared memory {name!r}: "
                            f"{os.strerror(exc.errno or 0)}",
                        ) from None
            # SharedMemory's own mapping is closed at once: this class maps the region the same
            # way for creator and attachers, and closes it without SharedMemory.__del__ noise.
            owner.close()
            mapping = _map(name)
        except BaseException:
            owner.close()
            owner.unlink()
            raise
        return cls(name, mapping, owner)

    @classmethod
    def attach(cls, name: str) -> SharedRegion:
        """Map existing region ``name`` without taking ownership (see the module docstring)."""
        validate_name(name)
        return cls(name, _map(name), None)

    @property
    def is_owner(self) -> bool:
        """Whether this process created the region (and is the one to unlink it)."""
        return self._owner is not None

    @property
    def closed(self) -> bool:
        return self._mmap is None

    def close(self) -> None:
        """Unmap the region from this process.

        If numpy arrays over ``buf`` are still alive somewhere, the mapping cannot be closed now;
        it is then left to be unmapped when the last of them is garbage-collected (no dangling
        pointers either way).
        """
        if self._mmap is None:
            return
        mapping, self._mmap = self._mmap, None
        try:
            self.buf.release()
            mapping.close()
        except BufferError:
            log.warning(
                "shared memory %s closed while views of it are alive; it stays mapped until they "
                "are released",
                self.name,
            )

    def unlink(self) -> None:
        """Remove the region's name (owner only); mappings stay valid until closed."""
        if self._owner is None:
            raise PermissionError(f"only the creator of shared memory {self.name!r} unlinks it")
        if self._unlinked:
            return
        self._unlinked = True
        try:
            self._owner.unlink()  # shm_unlink + unregister from the resource tracker
        except FileNotFoundError:
            # Someone swept it already; still drop it from the tracker's registry.
            from multiprocessing import resource_tracker

            resource_tracker.unregister("/" + self.name, "shared_memory")

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"{self.size} bytes"
        return f"<SharedRegion {self.name} {state}{' owner' if self.is_owner else ''}>"


def _map(name: str) -> mmap.mmap:
    try:
        fd = _posixshmem.shm_open("/" + name, os.O_RDWR, mode=0o600)
    except FileNotFoundError:
        raise FileNotFoundError(
            errno.ENOENT, f"no shared memory region named {name!r} (never created or unlinked)"
        ) from None
    try:
        size = os.fstat(fd).st_size
        if size == 0:
            raise ValueError(f"shared memory region {name!r} is empty")
        return mmap.mmap(fd, size)
    finally:
        os.close(fd)
