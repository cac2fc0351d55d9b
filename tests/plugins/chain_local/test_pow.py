"""Registration proof of work: the seal rule, verification, difficulty adjustment and the solver."""

from __future__ import annotations

import hashlib
import multiprocessing
import threading
import time

import pytest
from tnode.plugins.chain_local import pow as pow_

BLOCK = bytes(range(32))
HOTKEY = bytes(range(32, 64))


def pow_children() -> list[multiprocessing.process.BaseProcess]:
    return [p for p in multiprocessing.active_children() if p.name.startswith("tnode-pow")]


def test_seal_is_blake2b_256_of_block_hotkey_and_little_endian_nonce() -> None:
    nonce = 0x0102030405060708
    expected = hashlib.blake2b(BLOCK + HOTKEY + bytes([8, 7, 6, 5, 4, 3, 2, 1]), digest_size=32).digest()
    assert pow_.seal(BLOCK, HOTKEY, nonce) == expected


def test_validity_is_big_endian_value_below_bound() -> None:
    value = int.from_bytes(pow_.seal(BLOCK, HOTKEY, 7), "big")
    hardest = 2**256 // (value + 1)  # the largest difficulty whose bound still exceeds value
    assert pow_.verify(BLOCK, HOTKEY, 7, hardest)
    assert not pow_.verify(BLOCK, HOTKEY, 7, hardest + 1)
    assert pow_.seal_ok(pow_.seal(BLOCK, HOTKEY, 7), 1)  # difficulty 1 accepts every seal


def test_a_found_seal_verifies_only_for_its_hotkey_and_block() -> None:
    nonce = pow_.search(BLOCK, HOTKEY, 1 << 12, 0, 1 << 20)
    assert nonce is not None and pow_.verify(BLOCK, HOTKEY, nonce, 1 << 12)
    other_hotkey = bytes(32)
    other_block = bytes([1]) * 32
    assert not pow_.verify(BLOCK, other_hotkey, nonce, 1 << 12)
    assert not pow_.verify(other_block, HOTKEY, nonce, 1 << 12)
    assert pow_.search(BLOCK, HOTKEY, 1 << 12, 0, nonce) is None  # search returns the first one


def test_malformed_input() -> None:
    assert not pow_.verify(BLOCK[:31], HOTKEY, 0, 1)
    assert not pow_.verify(BLOCK, HOTKEY + b"x", 0, 1)
    assert not pow_.verify(BLOCK, HOTKEY, 2**64, 1)
    assert not pow_.verify(BLOCK, HOTKEY, -1, 1)
    with pytest.raises(ValueError, match="nonce"):
        pow_.seal(BLOCK, HOTKEY, 2**64)
    with pytest.raises(ValueError, match="difficulty"):
        pow_.verify(BLOCK, HOTKEY, 0, 0)
    with pytest.raises(ValueError, match="32 bytes"):
        pow_.seal_ok(b"\x00" * 31, 1)


def test_difficulty_rises_under_flood_and_falls_when_idle() -> None:
    assert pow_.next_difficulty(1000, 2, target=2) == 1000  # at the target: unchanged
    assert pow_.next_difficulty(1000, 10, target=2) == 3000  # ×(10+2)/4
    assert pow_.next_difficulty(1000, 0, target=2) == 500  # idle: halved
    assert pow_.next_difficulty(1000, 10, target=2, alpha=0.5) == 2000  # half-way between 1000 and 3000
    assert pow_.next_difficulty(1000, 10, target=2, alpha=1.0) == 1000  # fully smoothed: frozen
    assert pow_.next_difficulty(3, 0, target=2) == 2  # 1.5 rounds up
    # Exact on large values (floats would round 2**63 + 2 to 2**63); the default maximum is 2**62.
    assert pow_.next_difficulty(2**62 + 1, 6, target=2, maximum=2**64) == 2**63 + 2
    assert pow_.next_difficulty(2**62, 6, target=2) == 2**62


def test_difficulty_respects_clamps_over_many_intervals() -> None:
    difficulty = 1000
    for _ in range(50):
        difficulty = pow_.next_difficulty(difficulty, 20, target=2, minimum=10, maximum=1_000_000)
    assert difficulty == 1_000_000
    for _ in range(50):
        difficulty = pow_.next_difficulty(difficulty, 0, target=2, minimum=10, maximum=1_000_000)
    assert difficulty == 10


def test_difficulty_arguments_are_checked() -> None:
    with pytest.raises(ValueError, match="target"):
        pow_.next_difficulty(1000, 1, target=0)
    with pytest.raises(ValueError, match="alpha"):
        pow_.next_difficulty(1000, 1, target=2, alpha=1.5)
    with pytest.raises(ValueError, match="exceeds"):
        pow_.next_difficulty(1000, 1, target=2, minimum=5, maximum=4)


@pytest.mark.parametrize("processes", [1, 2])
def test_solver_finds_a_valid_nonce(processes: int) -> None:
    seen: list[int] = []
    nonce = pow_.solve(BLOCK, HOTKEY, 20_000, processes=processes, progress=seen.append, poll=0.02)
    assert nonce is not None and pow_.verify(BLOCK, HOTKEY, nonce, 20_000)
    assert seen and seen == sorted(seen) and seen[-1] > 0
    assert not pow_children()


def test_solver_starts_in_the_block_of_start_nonce() -> None:
    start = 0xDEADBEEF_00000000
    nonce = pow_.solve(BLOCK, HOTKEY, 5000, processes=2, start_nonce=start)
    assert nonce is not None and nonce >> 32 == start >> 32
    assert pow_.solve(BLOCK, HOTKEY, 1, processes=2, start_nonce=start) == start  # difficulty 1: any nonce


def test_cancel_stops_the_workers() -> None:
    cancel = threading.Event()
    timer = threading.Timer(0.3, cancel.set)
    timer.start()
    started = time.monotonic()
    try:
        assert pow_.solve(BLOCK, HOTKEY, 2**60, processes=2, cancel=cancel, poll=0.05) is None
    finally:
        timer.cancel()
    assert time.monotonic() - started < 10
    assert not pow_children()


def test_keyboard_interrupt_cleans_up_the_workers() -> None:
    def interrupt(count: int) -> None:
        if count > 0:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        pow_.solve(BLOCK, HOTKEY, 2**60, processes=2, progress=interrupt, poll=0.05)
    assert not pow_children()


def test_solver_arguments_are_checked() -> None:
    with pytest.raises(ValueError, match="processes"):
        pow_.solve(BLOCK, HOTKEY, 10, processes=0)
    with pytest.raises(ValueError, match="block_hash"):
        pow_.solve(b"short", HOTKEY, 10)
    with pytest.raises(ValueError, match="difficulty"):
        pow_.solve(BLOCK, HOTKEY, 0)
