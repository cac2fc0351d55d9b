"""One stream of tnode's Yamux (:mod:`.yamux`): the frame header, a stream's buffer, windows and close states.

A :class:`YamuxStream` is read from and written to by the application; its connection
(:class:`~.yamux.Yamux`) owns the stream table, the reader task and the socket writes:

- a read takes what the connection's reader task appended to the stream's buffer, waiting on one
  event shared by concurrent readers; once half of the stream's window has been read, the credit
  (possibly grown, see :meth:`~.yamux.Yamux._credit`) goes back to the peer in one WINDOW_UPDATE;
- a write is one at a time per stream (writes never interleave), split into DATA frames no larger
  than the send window and than one Noise message carries; on a zero send window it waits for the
  peer's credit up to :data:`SEND_WINDOW_SECONDS`;
- ``close`` is a half-close (FIN), ``reset`` aborts both directions (RST) and frees the buffer.
"""

from __future__ import annotations

import contextlib
import struct
from typing import TYPE_CHECKING

import trio
from libp2p.abc import IMuxedStream
from libp2p.stream_muxer.exceptions import (
    MuxedStreamClosed,
    MuxedStreamEOF,
    MuxedStreamError,
    MuxedStreamReset,
)

from .noise_frames import MAX_PLAINTEXT

if TYPE_CHECKING:
    from .yamux import Yamux

HEADER = struct.Struct("!BBHII")
HEADER_SIZE = HEADER.size
TYPE_DATA, TYPE_WINDOW_UPDATE, TYPE_PING, TYPE_GO_AWAY = 0, 1, 2, 3
FLAG_SYN, FLAG_ACK, FLAG_FIN, FLAG_RST = 1, 2, 4, 8
GO_AWAY_NORMAL, GO_AWAY_PROTOCOL_ERROR = 0, 1
INITIAL_WINDOW = 256 * 1024
#: Largest DATA body per frame: header and body fit in one Noise message.
MAX_DATA = MAX_PLAINTEXT - HEADER_SIZE
#: How long a writer waits for the peer to grant send window before the write fails.
SEND_WINDOW_SECONDS = 30.0


