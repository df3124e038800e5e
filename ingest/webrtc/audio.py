"""A WHIP peer's audio, decoded by aiortc, encoded again as Opus packets for egress.

Audio skips inference and travels to egress as encoded packets (``StreamAudio``) like a trickle
input's Opus, so the trickle output passes it through and WHEP viewers get it too.
"""

from __future__ import annotations

from typing import cast

import av
from av.audio.codeccontext import AudioCodecContext

OPUS_RATE = 48_000


class OpusPackets:
    """Decoded audio frames in, Opus packets out."""

    def __init__(self, channels: int = 2) -> None:
        self.channels = channels
        ctx = cast(AudioCodecContext, av.CodecContext.create("libopus", "w"))
        ctx.sample_rate = OPUS_RATE
        ctx.layout = "stereo" if channels == 2 else "mono"
        ctx.format = av.AudioFormat("s16")
        ctx.bit_rate = 96_000
        ctx.options = {"application": "lowdelay", "frame_duration": "20"}
        ctx.open()
        self._ctx = ctx
        self._resampler = av.AudioResampler(format="s16", layout=ctx.layout.name, rate=OPUS_RATE)

    def encode(self, frame: av.AudioFrame, pts_90k: int) -> list[tuple[int, bytes]]:
        """Encode one frame whose first sample is at ``pts_90k``; returns ``(pts in 90 kHz,
        packet)`` for every packet the encoder gave out."""
        out: list[tuple[int, bytes]] = []
        pts = pts_90k * OPUS_RATE // 90_000
        for resampled in self._resampler.resample(frame):
            resampled.pts = pts
            pts += resampled.samples
            for packet in self._ctx.encode(resampled):
                packet_pts = int(packet.pts or 0) * 90_000 // OPUS_RATE
                out.append((max(0, packet_pts), bytes(packet)))
        return out
