"""Registration proof of work: the seal, its check, the difficulty adjustment and a multi-core solver.

The seal over a block, a hotkey and a nonce is::

    seal = BLAKE2b-256(block_hash (32 bytes) ‖ hotkey public key (32 bytes) ‖ nonce as u64 little-endian)

(72 bytes in, 32 out; BLAKE2b with ``digest_size=32``, no key, no salt). A seal meets difficulty
``d ≥ 1`` iff ``int.from_bytes(seal, "big") < 2**256 // d``, so a random nonce succeeds with
probability about ``1/d``.

Difficulty adjustment (every adjustment interval)::

    raw  = current · (registrations + target) / (2 · target)
    next = round(alpha · current + (1 − alpha) · raw), clamped to [minimum, maximum]

computed exactly with rationals (halves round up): a flood of registrations raises the difficulty,
an idle interval halves it.

The solver (:func:`solve`) runs one process per core. Its search space is the nonce range in
blocks of 2³² consecutive nonces ``n = lo | hi << 16`` (``lo`` 16 bits, ``hi`` 48 bits). Within a
block, workers take 16-bit ``lo`` values in turn; for each, the hash state after the 66 fixed bytes
and ``lo`` is computed once and copied for each of the 65 536 ``hi`` values, whose 6-byte encodings
are built once per block. The inner loop is then a state copy, one update, a digest and a byte
comparison — the same work as the bare hashlib loop it is benchmarked against.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import secrets
import signal
import struct
from collections.abc import Callable, Sequence
from fractions import Fraction
from multiprocessing.context import ForkServerContext, SpawnContext
from multiprocessing.synchronize import Event
from typing import Any, Protocol

SEAL_BYTES = 32
MAX_NONCE = 2**64 - 1
UNIT = 1 << 16  # nonces per work unit (one lo value × every hi of a block): ~20 ms on one core
BLOCK_SHIFT = 32  # a block is 2**32 consecutive nonces
POLL_SECONDS = 0.1

_U64 = struct.Struct("<Q")
_U16 = struct.Struct("<H")


class CancelFlag(Protocol):
    """Anything with ``is_set()`` (``threading.Event``, ``multiprocessing.Event``…)."""

    def is_set(self) -> bool: ...


# ---------------------------------------------------------------------------------------- seals
def _check_inputs(block_hash: bytes, hotkey: bytes) -> None:
    if not isinstance(block_hash, bytes | bytearray) or len(block_hash) != 32:
        raise ValueError("block_hash must be 32 bytes")
    if not isinstance(hotkey, bytes | bytearray) or len(hotkey) != 32:
        raise ValueError("hotkey must be a 32-byte public key")


def target(difficulty: int) -> int:
    """The bound a seal must stay below: ``2**256 // difficulty`` (``difficulty`` an integer ≥ 1)."""
    if isinstance(difficulty, bool) or not isinstance(difficulty, int) or difficulty < 1:
        raise ValueError(f"difficulty must be an integer ≥ 1, got {difficulty!r}")
    return 2**256 // difficulty


def _target_bytes(bound: int) -> bytes | None:
    """``bound`` as 32 big-endian bytes for byte-wise comparison; ``None`` when every seal passes."""
    return None if bound >= 2**256 else bound.to_bytes(SEAL_BYTES, "big")


def seal(block_hash: bytes, hotkey: bytes, nonce: int) -> bytes:
    """BLAKE2b-256(block_hash ‖ hotkey ‖ nonce u64 LE); raises ``ValueError`` on malformed input."""
    _check_inputs(block_hash, hotkey)
    if isinstance(nonce, bool) or not isinstance(nonce, int) or not 0 <= nonce <= MAX_NONCE:
        raise ValueError(f"nonce must be an integer in [0, 2**64), got {nonce!r}")
    return hashlib.blake2b(bytes(block_hash) + bytes(hotkey) + _U64.pack(nonce), digest_size=SEAL_BYTES).digest()


