"""Weights: quantization, rules (rate limit, minimum count, max weight, version) and commit-reveal."""

from __future__ import annotations

import pytest
from chain_helpers import Harness, key
from tnode.errors import ChainError
from tnode.weights import WeightVector, max_upscale, quantize

COLD = key("w-owner")
VAL = key("w-validator")


def subnet(make_chain, miners: int = 3, **hyper) -> Harness:
    c = make_chain([{"coldkey": COLD.public_hex, "hotkey": VAL.public_hex, "stake": 10}], **hyper)
    for i in range(miners):
        c.register(key(f"w-miner-{i}"), COLD)
    c.blocks(1)
    return c


def commit_hash_for(hotkey: str, uids: list[int], weights: list[float], salt: str, version_key: int = 0) -> str:
    return WeightVector.from_floats(uids, weights).commit_hash(hotkey, salt, version_key)


def test_quantization_is_max_upscaled_u16() -> None:
    assert quantize([0.5, 0.25, 0.0]) == [65535, 32768, 0]
    assert quantize([0, 0]) == [0, 0]
    assert max_upscale(quantize([3.0, 1.0])) == quantize([3.0, 1.0])  # idempotent on chain
    assert max_upscale([1, 2]) == [32768, 65535]
    with pytest.raises(ChainError) as err:
        quantize([1.0, float("nan")])
    assert err.value.code == "invalid_weights"


def test_set_weights_is_stored_quantized(make_chain) -> None:
    c = subnet(make_chain)
    c.submit(VAL, "set_weights", uids=[1, 2, 3], weights=quantize([0.2, 0.6, 0.2]), version_key=0)
    mg = c.ledger.metagraph(matrices=True)
    assert mg.weights[0, 2] == 1.0 and abs(mg.weights[0, 1] - 1 / 3) < 1e-4
    assert mg.neurons[0].last_update == c.ledger.head().number + 1


def test_weights_rate_limit(make_chain) -> None:
    c = subnet(make_chain, weights_rate_limit=3)
    c.submit(VAL, "set_weights", uids=[1], weights=[1], version_key=0)
    c.blocks(2)
    with pytest.raises(ChainError) as err:
        c.submit(VAL, "set_weights", uids=[2], weights=[1], version_key=0)
    assert err.value.code == "rate_limited"
    c.blocks(1)
    c.submit(VAL, "set_weights", uids=[2], weights=[1], version_key=0)


@pytest.mark.parametrize(("args", "code"), [
    ({"uids": [1, 2], "weights": [1]}, "weights_length_mismatch"),
    ({"uids": [1, 1], "weights": [1, 1]}, "duplicate_uids"),
    ({"uids": [9], "weights": [1]}, "uid_out_of_range"),
    ({"uids": [1], "weights": [70000]}, "invalid_weights"),
    ({"uids": [1, 2], "weights": [5, 0]}, "too_few_weights"),
    ({"uids": [1, 2], "weights": [65535, 100]}, "max_weight_exceeded"),
    ({"uids": [1, 2], "weights": [1, 1], "version_key": 1}, "incorrect_weights_version"),
])
def test_bad_weight_vectors_are_refused(make_chain, args, code) -> None:
    c = subnet(make_chain, min_allowed_weights=2, max_weight_limit=0.8, weights_version=2)
    with pytest.raises(ChainError) as err:
        c.submit(VAL, "set_weights", **{"version_key": 2, **args})
    assert err.value.code == code


def test_unregistered_hotkey_cannot_set_weights(make_chain) -> None:
    c = subnet(make_chain)
    with pytest.raises(ChainError) as err:
        c.submit(key("stranger"), "set_weights", uids=[0], weights=[1], version_key=0)
    assert err.value.code == "not_registered"


def test_commit_hash_is_specified_bytes() -> None:
    # H(domain ‖ hotkey ‖ count u32 BE ‖ uids u16 BE ‖ weights u16 BE ‖ salt len u32 BE ‖ salt ‖ version u64 BE)
    import hashlib

    hot = "ab" * 32
    body = (bytes.fromhex(hot) + (2).to_bytes(4, "big") + (1).to_bytes(2, "big") + (7).to_bytes(2, "big")
            + (65535).to_bytes(2, "big") + (3).to_bytes(2, "big") + (4).to_bytes(4, "big") + b"salt"
            + (9).to_bytes(8, "big"))
    expected = hashlib.blake2b(b"tnode-commit-v1\n" + body, digest_size=32).hexdigest()
    assert WeightVector((1, 7), (65535, 3)).commit_hash(hot, "salt", 9) == expected
    assert commit_hash_for(hot, [1, 7], [1.0, 3 / 65535], "salt", 9) == expected


