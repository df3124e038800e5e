"""Light SDP checks done before an offer reaches a worker, and small SDP rewrites.

The parent never builds a peer connection; it only rejects what no worker could accept (not an
SDP, no media, more than one video or audio track) so a bad request costs no worker round trip.
"""

from __future__ import annotations

from dataclasses import dataclass, field


class SdpError(ValueError):
    """An SDP offer or fragment that cannot be used; ``status`` is the HTTP answer (400/422)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class OfferSummary:
    """What an offer carries: its media sections by kind, and their directions."""

    video: int
    audio: int
    directions: tuple[str, ...]


def _lines(sdp: str) -> list[str]:
    return [line.strip() for line in sdp.replace("\r\n", "\n").split("\n") if line.strip()]


def check_offer(sdp: str, *, role: str) -> OfferSummary:
    """Check an offer; raises ``SdpError`` (400 garbage, 422 unsupported)."""
    lines = _lines(sdp)
    if not lines or lines[0] != "v=0" or not any(line.startswith("o=") for line in lines):
        raise SdpError(400, "body is not an SDP offer (it must start with v=0 and have o=)")
    video = audio = other = 0
    directions: list[str] = []
    for line in lines:
        if line.startswith("m="):
            kind = line[2:].split(" ", 1)[0]
            if kind == "video":
                video += 1
            elif kind == "audio":
                audio += 1
            else:
                other += 1
        elif line in ("a=sendonly", "a=recvonly", "a=sendrecv", "a=inactive"):
            directions.append(line[2:])
    if video + audio == 0:
        raise SdpError(400, "the SDP offer has no audio or video section")
    if video > 1 or audio > 1:
        raise SdpError(422, "at most one video and one audio track per session")
    if role == "whip" and any(d in ("recvonly", "inactive") for d in directions):
        raise SdpError(422, "a WHIP offer must send media (sendonly or sendrecv)")
    if role == "whep" and any(d in ("sendonly", "inactive") for d in directions):
        raise SdpError(422, "a WHEP offer must receive media (recvonly or sendrecv)")
    if other:
        raise SdpError(422, "only audio and video sections are supported")
    return OfferSummary(video=video, audio=audio, directions=tuple(directions))


@dataclass(frozen=True)
class SdpFragment:
    """A trickle-ice-sdpfrag (RFC 8840) body: ICE credentials and candidate lines."""

    ufrag: str = ""
    pwd: str = ""
    candidates: list[str] = field(default_factory=list)
    end_of_candidates: bool = False


def parse_fragment(text: str) -> SdpFragment:
    """Parse a PATCH body; raises ``SdpError(400)`` for something that is not a fragment."""
    ufrag = pwd = ""
    candidates: list[str] = []
    end = False
    recognised = 0
    for line in _lines(text):
        if line.startswith("a=ice-ufrag:"):
            ufrag = line.split(":", 1)[1]
        elif line.startswith("a=ice-pwd:"):
            pwd = line.split(":", 1)[1]
        elif line.startswith("a=candidate:"):
            candidates.append(line[2:])
        elif line == "a=end-of-candidates":
            end = True
        elif not (line.startswith("a=") or line.startswith("m=")):
            raise SdpError(400, f"not a trickle-ice-sdpfrag line: {line[:60]!r}")
        else:
            continue
        recognised += 1
    if not recognised:
        raise SdpError(400, "the fragment has no ICE credentials or candidates")
    return SdpFragment(ufrag=ufrag, pwd=pwd, candidates=candidates, end_of_candidates=end)


def ice_credentials(sdp: str) -> tuple[str, str]:
    """The first ``a=ice-ufrag``/``a=ice-pwd`` of an SDP ("" when absent)."""
    ufrag = pwd = ""
    for line in _lines(sdp):
        if not ufrag and line.startswith("a=ice-ufrag:"):
            ufrag = line.split(":", 1)[1]
        elif not pwd and line.startswith("a=ice-pwd:"):
            pwd = line.split(":", 1)[1]
    return ufrag, pwd


def advertise_public_ip(sdp: str, public_ip: str) -> str:
    """Add, after each host candidate, the same candidate on ``public_ip`` (a 1:1 NAT: the
    public address forwards to the same port)."""
    if not public_ip:
        return sdp
    out: list[str] = []
    for line in sdp.split("\r\n"):
        out.append(line)
        if line.startswith("a=candidate:") and " typ host" in line:
            parts = line.split(" ")
            if len(parts) > 5 and parts[4] != public_ip:
                parts[0] = parts[0] + "p"  # a foundation of its own
                parts[4] = public_ip
                out.append(" ".join(parts))
    return "\r\n".join(out)