def seal_ok(seal_bytes: bytes, difficulty: int) -> bool:
    """Whether ``seal_bytes`` (32 bytes) meets ``difficulty``: big-endian value < 2**256 // difficulty."""
    if len(seal_bytes) != SEAL_BYTES:
        raise ValueError("a seal is 32 bytes")
    return int.from_bytes(seal_bytes, "big") < target(difficulty)


def verify(block_hash: bytes, hotkey: bytes, nonce: int, difficulty: int) -> bool:
    """Whether ``nonce`` gives ``hotkey`` a seal over ``block_hash`` that meets ``difficulty``.

    Malformed input (wrong lengths, a nonce outside u64) is simply not a valid proof: ``False``.
    A difficulty below 1 is a caller bug and raises ``ValueError``.
    """
    bound = target(difficulty)
    try:
        digest = seal(block_hash, hotkey, nonce)
    except ValueError:
        return False
    return int.from_bytes(digest, "big") < bound


def search(block_hash: bytes, hotkey: bytes, difficulty: int, start: int, count: int) -> int | None:
    """The first nonce in ``start … start + count − 1`` (within u64) that meets ``difficulty``, in
    this process; ``None`` if there is none. For small searches; :func:`solve` uses every core."""
    _check_inputs(block_hash, hotkey)
    bound = _target_bytes(target(difficulty))
    end = min(start + count, MAX_NONCE + 1)
    if start < 0 or start >= end:
        return None
    if bound is None:
        return start
    copy = hashlib.blake2b(bytes(block_hash) + bytes(hotkey), digest_size=SEAL_BYTES).copy
    pack = _U64.pack
    for nonce in range(start, end):
        h = copy()
        h.update(pack(nonce))
        if h.digest() < bound:
            return nonce
    return None


def next_difficulty(current: int, registrations: int, *, target: int, alpha: float = 0.0,
                    minimum: int = 1, maximum: int = 2**62) -> int:
    """The difficulty (or burn) for the next interval; see the module docstring for the formula."""
    if current < 0 or registrations < 0:
        raise ValueError("current and registrations must be non-negative")
    if target < 1:
        raise ValueError(f"target must be ≥ 1, got {target!r}")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha!r}")
    if minimum > maximum:
        raise ValueError(f"minimum {minimum} exceeds maximum {maximum}")
    raw = Fraction(current * (registrations + target), 2 * target)
    a = Fraction(alpha)  # exact binary value of the float: no rounding before the final one
    mixed = a * current + (1 - a) * raw
    rounded = int(mixed + Fraction(1, 2))  # floor(x + 1/2): halves round up
    return max(minimum, min(maximum, rounded))


