"""tnode.weights: u16 quantization, the stored form, subnet rules and the commit hash."""

from __future__ import annotations

import hashlib
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tnode.errors import ChainError
from tnode.weights import U16_MAX, WeightVector, max_upscale, quantize

HOTKEY = "ab" * 32


def codes(fn) -> str:
    with pytest.raises(ChainError) as err:
        fn()
    return err.value.code


def test_quantize_max_upscales_to_u16() -> None:
    assert quantize([0.5, 0.25, 0.0]) == [U16_MAX, 32768, 0]
    assert quantize([3.0, 1.0]) == quantize([0.75, 0.25]) == [U16_MAX, 21845]
    assert quantize([0.0, 0.0]) == [0, 0]
    assert quantize([]) == []


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -0.1])
def test_quantize_refuses_non_finite_and_negative(bad: float) -> None:
    assert codes(lambda: quantize([1.0, bad])) == "invalid_weights"


def test_max_upscale_is_idempotent_on_quantized_vectors() -> None:
    assert max_upscale([1, 2]) == [32768, U16_MAX]
    q = quantize([0.2, 0.3, 0.5])
    assert max_upscale(q) == q


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(0, 1e6), min_size=1, max_size=64))
def test_stored_form_of_a_quantized_vector_keeps_its_values(weights: list[float]) -> None:
    v = WeightVector.from_floats(list(range(len(weights))), weights)
    stored = v.max_upscaled()
    assert dict(zip(stored.uids, stored.values, strict=True)) == {u: w for u, w in zip(v.uids, v.values,
                                                                                        strict=True) if w}


def test_shape_is_checked_on_construction() -> None:
    assert codes(lambda: WeightVector((1, 2), (1,))) == "weights_length_mismatch"
    assert codes(lambda: WeightVector.from_floats([1], [0.5, 0.5])) == "weights_length_mismatch"
    assert codes(lambda: WeightVector((1, 1), (1, 1))) == "duplicate_uids"
    assert codes(lambda: WeightVector((-1,), (1,))) == "uid_out_of_range"
    assert codes(lambda: WeightVector((70000,), (1,))) == "uid_out_of_range"
    assert codes(lambda: WeightVector((True,), (1,))) == "uid_out_of_range"  # type: ignore[arg-type]
    assert codes(lambda: WeightVector((1,), (70000,))) == "invalid_weights"
    assert codes(lambda: WeightVector((1,), (1.5,))) == "invalid_weights"  # type: ignore[arg-type]


def test_lists_are_stored_as_tuples() -> None:
    v = WeightVector([3, 1], [5, 10])  # type: ignore[arg-type]
    assert v.uids == (3, 1) and v.values == (5, 10)
    assert hash(v) == hash(WeightVector((3, 1), (5, 10)))


def test_validate_returns_the_sorted_non_zero_upscaled_form() -> None:
    v = WeightVector((3, 1, 2), (10, 5, 0))
    assert v.validate(n=4) == WeightVector((1, 3), (32768, U16_MAX))
    assert v.shares == pytest.approx((10 / 15, 5 / 15, 0.0))


@pytest.mark.parametrize(("vector", "rules", "code"), [
    (WeightVector((9,), (1,)), {"n": 4}, "uid_out_of_range"),
    (WeightVector((1, 2), (5, 0)), {"n": 4, "min_allowed_weights": 2}, "too_few_weights"),
    (WeightVector((1, 2), (U16_MAX, 100)), {"n": 4, "max_weight_limit": 0.8}, "max_weight_exceeded"),
    (WeightVector((1, 2), (1, 1)), {"n": 4, "version_key": 1, "weights_version": 2}, "incorrect_weights_version"),
])
def test_validate_refuses_what_breaks_a_rule(vector: WeightVector, rules: dict, code: str) -> None:
    assert codes(lambda: vector.validate(**rules)) == code


def test_min_allowed_weights_is_capped_at_the_subnet_size() -> None:
    assert WeightVector((0, 1), (1, 1)).validate(n=2, min_allowed_weights=8).uids == (0, 1)


def test_commit_hash_is_the_documented_bytes() -> None:
    # Written out independently: H(domain ‖ hotkey ‖ count u32 BE ‖ uids u16 BE ‖ weights u16 BE ‖
    # salt length u32 BE ‖ salt ‖ version_key u64 BE), H = BLAKE2b-256.
    body = (bytes.fromhex(HOTKEY) + struct.pack(">I", 2) + struct.pack(">HH", 1, 7) + struct.pack(">HH", U16_MAX, 3)
            + struct.pack(">I", 4) + b"salt" + struct.pack(">Q", 9))
    expected = hashlib.blake2b(b"tnode-commit-v1\n" + body, digest_size=32).hexdigest()
    assert WeightVector((1, 7), (U16_MAX, 3)).commit_hash(HOTKEY, "salt", 9) == expected
    # Float weights reach the same hash once quantized: what the validator commits, the chain recomputes.
    assert WeightVector.from_floats([1, 7], [1.0, 3 / U16_MAX]).commit_hash(HOTKEY, "salt", 9) == expected


def test_commit_hash_covers_every_part() -> None:
    base = WeightVector((1, 2), (U16_MAX, 100)).commit_hash(HOTKEY, "salt", 3)
    assert WeightVector((1, 2), (U16_MAX, 101)).commit_hash(HOTKEY, "salt", 3) != base
    assert WeightVector((1, 3), (U16_MAX, 100)).commit_hash(HOTKEY, "salt", 3) != base
    assert WeightVector((1, 2), (U16_MAX, 100)).commit_hash(HOTKEY, "pepper", 3) != base
    assert WeightVector((1, 2), (U16_MAX, 100)).commit_hash(HOTKEY, "salt", 4) != base
    assert WeightVector((1, 2), (U16_MAX, 100)).commit_hash("cd" * 32, "salt", 3) != base


def test_commit_hash_refuses_bad_inputs() -> None:
    v = WeightVector((1,), (U16_MAX,))
    assert codes(lambda: v.commit_hash("zz" * 32, "s")) == "invalid_args"
    assert codes(lambda: v.commit_hash("ab" * 16, "s")) == "invalid_args"
    assert codes(lambda: v.commit_hash(HOTKEY, "x" * 1025)) == "invalid_args"
    assert codes(lambda: v.commit_hash(HOTKEY, "s", 2**64)) == "invalid_args"
    assert codes(lambda: v.commit_hash(HOTKEY, "s", -1)) == "invalid_args"