def reveal_subnet(make_chain) -> Harness:
    return subnet(make_chain, commit_reveal_weights_enabled=True, commit_reveal_period=3, commit_reveal_window=2,
                  weights_rate_limit=0)


def test_plain_set_weights_refused_while_commit_reveal_is_on(make_chain) -> None:
    c = reveal_subnet(make_chain)
    with pytest.raises(ChainError) as err:
        c.submit(VAL, "set_weights", uids=[1], weights=[1], version_key=0)
    assert err.value.code == "commit_reveal_enabled"


def test_commit_then_reveal_in_window(make_chain) -> None:
    c = reveal_subnet(make_chain)
    uids, weights = [1, 2], [0.25, 0.75]
    digest = commit_hash_for(VAL.public_hex, uids, weights, "pepper", 0)
    committed = c.submit(VAL, "commit_weights", hash=digest)
    assert c.ledger.commits(VAL.public_hex)[0]["status"] == "waiting"
    c.blocks(committed["reveal_from"] - c.ledger.head().number - 1)
    assert c.ledger.commits(VAL.public_hex)[0]["status"] == "revealable"
    c.submit(VAL, "reveal_weights", uids=uids, weights=quantize(weights), salt="pepper", version_key=0)
    assert c.ledger.commits(VAL.public_hex) == []
    w = c.ledger.metagraph(matrices=True).weights
    assert w[0, 2] == 1.0 and abs(w[0, 1] - 1 / 3) < 1e-4


def test_early_reveal_is_refused(make_chain) -> None:
    c = reveal_subnet(make_chain)
    c.submit(VAL, "commit_weights", hash=commit_hash_for(VAL.public_hex, [1], [1.0], "s", 0))
    c.blocks(2)  # opens 3 blocks after the commit's block
    with pytest.raises(ChainError) as err:
        c.submit(VAL, "reveal_weights", uids=[1], weights=[65535], salt="s", version_key=0)
    assert err.value.code == "reveal_too_early"


def test_reveal_with_wrong_salt_is_refused(make_chain) -> None:
    c = reveal_subnet(make_chain)
    c.submit(VAL, "commit_weights", hash=commit_hash_for(VAL.public_hex, [1], [1.0], "right", 0))
    c.blocks(3)
    with pytest.raises(ChainError) as err:
        c.submit(VAL, "reveal_weights", uids=[1], weights=[65535], salt="wrong", version_key=0)
    assert err.value.code == "commit_mismatch"
    c.submit(VAL, "reveal_weights", uids=[1], weights=[65535], salt="right", version_key=0)


def test_unrevealed_commit_expires(make_chain) -> None:
    c = reveal_subnet(make_chain)
    c.submit(VAL, "commit_weights", hash=commit_hash_for(VAL.public_hex, [1], [1.0], "s", 0))
    c.blocks(5)  # window is blocks commit+3 .. commit+4
    assert c.ledger.commits(VAL.public_hex)[0]["status"] == "expired"
    with pytest.raises(ChainError) as err:
        c.submit(VAL, "reveal_weights", uids=[1], weights=[65535], salt="s", version_key=0)
    assert err.value.code == "commit_expired"
    c.blocks(3)  # expired commits are dropped after one more window
    assert c.ledger.commits(VAL.public_hex) == []
    with pytest.raises(ChainError) as err:
        c.submit(VAL, "reveal_weights", uids=[1], weights=[65535], salt="s", version_key=0)
    assert err.value.code == "no_commit"


def test_commits_are_rate_limited(make_chain) -> None:
    c = subnet(make_chain, commit_reveal_weights_enabled=True, weights_rate_limit=4)
    c.submit(VAL, "commit_weights", hash="00" * 32)
    with pytest.raises(ChainError) as err:
        c.submit(VAL, "commit_weights", hash="11" * 32)
    assert err.value.code == "rate_limited"