# --------------------------------------------------------------------------------------- solver
def solve(block_hash: bytes, hotkey: bytes, difficulty: int, *, processes: int | None = None,
          progress: Callable[[int], object] | None = None, cancel: CancelFlag | None = None,
          start_nonce: int | None = None, poll: float = POLL_SECONDS) -> int | None:
    """Find a nonce whose seal meets ``difficulty``, using ``processes`` worker processes.

    :param processes: worker processes (default: one per core).
    :param progress: called every ``poll`` seconds from the calling thread with the total number
        of seals tried so far, and once more at the end.
    :param cancel: when it is set, the search stops and ``None`` is returned.
    :param start_nonce: the search starts with the 2³²-nonce block containing it (default: a
        random block below 2**63).
    :param poll: seconds between checks of ``cancel`` and calls of ``progress``.
    :returns: a valid nonce, or ``None`` once ``cancel`` is set.
    :raises RuntimeError: if a worker process dies.

    Workers are stopped and joined before returning, also on exceptions and KeyboardInterrupt.
    """
    _check_inputs(block_hash, hotkey)
    bound = _target_bytes(target(difficulty))
    if processes is None:
        processes = os.cpu_count() or 1
    if processes < 1:
        raise ValueError(f"processes must be ≥ 1, got {processes!r}")
    if start_nonce is None:
        # Below 2**63: nonces stay within a signed 64-bit integer, which is what SQLite stores.
        start_nonce = secrets.randbits(63)
    if not 0 <= start_nonce <= MAX_NONCE:
        raise ValueError("start_nonce must be in [0, 2**64)")
    if not poll > 0:
        raise ValueError(f"poll must be positive, got {poll!r}")
    if bound is None:  # difficulty 1: every seal is valid
        if progress is not None:
            progress(0)
        return start_nonce
    ctx = _context()
    stop = ctx.Event()
    found = ctx.Array("Q", 2)  # [flag, nonce], written once under its lock
    counts = ctx.RawArray("Q", processes)  # seals tried per worker (one writer each)
    prefix = bytes(block_hash) + bytes(hotkey)
    workers = [
        ctx.Process(target=_worker, name=f"tnode-pow-{i}", daemon=True,
                    args=(i, processes, prefix, bound, start_nonce >> BLOCK_SHIFT, stop, found, counts))
        for i in range(processes)
    ]
    try:
        for worker in workers:
            worker.start()
        while not stop.wait(poll):
            if cancel is not None and cancel.is_set():
                break
            if progress is not None:
                progress(sum(counts))
            # A worker exits on its own only after setting ``stop``; one that is gone while ``stop`` is
            # still clear died (killed, out of memory, failed import).
            dead = [w for w in workers if w.exitcode is not None]
            if dead and not stop.is_set():
                raise RuntimeError(f"proof-of-work worker {dead[0].name} exited with code {dead[0].exitcode}")
    finally:
        stop.set()
        _reap(workers)
    if progress is not None:
        progress(sum(counts))
    with found.get_lock():
        flag, nonce = found[0], found[1]
    if not flag or (cancel is not None and cancel.is_set()):
        return None
    if not verify(block_hash, hotkey, int(nonce), difficulty):  # a worker bug must not reach the chain
        raise RuntimeError(f"proof-of-work worker returned nonce {nonce} that does not meet the difficulty")
    return int(nonce)


def _context() -> ForkServerContext | SpawnContext:
    """forkserver where available: forking a process that runs threads (trio, libp2p) is unsafe,
    and forkserver starts each solve's workers far faster than spawn."""
    if "forkserver" in multiprocessing.get_all_start_methods():
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload([__name__])
        return ctx
    return multiprocessing.get_context("spawn")


def _reap(workers: Sequence[multiprocessing.process.BaseProcess]) -> None:
    """Join workers that saw the stop flag; terminate (then kill) any that do not go."""
    for worker in workers:
        if worker.pid is not None:
            worker.join(timeout=2.0)
    for worker in workers:
        if worker.pid is not None and worker.is_alive():
            worker.terminate()
            worker.join(timeout=2.0)
            if worker.is_alive():
                worker.kill()
                worker.join()


def _worker(index: int, processes: int, prefix: bytes, bound: bytes, block: int, stop: Event,
            found: Any, counts: Any) -> None:
    """Worker process: the ``lo`` values ``index, index + processes, …`` of each block until stopped.

    ``found`` is the shared ``[flag, nonce]`` array, ``counts`` the shared per-worker seal counts.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and stops us
    base = hashlib.blake2b(prefix, digest_size=SEAL_BYTES)
    while True:
        hi_base = (block % (1 << BLOCK_SHIFT)) << 16
        his = [_U64.pack(hi)[:6] for hi in range(hi_base, hi_base + UNIT)]
        for lo in range(index, UNIT, processes):
            if stop.is_set():
                return
            state = base.copy()
            state.update(_U16.pack(lo))
            hit = _scan(state.copy, his, bound)
            counts[index] += UNIT
            if hit is not None:
                with found.get_lock():
                    if not found[0]:
                        found[0], found[1] = 1, lo | int.from_bytes(hit, "little") << 16
                stop.set()
                return
        block += 1


def _scan(copy: Callable[[], hashlib.blake2b], his: list[bytes], bound: bytes) -> bytes | None:
    """The hot loop: the first 6-byte ``hi`` suffix whose seal is below ``bound`` (as bytes)."""
    for hi in his:
        h = copy()
        h.update(hi)
        if h.digest() < bound:  # equal-length bytes compare like big-endian integers
            return hi
    return None
