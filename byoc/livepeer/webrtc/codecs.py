"""Which codecs an answer keeps, in our order of preference.

aiortc applies ``setCodecPreferences`` only while it reads the remote offer, and compares
codec parameters exactly (a browser's H.264 ``profile-level-id`` would not match), so the codecs
an offer shares with us are ordered here, by MIME type, after the offer was read.
"""

from __future__ import annotations

from aiortc import RTCRtpTransceiver


def order_codecs(transceiver: RTCRtpTransceiver, mime_types: tuple[str, ...]) -> list[str]:
    """Keep the transceiver's negotiated codecs of ``mime_types`` in that order (each with its
    RTX); returns the kept MIME types. Raises ``ValueError`` when none is left."""
    codecs = transceiver._codecs  # negotiated with the offer; aiortc has no public setter
    rtx = [c for c in codecs if c.mimeType.lower() == f"{transceiver.kind}/rtx"]
    kept = []
    for mime in mime_types:
        for codec in codecs:
            if codec.mimeType.lower() == mime.lower():
                kept.append(codec)
                kept += [r for r in rtx if r.parameters.get("apt") == codec.payloadType]
    if not kept:
        offered = ", ".join(sorted({c.mimeType for c in codecs})) or "none"
        wanted = ", ".join(mime_types)
        raise ValueError(f"no supported {transceiver.kind} codec (offered {offered}; {wanted})")
    transceiver._codecs = kept
    return [c.mimeType for c in kept]
