"""Which capabilities the runner offers, and which of them are implemented (and registered).

Every name in ``ALL_CAPABILITIES`` is routed; the ones not yet implemented answer 501 and are
never registered with an orchestrator.
"""

from __future__ import annotations

from collections.abc import Iterable

from byoc.settings import ALL_CAPABILITIES

TEXT_REVERSAL = "text-reversal"
COMFYSTREAM_IMAGE = "comfystream-image"
COMFYSTREAM_VIDEO = "comfystream-video"  # live streams (/stream/*) and runner-API video jobs
WHIP_INGEST = "whip-ingest"
WHEP_SUBSCRIBE = "whep-subscribe"

# The stream capability counts as implemented: its /stream/* contract is served by the parent.
IMPLEMENTED: frozenset[str] = frozenset(
    {TEXT_REVERSAL, COMFYSTREAM_IMAGE, COMFYSTREAM_VIDEO, WHIP_INGEST, WHEP_SUBSCRIBE}
)
# Capabilities whose sessions are live streams (registered with the stream capacity).
STREAM_CAPABILITIES: frozenset[str] = frozenset({COMFYSTREAM_VIDEO, WHIP_INGEST, WHEP_SUBSCRIBE})

assert IMPLEMENTED <= set(ALL_CAPABILITIES)


def registrable(requested: Iterable[str]) -> tuple[list[str], list[str]]:
    """Split requested names (empty: all) into (to register, skipped as not implemented)."""
    names = list(requested) or [name for name in ALL_CAPABILITIES if name in IMPLEMENTED]
    chosen = [name for name in names if name in IMPLEMENTED]
    skipped = [name for name in names if name not in IMPLEMENTED]
    return chosen, skipped
