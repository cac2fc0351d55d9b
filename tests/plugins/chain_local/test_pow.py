"""Registration proof of work: seal rule, difficulty adjustment, solver."""

from __future__ import annotations

import os
import threading
import time

from tnode.plugins.chain_local import pow as pow_


def test_seal_definition_is_blake2b_of_hash_hotkey_le_nonce():
    import hashlib

    bh, hk = bytes(range(32)), bytes(range(32, 64))
    expected = hashlib.blake2b(bh + hk + (5).to_bytes(8, "little"), digest_size=32).digest()
    assert pow_.seal(bh, hk, 5) == expected


def test_valid_seal_verifies_and_wrong_inputs_do_not():
    bh, hk = os.urandom(32), os.urandom(32)
    nonce = pow_.solve(bh, hk, 5000, processes=1)
    assert nonce is not None and pow_.verify(bh, hk, nonce, 5000)
    assert not pow_.verify(bh, os.urandom(32), nonce, 5000) or not pow_.verify(bh, os.urandom(32), nonce, 5000)
    assert not pow_.verify(os.urandom(32), hk, nonce, 5000) or not pow_.verify(os.urandom(32), hk, nonce, 5000)


def test_under_difficulty_refused():
    bh, hk = os.urandom(32), os.urandom(32)
    nonce = 0
    while not pow_.verify(bh, hk, nonce, 64):
        nonce += 1
    value = int.from_bytes(pow_.seal(bh, hk, nonce), "big")
    harder = (1 << 256) // value + 1  # the smallest difficulty this seal no longer meets
    assert not pow_.verify(bh, hk, nonce, harder)


def test_difficulty_rises_under_flood_falls_when_idle_and_is_clamped():
    assert pow_.next_difficulty(1000, 2, target=2) == 1000
    assert pow_.next_difficulty(1000, 10, target=2) == 3000
    assert pow_.next_difficulty(1000, 0, target=2) == 500
    assert pow_.next_difficulty(1000, 100, target=2, maximum=4000) == 4000
    assert pow_.next_difficulty(1000, 0, target=2, minimum=800) == 800
    smoothed = pow_.next_difficulty(1000, 10, target=2, alpha=0.5)
    assert 1000 < smoothed < 3000


def test_solver_two_processes_finds_valid_nonce():
    bh, hk = os.urandom(32), os.urandom(32)
    seen = []
    nonce = pow_.solve(bh, hk, 50_000, processes=2, progress=seen.append, poll=0.02)
    assert nonce is not None and pow_.verify(bh, hk, nonce, 50_000)


def test_cancel_stops_workers():
    import multiprocessing as mp

    cancel = threading.Event()
    threading.Timer(0.5, cancel.set).start()
    started = time.monotonic()
    result = pow_.solve(os.urandom(32), os.urandom(32), 2**60, processes=2, cancel=cancel, poll=0.05)
    assert result is None
    assert time.monotonic() - started < 10
    assert not [p for p in mp.active_children() if p.is_alive()]
