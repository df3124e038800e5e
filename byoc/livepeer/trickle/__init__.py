"""Trickle client: Livepeer's segmented HTTP streaming protocol, publisher and subscriber side.

Importable by the workers without aiohttp's server or anything of the parent app; the trickle
server lives with the local stand-in (``byoc.livepeer.standin.trickle_server``).
"""

from byoc.livepeer.trickle.errors import (
    ChannelClosedError,
    PublishError,
    SegmentReadError,
    SegmentTooLargeError,
    SubscribeError,
    TrickleError,
)
from byoc.livepeer.trickle.jsonio import (
    JsonLinesPublisher,
    JsonSegmentPublisher,
    publish_json,
    read_json_lines,
    read_json_segments,
)
from byoc.livepeer.trickle.publisher import SegmentWriter, TricklePublisher
from byoc.livepeer.trickle.subscriber import SubscribedSegment, TrickleSubscriber

__all__ = [
    "ChannelClosedError",
    "JsonLinesPublisher",
    "JsonSegmentPublisher",
    "PublishError",
    "SegmentReadError",
    "SegmentTooLargeError",
    "SegmentWriter",
    "SubscribeError",
    "SubscribedSegment",
    "TrickleError",
    "TricklePublisher",
    "TrickleSubscriber",
    "publish_json",
    "read_json_lines",
    "read_json_segments",
]
