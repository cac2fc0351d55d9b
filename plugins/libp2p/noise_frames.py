"""Noise transport messages read and written straight on the TCP socket, for tnode's Yamux.

After py-libp2p's Noise handshake a secure connection is a sequence of transport messages on
TCP: a 2-byte big-endian length, then that many bytes of ChaCha20-Poly1305 ciphertext (at most
65535, so at most 65519 bytes of plaintext each), with one nonce counter per direction. py-libp2p
reads each message with two socket reads and several layers of buffering; :class:`NoiseFrames`
takes over the connection once the muxer is negotiated, with the cipher states that handshake
produced, and:

- receives with one large ``receive_some`` and decrypts every whole message in it, so one syscall
  serves many messages; what it returns is the plaintext byte stream (message boundaries carry
  no meaning to Yamux);
- seals a batch of Yamux frames into as few messages as possible, a frame never split while it
  fits in one message, and sends them with one ``send_all``.

The wire format is unchanged: the peer may be any Noise implementation. Bytes py-libp2p's
session had already decrypted and not handed out (read ahead during muxer negotiation) come
first. A connection that is not py-libp2p's Noise session over TCP gets :class:`SessionFrames`,
which reads and writes through the session's own ``read``/``write``.
"""

from __future__ import annotations

import contextlib
from typing import Any

import trio

#: Largest Noise transport message on the wire (its length is two bytes).
MAX_NOISE_MESSAGE = 65535
#: Largest plaintext one message carries: the message less the 16-byte Poly1305 tag.
MAX_PLAINTEXT = MAX_NOISE_MESSAGE - 16
#: Bytes asked of the socket per receive.
RECEIVE_BYTES = 256 * 1024


class NoiseError(Exception):
    """A transport message failed authentication or the nonce space ran out: the session is lost."""


class _Direction:
    """One direction's cipher: the AEAD object of the handshake's cipher state and its nonce counter."""

    def __init__(self, state: Any) -> None:
        self.state = state
        self.aead = state.cipher.cipher  # cryptography's ChaCha20Poly1305, keyed by the handshake
        self.nonce = state.n
        fmt = getattr(state.cipher, "format_nonce", None)
        if fmt is None or len(fmt(0)) != 12:
            raise TypeError("unexpected Noise cipher")
        self.format_nonce = fmt

    def next_nonce(self) -> bytes:
        n = self.nonce
        if n >= (1 << 64) - 1:
            raise NoiseError("Noise nonce space exhausted")
        self.nonce = n + 1
        self.state.n = n + 1  # kept in step, so the session's own state stays truthful
        return b"\x00\x00\x00\x00" + n.to_bytes(8, "little")


def _socket_stream(secure: Any) -> Any:
    """The trio socket stream under py-libp2p's Noise session, or None when it is not one."""
    rw = getattr(secure, "conn", None)  # NoiseTransportReadWriter
    msgio = getattr(rw, "read_writer", None)  # NoisePacketReadWriter
    raw = getattr(msgio, "read_write_closer", None)  # RawConnection
    tcp = getattr(raw, "stream", None)  # TrioTCPStream
    sock = getattr(tcp, "stream", None)  # trio.SocketStream
    return sock if isinstance(sock, trio.SocketStream) else None


class NoiseFrames:
    """The plaintext byte stream of one Noise session, read and written on its socket directly."""

    def __init__(self, secure: Any, sock: trio.SocketStream) -> None:
        protocol = secure.conn.noise_state.noise_protocol
        if protocol.cipher_state_encrypt.cipher.__class__.__name__ != "ChaCha20Cipher":
            raise TypeError("only ChaCha20-Poly1305 Noise sessions are taken over")
        self.secure = secure
        self.sock = sock
        self._send = _Direction(protocol.cipher_state_encrypt)
        self._recv = _Direction(protocol.cipher_state_decrypt)
        self._cipher = bytearray()
        drain = getattr(secure, "_drain", None)
        self._pending = bytes(drain(None)) if callable(drain) else b""  # decrypted, not yet handed out

    async def receive(self) -> bytes:
        """The next plaintext bytes (one or more whole messages); b"" at end of stream."""
        if self._pending:
            out, self._pending = self._pending, b""
            return out
        buf = self._cipher
        recv = self._recv
        while True:
            pos, end = 0, len(buf)
            parts: list[bytes] = []
            while end - pos >= 2:
                n = (buf[pos] << 8) | buf[pos + 1]
                if end - pos - 2 < n:
                    break
                try:
                    parts.append(recv.aead.decrypt(recv.next_nonce(), memoryview(buf)[pos + 2:pos + 2 + n], None))
                except Exception as exc:  # InvalidTag: forged, corrupted or out of sync
                    raise NoiseError(f"Noise message failed authentication: {exc!r}") from None
                pos += 2 + n
            if pos:
                del buf[:pos]
            if parts:
                return parts[0] if len(parts) == 1 else b"".join(parts)
            data = await self.sock.receive_some(RECEIVE_BYTES)
            if not data:
                if buf:
                    raise NoiseError(f"connection closed inside a Noise message ({len(buf)} bytes of it)")
                return b""
            if buf:
                buf += data
            else:
                buf = self._cipher = bytearray(data)

    def seal(self, frames: list[bytes]) -> bytes:
        """Encrypt ``frames`` (each at most :data:`MAX_PLAINTEXT` bytes) into Noise messages, several
        frames to a message while they fit, a frame never split."""
        send = self._send
        encrypt = send.aead.encrypt
        out: list[bytes] = []
        batch: list[bytes] = []
        size = 0

        def seal_batch() -> None:
            sealed = encrypt(send.next_nonce(), batch[0] if len(batch) == 1 else b"".join(batch), None)
            out.extend((len(sealed).to_bytes(2, "big"), sealed))

        for frame in frames:
            if size + len(frame) > MAX_PLAINTEXT and batch:
                seal_batch()
                batch, size = [], 0
            batch.append(frame)
            size += len(frame)
        if batch:
            seal_batch()
        return b"".join(out)

    async def send_all(self, data: bytes) -> None:
        await self.sock.send_all(data)

    async def aclose(self) -> None:
        with contextlib.suppress(Exception):
            await self.secure.close()


class SessionFrames:
    """The same interface over any secure connection's ``read``/``write`` (no socket access)."""

    def __init__(self, secure: Any) -> None:
        self.secure = secure

    async def receive(self) -> bytes:
        try:
            data: bytes = await self.secure.read(None)  # what one message (or receive) holds
        except Exception as exc:
            if "closed" in str(exc).lower():
                return b""
            raise
        return data

    def seal(self, frames: list[bytes]) -> bytes:
        return b"".join(frames)

    async def send_all(self, data: bytes) -> None:
        await self.secure.write(data)

    async def aclose(self) -> None:
        with contextlib.suppress(Exception):
            await self.secure.close()


def frames_for(secure: Any, *, direct: bool = True) -> NoiseFrames | SessionFrames:
    """The fastest frame I/O ``secure`` allows: its Noise socket directly where it is py-libp2p's Noise
    session over TCP (and ``direct``), else its own read/write."""
    sock = _socket_stream(secure) if direct else None
    if sock is not None:
        with contextlib.suppress(AttributeError, TypeError):
            return NoiseFrames(secure, sock)
    return SessionFrames(secure)
