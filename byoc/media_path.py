"""The seam between a stream's control plane (parent) and its media path (workers).

The parent's ``StreamManager`` owns a stream's session, its control subscription and its events;
it calls a ``MediaPath`` for the media itself:

- ``start(spec)`` when the stream starts, in the background (``/stream/start`` has already been
  answered if it takes longer than the start timeout). Returning means the media path is set up
  and waits for media: the session becomes ``ready``. Raising ``ParamsRejected`` fails the start
  with a 400 when it happens before the answer; any other exception fails the session.
- ``update(stream_id, params)`` for ``/stream/params`` bodies and control-channel messages; raise
  ``ParamsRejected`` to answer 400 (the session keeps running with its old parameters).
- ``stop(stream_id, reason)`` once, whichever way the stream ends; must release everything.
- ``alive(stream_id)`` lets the periodic sweep end sessions whose media path is gone.
- ``close()`` once when the runner stops, after every stream has been stopped.

A media path that needs the workers gets the supervisor from a factory:
``serve(settings, media_factory=lambda supervisor, settings: MyMediaPath(supervisor, settings))``.

Workers report back through ipc messages routed by the parent, whatever the media path:
``StreamState`` (``processing``; ``ended`` when the input went away -> ``stopped``; ``completed``
when a finite input finished; ``failed`` with ``error``), ``StreamStats`` (figures for the status
events) and ``WorkerError`` with a ``stream_id`` (the stream's ``last_error``).

``NoMediaPath`` is the default: no worker is told anything, so a stream is control plane only
(status events, params, endings) until a media path that sends ``StreamStart`` to the workers is
plugged in.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from byoc.settings import Settings
    from byoc.supervisor import Supervisor


class ParamsRejected(ValueError):
    """Stream parameters the media path cannot use; answered as 400."""


class MediaUnavailable(RuntimeError):
    """The media path cannot take a stream now (a worker is starting or restarting); 503, so a
    gateway retries elsewhere."""


@dataclass(frozen=True)
class StreamSpec:
    """What a media path needs to start a stream: its id, channels and initial parameters."""

    stream_id: str
    capability: str
    control_url: str
    events_url: str
    subscribe_url: str | None = None
    publish_url: str | None = None
    data_url: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    source_path: str | None = None
    """An uploaded clip to process (runner API), instead of a live ``subscribe_url``."""
    output_path: str | None = None
    """Where to write the processed clip as MP4 (runner API); the session completes when the
    file is complete."""
    whip: bool = False
    """The input is a WHIP publisher, attached once the stream is admitted."""


class MediaPath(Protocol):
    """The media path of streams (see the module docstring for the contract)."""

    async def start(self, spec: StreamSpec) -> None: ...

    async def update(self, stream_id: str, params: dict[str, Any]) -> None: ...

    async def stop(self, stream_id: str, reason: str) -> None: ...

    def alive(self, stream_id: str) -> bool: ...

    def uses_worker(self, stream_id: str, worker: str) -> bool:
        """Whether the worker named ``worker`` serves a part of the stream (its restart then
        concerns the stream)."""
        ...

    async def close(self) -> None: ...


MediaFactory = Callable[["Supervisor", "Settings"], MediaPath]


class NoMediaPath:
    """No media path: streams run their control plane only and become ``ready`` at once."""

    def __init__(self) -> None:
        self.started: dict[str, StreamSpec] = {}

    async def start(self, spec: StreamSpec) -> None:
        self.started[spec.stream_id] = spec

    async def update(self, stream_id: str, params: dict[str, Any]) -> None:
        return None

    async def stop(self, stream_id: str, reason: str) -> None:
        self.started.pop(stream_id, None)

    def alive(self, stream_id: str) -> bool:
        return True

    def uses_worker(self, stream_id: str, worker: str) -> bool:
        return False

    async def close(self) -> None:
        self.started.clear()
