"""The live MPEG-TS sender (FFmpeg's libx264 and muxer through PyAV) now lives in
:mod:`byoc.smoke.live_ts`, where ``comfystream-byoc smoke`` uses it; re-exported here."""

from byoc.smoke.live_ts import LiveTsEncoder, TsChunk, TsSegmentWriter

__all__ = ["LiveTsEncoder", "TsChunk", "TsSegmentWriter"]
