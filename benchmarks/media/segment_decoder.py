"""The viewer's MPEG-TS segment decoder now lives in :mod:`byoc.smoke.segment_decoder`, where
``comfystream-byoc smoke`` uses it; re-exported here."""

from byoc.smoke.segment_decoder import AudioDecoder, SegmentStreamDecoder

__all__ = ["AudioDecoder", "SegmentStreamDecoder"]
