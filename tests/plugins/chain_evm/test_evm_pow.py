"""The EVM backend's PoW solver finds seals the checker accepts, nonce 0 included."""

from __future__ import annotations

from tnode.plugins.chain_evm import pow as pow_

BLOCK = bytes(range(32))
HOTKEY = bytes(32)


def test_difficulty_one_accepts_the_first_nonce() -> None:
    assert pow_.solve(BLOCK, HOTKEY, 1, start_nonce=0) == 0


def test_solver_finds_a_valid_seal_in_process_and_with_workers() -> None:
    small = pow_.solve(BLOCK, HOTKEY, 1000, start_nonce=5)
    assert small is not None and small >= 5 and pow_.verify(BLOCK, HOTKEY, small, 1000)
    big = pow_.solve(BLOCK, HOTKEY, 200_000, processes=2, start_nonce=0)
    assert big is not None and pow_.verify(BLOCK, HOTKEY, big, 200_000)


def test_solver_gives_up_after_max_tries() -> None:
    assert pow_.solve(BLOCK, HOTKEY, 2**200, max_tries=1000, start_nonce=0) is None
