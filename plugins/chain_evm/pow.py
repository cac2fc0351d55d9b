"""Registration proof of work of the EVM backend: the contract's seal and a multi-core solver.

The seal (subtensor's construction, checkable with the hashes every EVM has)::

    seal = keccak256(sha256(nonce as u64 little-endian ‖ keccak256(block_hash ‖ hotkey)))

A seal meets difficulty ``d`` iff ``int(seal) · d < 2²⁵⁶``, i.e. ``int(seal) ≤ (2²⁵⁶ − 1) // d``.
The solver splits the nonce space over worker processes (one per core by default); each worker
hashes the fixed 32-byte inner digest once and then tries consecutive nonces.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import secrets
import struct
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait

from eth_utils import keccak

MAX_NONCE = 2**64 - 1
CHUNK = 1 << 14  # nonces per worker task


def inner(block_hash: bytes, hotkey: bytes) -> bytes:
    """keccak256(block_hash ‖ hotkey), the part of the seal that does not depend on the nonce."""
    if len(block_hash) != 32 or len(hotkey) != 32:
        raise ValueError("block hash and hotkey must be 32 bytes each")
    return keccak(block_hash + hotkey)


def seal(block_hash: bytes, hotkey: bytes, nonce: int) -> bytes:
    """The seal of ``nonce`` (see the module docstring)."""
    return keccak(hashlib.sha256(struct.pack("<Q", nonce) + inner(block_hash, hotkey)).digest())


def target(difficulty: int) -> int:
    """The largest seal value that meets ``difficulty``."""
    if difficulty < 1:
        raise ValueError(f"difficulty must be ≥ 1, got {difficulty}")
    return (2**256 - 1) // difficulty


def verify(block_hash: bytes, hotkey: bytes, nonce: int, difficulty: int) -> bool:
    return int.from_bytes(seal(block_hash, hotkey, nonce), "big") <= target(difficulty)


def _search(inner_digest: bytes, bound: int, start: int, count: int) -> int | None:
    for nonce in range(start, min(start + count, MAX_NONCE + 1)):
        s = keccak(hashlib.sha256(struct.pack("<Q", nonce) + inner_digest).digest())
        if int.from_bytes(s, "big") <= bound:
            return nonce
    return None


def solve(block_hash: bytes, hotkey: bytes, difficulty: int, *, processes: int | None = None,
          max_tries: int = 1 << 32, start_nonce: int | None = None) -> int | None:
    """A nonce meeting ``difficulty``, or ``None`` after ``max_tries`` nonces.

    Small difficulties are solved in this process; larger ones use ``processes`` workers
    (default: one per core).
    """
    digest = inner(block_hash, hotkey)
    bound = target(difficulty)
    start = secrets.randbelow(1 << 62) if start_nonce is None else start_nonce
    if difficulty <= 4 * CHUNK:
        local_tries = min(max_tries, 16 * CHUNK)
        found = _search(digest, bound, start, local_tries)
        if found is not None or local_tries >= max_tries:
            return found
        return _parallel(digest, bound, start + local_tries, max_tries - local_tries, processes)
    return _parallel(digest, bound, start, max_tries, processes)


def _parallel(digest: bytes, bound: int, start: int, max_tries: int, processes: int | None) -> int | None:
    workers = processes or os.cpu_count() or 1
    ctx = multiprocessing.get_context("forkserver")
    with ProcessPoolExecutor(workers, mp_context=ctx) as pool:
        nxt = start
        pending: set[Future[int | None]] = set()
        tried = 0
        while True:
            while len(pending) < 2 * workers and tried < max_tries:
                pending.add(pool.submit(_search, digest, bound, nxt, CHUNK))
                nxt += CHUNK
                tried += CHUNK
            if not pending:
                return None
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for fut in done:
                found = fut.result()
                if found is not None:
                    for other in pending:
                        other.cancel()
                    return int(found)
