"""Registration proof of work.

Seal: ``blake2b(block_hash ‖ hotkey ‖ nonce, digest_size=32)`` where ``block_hash`` is the 32
raw bytes of a recent block's hash, ``hotkey`` the 32 raw bytes of the Ed25519 public key being
registered, and ``nonce`` an unsigned 64-bit integer in **little-endian** byte order (8 bytes).
A seal is valid for ``difficulty`` when, read as a **big-endian** 256-bit integer, it is below
``2**256 // difficulty`` — on average ``difficulty`` hashes per valid seal.

blake2b is used because it is the fastest 256-bit hash in CPython's hashlib on 64-bit machines.
The solver hashes the 64-byte prefix once and copies that midstate for every nonce.
"""

from __future__ import annotations

import hashlib
import multiprocessing as mp
import os
import struct
import threading
import time
from collections.abc import Callable
from typing import Any

NONCE = struct.Struct("<Q")
MAX_NONCE = 2**64 - 1
_CHUNK = 1 << 16


def seal(block_hash: bytes, hotkey: bytes, nonce: int) -> bytes:
    """The 32-byte seal of ``nonce`` for ``hotkey`` over ``block_hash``."""
    h = hashlib.blake2b(block_hash, digest_size=32)
    h.update(hotkey)
    h.update(NONCE.pack(nonce))
    return h.digest()


def target(difficulty: int) -> int:
    if difficulty < 1:
        raise ValueError("difficulty must be ≥ 1")
    return (1 << 256) // difficulty


def seal_ok(seal_bytes: bytes, difficulty: int) -> bool:
    """True when ``seal_bytes`` meets ``difficulty``."""
    return int.from_bytes(seal_bytes, "big") < target(difficulty)


def verify(block_hash: bytes, hotkey: bytes, nonce: int, difficulty: int) -> bool:
    """True when ``nonce`` is a valid proof of work for ``hotkey`` over ``block_hash``."""
    if not (0 <= nonce <= MAX_NONCE) or len(block_hash) != 32 or len(hotkey) != 32:
        return False
    return seal_ok(seal(block_hash, hotkey, nonce), difficulty)


def next_difficulty(current: int, registrations: int, *, target: int, alpha: float = 0.0, minimum: int = 1,
                    maximum: int = 2**63) -> int:
    """Difficulty for the next adjustment interval.

    ``raw = current · (registrations + target) / (2 · target)``: unchanged at the target rate,
    ×(n+t)/2t above it, down to ×½ with no registrations. With ``alpha`` > 0 the change is smoothed
    (``alpha·current + (1−alpha)·raw``). The result is clamped to [minimum, maximum].
    """
    if target <= 0:
        raise ValueError("target registrations per interval must be ≥ 1")
    raw = current * (registrations + target) / (2 * target)
    value = alpha * current + (1.0 - alpha) * raw
    return int(max(minimum, min(maximum, round(value))))


def search(block_hash: bytes, hotkey: bytes, difficulty: int, start: int, count: int) -> int | None:
    """Try nonces ``start .. start+count-1``; the first valid one, or ``None``."""
    limit = target(difficulty)
    # Comparing 32-byte big-endian digests as bytes is comparing the integers.
    limit_bytes = limit.to_bytes(33, "big")[1:] if limit < (1 << 256) else b"\xff" * 32 + b"\x00"
    base = hashlib.blake2b(block_hash, digest_size=32)
    base.update(hotkey)
    copy = base.copy
    pack = NONCE.pack
    for nonce in range(start, min(start + count, MAX_NONCE + 1)):
        h = copy()
        h.update(pack(nonce))
        if h.digest() < limit_bytes:
            return nonce
    return None


def _worker(block_hash: bytes, hotkey: bytes, difficulty: int, first: int, stride: int, found: Any,
            stop: Any, counter: Any) -> None:
    import signal

    # Ctrl-C is the parent's to handle: it sets ``cancel`` and stops the workers.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    chunk = first
    while not stop.is_set():
        start = chunk * _CHUNK
        if start > MAX_NONCE:
            return
        nonce = search(block_hash, hotkey, difficulty, start, _CHUNK)
        with counter.get_lock():
            counter.value += _CHUNK if nonce is None else nonce - start + 1
        if nonce is not None:
            found.put(nonce)
            return
        chunk += stride


def solve(block_hash: bytes, hotkey: bytes, difficulty: int, *, processes: int | None = None,
          progress: Callable[[int], None] | None = None, cancel: threading.Event | None = None,
          start_nonce: int | None = None, poll: float = 0.1) -> int | None:
    """Find a nonce with all cores (``processes``, default ``os.cpu_count()``).

    ``progress(hashes_tried)`` is called about every ``poll`` seconds; setting ``cancel`` stops
    every worker and returns ``None``. Workers are always terminated before returning.
    """
    processes = max(1, processes or os.cpu_count() or 1)
    first_chunk = (start_nonce if start_nonce is not None else int.from_bytes(os.urandom(6), "big")) // _CHUNK
    if processes == 1 and cancel is None and progress is None:
        chunk = first_chunk
        while True:
            nonce = search(block_hash, hotkey, difficulty, chunk * _CHUNK, _CHUNK)
            if nonce is not None:
                return nonce
            chunk += 1
    ctx = mp.get_context("spawn")  # never fork a process that runs threads (the node's event loop)
    found: Any = ctx.Queue()
    stop = ctx.Event()
    counter = ctx.Value("Q", 0)
    workers = [
        ctx.Process(target=_worker, args=(block_hash, hotkey, difficulty, first_chunk + i, processes, found, stop,
                                          counter), daemon=True)
        for i in range(processes)
    ]
    for w in workers:
        w.start()
    try:
        while True:
            if cancel is not None and cancel.is_set():
                return None
            try:
                nonce = found.get(timeout=poll)
                return int(nonce)
            except Exception:  # queue.Empty: keep waiting
                pass
            if progress is not None:
                progress(int(counter.value))
            if not any(w.is_alive() for w in workers) and found.empty():
                return None
    finally:
        stop.set()
        deadline = time.monotonic() + 2.0
        for w in workers:
            w.join(timeout=max(0.0, deadline - time.monotonic()))
            if w.is_alive():
                w.terminate()
                w.join(timeout=1.0)
