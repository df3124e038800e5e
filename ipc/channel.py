"""A duplex control channel: length-framed msgpack messages over a stream socket, from asyncio.

Frame = 4-byte big-endian length + one encoded ``Message``. A frame that does not decode (an
unknown type, a field of the wrong type, garbage) is logged and skipped: the framing stays
intact, so one bad message never takes the receiver down.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import struct

import msgspec

from ipc.messages import Message, decode, encode

log = logging.getLogger(__name__)

_LENGTH = struct.Struct(">I")
MAX_FRAME_BYTES = 64 * 1024 * 1024


class ChannelClosed(ConnectionError):
    """The peer closed the channel (or it was closed locally)."""


class ControlChannel:
    """One end of a parent<->worker control channel."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        peer: str,
        max_frame_bytes: int = MAX_FRAME_BYTES,
    ) -> None:
        self._reader = reader
        self._writer = writer
        self._send_lock = asyncio.Lock()
        self.peer = peer
        self.max_frame_bytes = max_frame_bytes
        self.rejected = 0

    @classmethod
    async def from_socket(cls, sock: socket.socket, peer: str) -> ControlChannel:
        """Wrap a connected stream socket (e.g. one end of ``socket.socketpair``)."""
        sock.setblocking(False)
        reader, writer = await asyncio.open_unix_connection(sock=sock)
        return cls(reader, writer, peer)

    async def send(self, message: Message) -> None:
        """Send one message; raises ``ChannelClosed`` when the peer is gone."""
        data = encode(message)
        if len(data) > self.max_frame_bytes:
            raise ValueError(
                f"message of {len(data)} bytes exceeds the {self.max_frame_bytes} limit"
            )
        async with self._send_lock:
            if self._writer.is_closing():
                raise ChannelClosed(f"channel to {self.peer} is closed")
            try:
                self._writer.write(_LENGTH.pack(len(data)) + data)
                await self._writer.drain()
            except (ConnectionError, OSError) as exc:
                raise ChannelClosed(f"channel to {self.peer} broke: {exc}") from exc

    async def recv(self) -> Message:
        """Receive the next valid message; raises ``ChannelClosed`` at end of stream."""
        while True:
            try:
                header = await self._reader.readexactly(_LENGTH.size)
                (length,) = _LENGTH.unpack(header)
                if length > self.max_frame_bytes:
                    await self._discard(length)
                    self._reject(
                        f"frame of {length} bytes exceeds the {self.max_frame_bytes} limit"
                    )
                    continue
                data = await self._reader.readexactly(length)
            except (asyncio.IncompleteReadError, ConnectionError, OSError) as exc:
                raise ChannelClosed(f"channel to {self.peer} closed") from exc
            try:
                return decode(data)
            except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                self._reject(str(exc))

    async def _discard(self, length: int) -> None:
        remaining = length
        while remaining:
            chunk = await self._reader.readexactly(min(remaining, 1 << 20))
            remaining -= len(chunk)

    def _reject(self, why: str) -> None:
        self.rejected += 1
        log.error("control channel %s: rejected a malformed message: %s", self.peer, why)

    async def close(self) -> None:
        """Close the channel; safe to call twice."""
        if not self._writer.is_closing():
            self._writer.close()
        try:
            await self._writer.wait_closed()
        except (ConnectionError, OSError):
            pass
