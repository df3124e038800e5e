"""Every constant of the trickle protocol, in one place.

Values follow go-livepeer's trickle server (``trickle/trickle_server.go``) so that our server,
publisher and subscriber interoperate with go-livepeer orchestrators and gateways and with
Livepeer's Python clients.
"""

from __future__ import annotations

from typing import Final

# Where go-livepeer mounts the trickle server on an orchestrator.
DEFAULT_PREFIX: Final = "/ai/trickle/"

# Request and response headers.
HEADER_SEQ: Final = "Lp-Trickle-Seq"
HEADER_LATEST: Final = "Lp-Trickle-Latest"
HEADER_CLOSED: Final = "Lp-Trickle-Closed"
HEADER_RESET: Final = "Lp-Trickle-Reset"
HEADER_EXPECT_CONTENT: Final = "Expect-Content"
CLOSED_VALUE: Final = "terminated"

# Special sequence numbers (GET: -1 next, -2 current; POST: -1 = the server's next write).
SEQ_NEXT: Final = -1
SEQ_CURRENT: Final = -2
NEXT_PATH: Final = "next"

# Status codes beyond the usual ones.
STATUS_SEQ_UNAVAILABLE: Final = 470  # channel exists, requested seq evicted or too far ahead

# Server policy.
RING_SIZE: Final = 5  # segments kept per channel
DEFAULT_IDLE_TIMEOUT_S: Final = 300.0  # channels without a new segment for this long are swept
DEFAULT_SWEEP_INTERVAL_S: Final = 60.0
DEFAULT_MAX_SEGMENT_BYTES: Final = 64 * 1024 * 1024  # ours; go-livepeer has no cap
INTERNAL_CHANNEL_PREFIX: Final = "_"  # never swept

# Content types in use on Livepeer channels (compared case-insensitively by nobody: echoed as is).
CONTENT_TYPE_MPEGTS: Final = "video/MP2T"
CONTENT_TYPE_JSON: Final = "application/json"
CONTENT_TYPE_JSONL: Final = "application/jsonl"
CONTENT_TYPE_OCTET: Final = "application/octet-stream"

# Plain-text error bodies, as go-livepeer's http.Error writes them (with the trailing newline).
ERR_STREAM_NOT_FOUND: Final = "Stream not found"
ERR_INVALID_IDX: Final = "Invalid idx"
ERR_INVALID_STREAM: Final = "Invalid stream"
ERR_NONEXISTENT_SEGMENT: Final = "Nonexistent segment"
ERR_SERVER_ERROR: Final = "Server error"
ERR_SEGMENT_TOO_LARGE: Final = "Segment too large"  # ours (413)
ENTRY_NOT_FOUND: Final = "Entry not found"  # 470 / closed body, written without a newline

# Gateway (go-livepeer) conventions on JSON channels.
KEEPALIVE_MESSAGE: Final = {"keep": "alive"}
