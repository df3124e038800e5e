"""Trickle: Livepeer's segmented HTTP streaming protocol (server, publisher, subscriber)."""

from byoc.livepeer.trickle.channel import Channel, Segment
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
from byoc.livepeer.trickle.server import TrickleServer
from byoc.livepeer.trickle.subscriber import SubscribedSegment, TrickleSubscriber

__all__ = [
    "Channel",
    "ChannelClosedError",
    "JsonLinesPublisher",
    "JsonSegmentPublisher",
    "PublishError",
    "Segment",
    "SegmentReadError",
    "SegmentTooLargeError",
    "SegmentWriter",
    "SubscribeError",
    "SubscribedSegment",
    "TrickleError",
    "TricklePublisher",
    "TrickleServer",
    "TrickleSubscriber",
    "publish_json",
    "read_json_lines",
    "read_json_segments",
]
