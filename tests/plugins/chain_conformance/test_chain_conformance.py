"""One suite, both chain backends: PoW, difficulty, pruning, immunity, balances, weights, epochs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conformance_backends import TOKEN, code_of, key, make_backend, register_now
from tnode.errors import ChainError
from tnode.weights import WeightVector

pytestmark = pytest.mark.anyio


async def test_wrong_stale_and_weak_seals_are_refused(backend_name: str, tmp: Path) -> None:
    chain = await make_backend(backend_name, tmp, difficulty=64, pow_block_window=3)
    try:
        hot, cold = key("hot"), key("cold")
        if backend_name == "evm":
            await chain.client._as(hot)
        number, block_hash = await chain.head()
        bad = 0
        while chain.seal_ok(block_hash, hot, bad, 64):
            bad += 1
        with pytest.raises(ChainError) as err:
            await chain.register(hot, cold, number, bad)
        assert code_of(err.value) == "invalid_seal"
        number, block_hash = await chain.head()
        good = 0
        while not chain.seal_ok(block_hash, hot, good, 64):
            good += 1
        await chain.advance(5)
        with pytest.raises(ChainError) as err:
            await chain.register(hot, cold, number, good)
        assert code_of(err.value) == "stale_block"
        number, _ = await chain.head()
        with pytest.raises(ChainError) as err:
            await chain.register(hot, cold, number + 1, 0)
        assert code_of(err.value) == "unknown_block"
        assert await register_now(chain, hot, cold) == 0
    finally:
        await chain.close()


async def test_difficulty_rises_under_a_flood_and_falls_when_idle(backend_name: str, tmp: Path) -> None:
    chain = await make_backend(backend_name, tmp, difficulty=8, adjustment_interval=20,
                               target_registrations_per_interval=1)
    try:
        start = await chain.difficulty()
        for i in range(4):
            await register_now(chain, key(f"h{i}"), key("cold"))
        await chain.advance(20)
        raised = await chain.difficulty()
        assert raised > start
        await chain.advance(40)
        assert await chain.difficulty() < raised
    finally:
        await chain.close()


async def test_full_subnet_prunes_the_lowest_emission_and_respects_immunity(backend_name: str, tmp: Path) -> None:
    chain = await make_backend(backend_name, tmp, max_allowed_uids=3, immunity_period=30)
    try:
        cold = key("cold")
        for i in range(3):
            assert await register_now(chain, key(f"h{i}"), cold) == i
        with pytest.raises(ChainError) as err:
            await register_now(chain, key("late"), cold)
        assert code_of(err.value) == "subnet_full"
        await chain.advance(31)
        # All emissions are zero: the earliest registration (uid 0) goes first.
        assert await register_now(chain, key("new"), cold) == 0
        mg = await chain.metagraph()
        assert mg.neurons[0].hotkey == key("new").public_hex
        assert mg.by_hotkey(key("h0").public_hex) is None
    finally:
        await chain.close()


async def test_stake_and_transfer_move_exact_amounts(backend_name: str, tmp: Path) -> None:
    cold, other = key("cold"), key("other")
    chain = await make_backend(backend_name, tmp, funded={cold: 100 * TOKEN, other: 1 * TOKEN})
    try:
        hot = key("hot")
        await register_now(chain, hot, cold)
        await chain.transfer(cold, other.public_hex, 5 * TOKEN)
        assert await chain.balance(other.public_hex) == 6 * TOKEN
        assert await chain.balance(cold.public_hex) == 95 * TOKEN
        await chain.add_stake(cold, hot.public_hex, 10 * TOKEN)
        assert await chain.total_stake(hot.public_hex) == 10 * TOKEN
        assert await chain.balance(cold.public_hex) == 85 * TOKEN
        await chain.remove_stake(cold, hot.public_hex, 4 * TOKEN)
        assert await chain.total_stake(hot.public_hex) == 6 * TOKEN
        assert await chain.balance(cold.public_hex) == 89 * TOKEN
        with pytest.raises(ChainError) as err:
            await chain.remove_stake(cold, hot.public_hex, 7 * TOKEN)
        assert code_of(err.value) == "insufficient_stake"
        with pytest.raises(ChainError) as err:
            await chain.transfer(cold, other.public_hex, 1000 * TOKEN)
        assert code_of(err.value) == "insufficient_balance"
    finally:
        await chain.close()


async def test_weights_rules(backend_name: str, tmp: Path) -> None:
    chain = await make_backend(backend_name, tmp, min_allowed_weights=2, max_weight_limit=0.6, weights_version=3,
                               weights_rate_limit=5)
    try:
        cold, val = key("cold"), key("val")
        for i in range(3):
            await register_now(chain, key(f"m{i}") if i else val, cold)
        cases = [
            (WeightVector((1,), (65535,)), 3, "too_few_weights"),
            (WeightVector((1, 2), (65535, 100)), 3, "max_weight_exceeded"),
            (WeightVector((1, 7), (1, 1)), 3, "uid_out_of_range"),
            (WeightVector((1, 2), (1, 1)), 2, "incorrect_weights_version"),
        ]
        for vector, version, code in cases:
            with pytest.raises(ChainError) as err:
                await chain.set_weights(val, vector, version)
            assert code_of(err.value) == code, (vector, code)
        await chain.set_weights(val, WeightVector((1, 2), (1, 1)), 3)
        with pytest.raises(ChainError) as err:
            await chain.set_weights(val, WeightVector((1, 2), (1, 1)), 3)
        assert code_of(err.value) == "rate_limited"
        with pytest.raises(ChainError) as err:
            await chain.set_weights(key("nobody"), WeightVector((1, 2), (1, 1)), 3)
        assert code_of(err.value) in ("not_registered", "unbound_account")
    finally:
        await chain.close()


async def test_commit_reveal_early_wrong_salt_and_expired(backend_name: str, tmp: Path) -> None:
    chain = await make_backend(backend_name, tmp, commit_reveal_weights_enabled=True, commit_reveal_period=4,
                               commit_reveal_window=4)
    try:
        cold, val = key("cold"), key("val")
        await register_now(chain, val, cold)
        await register_now(chain, key("m1"), cold)
        vector = WeightVector((1,), (65535,))
        with pytest.raises(ChainError) as err:
            await chain.set_weights(val, vector)
        assert code_of(err.value) == "commit_reveal_enabled"
        await chain.commit_weights(val, vector.commit_hash(val.public_hex, "salt"))
        with pytest.raises(ChainError) as err:
            await chain.reveal_weights(val, vector, "salt")
        assert code_of(err.value) == "reveal_too_early"
        await chain.advance(4)
        with pytest.raises(ChainError) as err:
            await chain.reveal_weights(val, vector, "wrong")
        assert code_of(err.value) == "commit_mismatch"
        await chain.reveal_weights(val, vector, "salt")
        await chain.commit_weights(val, vector.commit_hash(val.public_hex, "again"))
        await chain.advance(12)
        with pytest.raises(ChainError) as err:
            await chain.reveal_weights(val, vector, "again")
        assert code_of(err.value) in ("commit_expired", "no_commit")
    finally:
        await chain.close()


async def test_epoch_payouts_follow_yuma(backend_name: str, tmp: Path) -> None:
    from tnode.yuma import YumaParams, epoch

    cold = key("cold")
    chain = await make_backend(backend_name, tmp, funded={cold: 1000 * TOKEN}, tempo=20, block_emission=1.0,
                               activity_cutoff=1000)
    try:
        vals, miners = [key("v0"), key("v1")], [key("m0"), key("m1"), key("m2")]
        for k in vals + miners:
            await register_now(chain, k, cold)
        await chain.add_stake(cold, vals[0].public_hex, 60 * TOKEN)
        await chain.add_stake(cold, vals[1].public_hex, 40 * TOKEN)
        rows = [(0, WeightVector((2, 3, 4), (65535, 30000, 1000))), (1, WeightVector((2, 3, 4), (50000, 65535, 0)))]
        for uid, vector in rows:
            await chain.set_weights(vals[uid], vector)
        mg = await chain.metagraph()
        emission = np.array(await chain.run_epoch(), dtype=np.float64)
        n = mg.n
        w = np.zeros((n, n), dtype=np.float32)
        for uid, vector in rows:
            for c, v in zip(vector.uids, vector.values, strict=True):
                w[uid, c] = v
        stake = np.array([nr.stake for nr in mg.neurons])
        expected = epoch(w, stake, None, YumaParams(), validator_permit=np.ones(n, bool)).emission_share
        assert emission.sum() > 0
        np.testing.assert_allclose(emission / emission.sum(), expected, atol=1e-6)
    finally:
        await chain.close()