class YamuxStream(IMuxedStream):
    """One Yamux stream (``IMuxedStream``): a receive buffer, two windows and the close states."""

    def __init__(self, conn: Yamux, stream_id: int, is_initiator: bool) -> None:
        self.muxed_conn = conn
        self.conn = conn
        self.stream_id = stream_id
        self.is_initiator = is_initiator
        self.buffer = bytearray()
        self.recv_window = INITIAL_WINDOW  # what the peer may still send
        self.target_recv_window = INITIAL_WINDOW  # the window granted in all
        self.consumed = 0  # read and not yet credited back
        self.send_window = INITIAL_WINDOW
        self.send_closed = False
        self.recv_closed = False
        self.reset_received = False  # reset by either end, or the connection was lost
        self._read_waiter: trio.Event | None = None
        self._send_waiter: trio.Event | None = None
        self._writing = False
        self._write_turn: trio.Event | None = None

    @property
    def closed(self) -> bool:
        """Both directions closed, or reset."""
        return self.reset_received or (self.send_closed and self.recv_closed)

    # ----------------------------------------------------------------------------------- read
    def _wake_reader(self) -> None:
        waiter = self._read_waiter
        if waiter is not None:
            self._read_waiter = None
            waiter.set()

    def _wake_writer(self) -> None:
        waiter = self._send_waiter
        if waiter is not None:
            self._send_waiter = None
            waiter.set()

    async def read(self, n: int | None = -1) -> bytes:
        """Up to ``n`` buffered bytes (all of them for -1/None), waiting for some if none are."""
        if n == 0:
            return b""
        while not self.buffer:
            if self.reset_received:
                raise MuxedStreamReset("stream reset")
            if self.recv_closed:
                raise MuxedStreamEOF("stream closed by the peer")
            waiter = self._read_waiter
            if waiter is None:  # shared by concurrent readers: one wake-up wakes them all
                waiter = self._read_waiter = trio.Event()
            await waiter.wait()
        buf = self.buffer
        if n is None or n < 0 or n >= len(buf):
            data = bytes(buf)
            buf.clear()
        else:
            data = bytes(buf[:n])
            del buf[:n]
        conn = self.conn
        if conn.streams.get(self.stream_id) is self:
            conn.buffered -= len(data)
        if self.recv_closed or self.reset_received:
            if not buf:
                conn._forget_if_done(self)
            return data
        self.consumed += len(data)
        if self.consumed >= self.target_recv_window >> 1:
            delta = conn._credit(self)
            if delta:
                frame = HEADER.pack(0, TYPE_WINDOW_UPDATE, 0, self.stream_id, delta)
                # The bytes are taken: the read returns them whatever happens to the credit.
                with trio.CancelScope(shield=True), contextlib.suppress(trio.BrokenResourceError,
                                                                        trio.ClosedResourceError):
                    await conn._write([frame], wait=False)
        return data

    # ---------------------------------------------------------------------------------- write
    async def write(self, data: bytes) -> None:
        """Send ``data`` as DATA frames within the send window."""
        if self.reset_received:
            raise MuxedStreamReset("stream reset")
        if self.send_closed:
            raise MuxedStreamClosed("stream closed for writing")
        while self._writing:  # one write at a time per stream, so writes never interleave
            turn = self._write_turn if self._write_turn is not None else trio.Event()
            self._write_turn = turn
            await turn.wait()
        self._writing = True
        try:
            await self._write_all(memoryview(data))
            await trio.lowlevel.checkpoint_if_cancelled()  # a cancellation held off by the shielded flush
        finally:
            self._writing = False
            turn = self._write_turn
            if turn is not None:
                self._write_turn = None
                turn.set()

    async def _write_all(self, view: memoryview) -> None:
        conn = self.conn
        sid = self.stream_id
        off, total = 0, len(view)
        while off < total:
            while self.send_window <= 0:
                if self.reset_received:
                    raise MuxedStreamReset("stream reset")
                waiter = self._send_waiter
                if waiter is None:
                    waiter = self._send_waiter = trio.Event()
                with trio.move_on_after(SEND_WINDOW_SECONDS) as scope:
                    await waiter.wait()
                if scope.cancelled_caught:
                    raise MuxedStreamError(f"no send window granted in {SEND_WINDOW_SECONDS:.0f} s")
            if self.reset_received:
                raise MuxedStreamReset("stream reset")
            if self.send_closed:
                raise MuxedStreamClosed("stream closed for writing")
            frames = []
            while off < total and self.send_window > 0 and len(frames) < 16:
                n = min(self.send_window, MAX_DATA, total - off)
                self.send_window -= n
                frames.append(HEADER.pack(0, TYPE_DATA, 0, sid, n) + view[off:off + n])
                off += n
            await conn._write(frames)

    # ---------------------------------------------------------------------------------- close
    async def close(self) -> None:
        """Half-close: FIN, the stream stays readable until the peer closes its side."""
        if self.send_closed or self.reset_received:
            return
        self.send_closed = True
        self._wake_writer()
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            await self.conn._write([HEADER.pack(0, TYPE_WINDOW_UPDATE, FLAG_FIN, self.stream_id, 0)], wait=False)
        self.conn._forget_if_done(self)

    async def close_write(self) -> None:
        await self.close()

    async def reset(self) -> None:
        """Abort both directions (RST); the receive buffer is freed now."""
        if self.reset_received or (self.send_closed and self.recv_closed):
            return
        self.conn._reset_locally(self)
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            await self.conn._write([HEADER.pack(0, TYPE_WINDOW_UPDATE, FLAG_RST, self.stream_id, 0)], wait=False)

    def set_deadline(self, ttl: int) -> None:
        raise NotImplementedError("Yamux streams have no deadlines; use trio cancel scopes")

    def get_remote_address(self) -> tuple[str, int] | None:
        return self.conn.get_remote_address()

    async def __aenter__(self) -> YamuxStream:
        return self
