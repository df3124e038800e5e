"""Exceptions raised by the trickle clients."""

from __future__ import annotations


class TrickleError(Exception):
    """Base class: the stream cannot go on as it was."""


class ChannelClosedError(TrickleError):
    """The channel is gone (404) or was closed (``Lp-Trickle-Closed``): end the stream."""


class PublishError(TrickleError):
    """Too many segments in a row could not be published."""


class SubscribeError(TrickleError):
    """The subscriber gave up after repeated network or server errors."""


class SegmentReadError(TrickleError):
    """A segment's body broke off (network error); the bytes already read are all there is."""


class SegmentTooLargeError(TrickleError):
    """A segment exceeded the reader's size limit."""
