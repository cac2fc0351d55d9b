"""Yuma consensus: conformance with subtensor's published test vectors, and properties.

Expected numbers marked "subtensor" come from opentensor/subtensor, pallets/subtensor/src/tests/
epoch.rs and tests/math.rs (the asserted values, and the traced values in the comments next to
them). Subtensor computes in I32F32 fixed point and stores u16; we compare after the same u16
quantization, to 1e-4 on the [0, 1] scale.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tnode.plugins.chain_local import yuma
from tnode.plugins.chain_local.yuma import (
    EpochResult,
    YumaParams,
    epoch,
    quantize_bonds,
    quantize_weights,
    weighted_quantile_cols,
)

U16 = 65535
# Subtensor's defaults as its tests run them: kappa = 32767/65535, bonds_moving_average = 900_000
# millionths, bonds_penalty = u16::MAX.
SUBTENSOR = YumaParams(kappa=32767 / U16, bonds_penalty=1.0, bonds_moving_average=0.9)
TOL = 1e-4


def u16_weights(n: int, rows: dict[int, dict[int, int]]) -> np.ndarray:
    """Dense (n, n) weights from {uid: {target: u16}} after the chain's max-upscale."""
    w = np.zeros((n, n))
    for i, row in rows.items():
        for j, v in row.items():
            w[i, j] = v
    return quantize_weights(w).astype(np.float64)


def bonds_u16(result: EpochResult) -> np.ndarray:
    return quantize_bonds(result.bonds).astype(np.int64)


def assert_close(actual: np.ndarray, expected: list[float], what: str) -> None:
    np.testing.assert_allclose(np.asarray(actual)[: len(expected)], expected, atol=TOL, err_msg=what)


def assert_u16(actual: np.ndarray, expected: list[int], what: str) -> None:
    np.testing.assert_allclose(np.asarray(actual) / U16, np.asarray(expected) / U16, atol=TOL, err_msg=what)


# ------------------------------------------------------------------------------ weighted quantile
@pytest.mark.parametrize(
    ("stake", "values", "kappa", "expected"),
    [
        # subtensor tests/math.rs test_math_weighted_median (one column each, majority 0.51)
        ([0.51], [1.0], 0.51, 1.0),
        ([0.49, 0.51], [0.5, 1.0], 0.51, 1.0),
        ([0.51, 0.49], [0.5, 1.0], 0.51, 0.5),
        ([0.49, 0.0, 0.51], [0.5, 0.7, 1.0], 0.51, 1.0),
        ([0.49, 0.01, 0.5], [0.5, 0.7, 1.0], 0.51, 0.7),
        ([0.49, 0.51, 0.0], [0.5, 0.7, 1.0], 0.51, 0.7),
        ([0.0, 0.49, 0.51], [0.5, 0.7, 1.0], 0.51, 1.0),
        ([0.0, 0.49, 0.0, 0.51], [0.5, 0.5, 1.0, 1.0], 0.51, 1.0),
        ([0.0, 0.49, 0.0, 0.51, 0.0], [0.5, 0.5, 1.0, 1.0, 0.5], 0.51, 1.0),
        ([0.2] * 5, [0.8, 0.2, 1.0, 0.6, 0.4], 0.51, 0.6),
        ([0.1] * 10, [0.8, 0.8, 0.2, 0.2, 1.0, 1.0, 0.6, 0.6, 0.4, 0.4], 0.51, 0.6),
    ],
)
def test_weighted_median_matches_subtensor(stake: list[float], values: list[float], kappa: float,
                                           expected: float) -> None:
    got = weighted_quantile_cols(stake, np.array(values)[:, None], kappa)
    assert got[0] == pytest.approx(expected, abs=1e-7)


@pytest.mark.parametrize(
    ("stake", "kappa", "expected"),
    [  # subtensor tests/math.rs test_math_weighted_median_col
        ([0.0, 0.75, 0.25, 0.0], 0.24, [0.0, 0.3, 0.4]),
        ([0.0, 0.75, 0.25, 0.0], 0.26, [0.0, 0.2, 0.4]),
        ([0.0, 0.75, 0.25, 0.0], 0.76, [0.0, 0.2, 0.1]),
    ],
)
def test_weighted_median_col_matches_subtensor(stake: list[float], kappa: float, expected: list[float]) -> None:
    values = np.array([0.0, 0.1, 0.0, 0.0, 0.2, 0.4, 0.0, 0.3, 0.1, 0.0, 0.4, 0.5]).reshape(4, 3)
    np.testing.assert_allclose(weighted_quantile_cols(stake, values, kappa), expected, atol=1e-7)


def test_weighted_median_col_second_case_matches_subtensor() -> None:
    values = np.array([0.0, 0.1, 0.0, 0.0, 0.2, 0.4, 0.0, 0.3, 0.1, 0.0, 0.0, 0.5]).reshape(4, 3)
    np.testing.assert_allclose(weighted_quantile_cols([0.0, 0.3, 0.2, 0.5], values, 0.51), [0.0, 0.0, 0.4], atol=1e-7)
    # No stake at all: subtensor returns zeros.
    np.testing.assert_array_equal(weighted_quantile_cols([0.0, 0.0], np.zeros((2, 2)), 0.5), [0.0, 0.0])


def brute_force_quantile(stake: np.ndarray, values: np.ndarray, kappa: float) -> np.ndarray:
    """The definition, column by column: the largest entry w with Σ stake[v ≥ w] ≥ κ·Σ stake."""
    total = stake.sum()
    out = np.zeros(values.shape[1])
    for j in range(values.shape[1]):
        candidates = [v for v, s in zip(values[:, j], stake, strict=True) if s > 0]
        ok = [w for w in candidates if stake[values[:, j] >= w].sum() >= kappa * total - 1e-12]
        out[j] = max(ok) if ok else 0.0
    return out


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 9), st.integers(1, 6), st.sampled_from([0.0, 0.25, 0.5, 0.51, 0.9, 1.0]), st.integers(0, 2**32 - 1))
def test_weighted_quantile_is_the_definition(rows: int, cols: int, kappa: float, seed: int) -> None:
    rng = np.random.default_rng(seed)
    stake = rng.integers(0, 4, rows).astype(np.float64)  # small integers: exact ties happen
    values = rng.integers(0, 5, (rows, cols)) / 4.0
    got = weighted_quantile_cols(stake, values, kappa)
    np.testing.assert_allclose(got, brute_force_quantile(stake, values, kappa), atol=1e-7)


def test_equal_stake_tie_at_half_resolves_up() -> None:
    # Two equal validators at κ = 0.5: half the stake weights 0.8 or more, which is enough.
    assert weighted_quantile_cols([1.0, 1.0], np.array([[0.2], [0.8]]), 0.5)[0] == pytest.approx(0.8)


# ------------------------------------------------------------------------ subtensor conformance
def test_bonds_sequence_matches_subtensor() -> None:
    """subtensor epoch.rs test_bonds: 4 validators (stake 1..4), 4 servers, 8 epochs."""
    n = 8
    stake = [1, 2, 3, 4, 0, 0, 0, 0]
    srv = {4: U16 // 4, 5: U16 // 2, 6: (U16 // 4) * 3, 7: U16}
    rows = {0: srv, 1: srv, 2: srv, 3: srv}
    last_update = np.array([1, 1, 1, 1, 0, 0, 0, 0])
    registered = np.zeros(n, dtype=np.int64)
    stored = None

    def run() -> EpochResult:
        nonlocal stored
        result = epoch(u16_weights(n, rows), stake, stored, SUBTENSOR, last_update=last_update,
                       registered_at=registered, total_emission=1e9)
        stored = bonds_u16(result).astype(np.float64)
        return result

    r = run()
    assert_u16(bonds_u16(r)[:4, 4], [16383, 32767, 49151, 65535], "epoch 1 bonds")
    assert_close(r.dividends, [0.1, 0.2, 0.3, 0.4], "epoch 1 dividends")
    assert_close(r.incentive[4:], [0.0999975582, 0.2000012207, 0.2999926752, 0.4000085455], "epoch 1 incentive")
    assert_close(r.emission_share, [0.05, 0.1, 0.15, 0.2, 0.049998779, 0.1000006103, 0.1499963375, 0.2000042726],
                 "epoch 1 emission")
    assert_close(r.validator_trust, [1, 1, 1, 1, 0, 0, 0, 0], "epoch 1 validator trust")

    rows[0] = {0: U16}  # self-weight only: masked
    r = run()
    assert_u16(bonds_u16(r)[:4, 4], [14582, 32767, 49151, 65535], "epoch 2 bonds")
    assert_close(r.dividends, [0.0899967032, 0.2022211233, 0.303334432, 0.404447741], "epoch 2 dividends")
    assert_close(r.validator_trust, [0, 1, 1, 1], "epoch 2 validator trust")

    rows[1] = {1: U16}
    r = run()
    assert_u16(bonds_u16(r)[:4, 4], [12603, 28321, 49151, 65535], "epoch 3 bonds")
    assert_close(r.dividends, [0.0809936118, 0.1819995677, 0.3158592721, 0.421147548], "epoch 3 dividends")

    rows[2] = {2: U16}  # only validator 4 (stake 0.4 < κ) is left: no consensus, emission by stake
    r = run()
    assert_u16(bonds_u16(r)[:4, 7], [12602, 28320, 49150, 65535], "epoch 4 bonds")
    assert_close(r.consensus, [0] * 8, "epoch 4 consensus")
    assert_close(r.dividends, [0, 0, 0, 0], "epoch 4 dividends")
    assert_close(r.emission_share, [0.1, 0.2, 0.3, 0.4, 0, 0, 0, 0], "epoch 4 emission")

    rows[2] = {7: U16}
    r = run()
    assert_u16(bonds_u16(r)[:4, 7], [10951, 24609, 49150, 65535], "epoch 5 bonds")
    assert_close(r.consensus[4:], [0, 0, 0, 0.400008545], "epoch 5 consensus")
    assert_close(r.trust[7:], [0.6087041323], "epoch 5 trust")
    assert_close(r.validator_trust, [0, 0, 0.400008545, 0.400008545], "epoch 5 validator trust")
    assert_close(r.dividends, [0.0728874663, 0.1637972582, 0.3271309866, 0.4361842885], "epoch 5 dividends")
    assert_close(r.emission_share, [0.0364437331, 0.081898629, 0.1635654932, 0.2180921442, 0, 0, 0, 0.5],
                 "epoch 5 emission")

    r = run()
    assert_u16(bonds_u16(r)[:4, 7], [9559, 21482, 49150, 65535], "epoch 6 bonds")
    assert_close(r.dividends, [0.0655988548, 0.1474132247, 0.3372762585, 0.4497116616], "epoch 6 dividends")

    r = run()
    assert_u16(bonds_u16(r)[:4, 7], [8376, 18824, 49150, 65535], "epoch 7 bonds")
    assert_close(r.dividends, [0.0590361361, 0.1326722752, 0.3464062694, 0.4618853189], "epoch 7 dividends")

    r = run()
    assert_close(r.dividends, [0.053130352, 0.1194037423, 0.3546237142, 0.472842191], "epoch 8 dividends")
    assert_close(quantize_bonds(r.bonds)[:4, 7] / U16, [0.1123638137, 0.2525234516, 0.7499832308, 1.0],
                 "epoch 8 bonds")


def test_active_stake_matches_subtensor() -> None:
    """subtensor epoch.rs test_active_stake: an inactive validator keeps bonds but earns less."""
    n = 4
    stake = [1, 1, 1, 1]
    rows = {0: {2: U16 // 2, 3: U16 // 2}, 1: {2: U16 // 2, 3: U16 // 2}}
    w = u16_weights(n, rows)
    r = epoch(w, stake, None, SUBTENSOR, total_emission=1e9)
    assert_u16(np.floor(r.dividends[:2] * U16), [32767, 32767], "epoch 1 dividends")
    np.testing.assert_allclose(r.emission, [250_000_000] * 4, rtol=TOL)
    assert_u16(bonds_u16(r)[:2, 2:], [[65535, 65535], [65535, 65535]], "epoch 1 bonds")

    # Block 5002, activity cutoff 5000: validator 1 (last update 1) is inactive.
    last_update = np.array([5002, 1, 0, 0])
    r = epoch(w, stake, bonds_u16(r), SUBTENSOR, active=last_update + 5000 >= 5002, total_emission=1e9)
    assert_u16(np.floor(r.dividends[:2] * U16), [36044, 29490], "epoch 2 dividends")
    np.testing.assert_allclose(r.emission[:2], [274_999_999, 224_999_999], rtol=TOL)
    assert_u16(bonds_u16(r)[:2, 2:], [[65535, 65535], [53619, 53619]], "epoch 2 bonds")

    last_update = np.array([5002, 5002, 0, 0])
    r = epoch(w, stake, bonds_u16(r), SUBTENSOR, active=last_update + 5000 >= 5003, total_emission=1e9)
    assert_u16(np.floor(r.dividends[:2] * U16), [35716, 29818], "epoch 3 dividends")
    np.testing.assert_allclose(r.emission[:2], [272_501_132, 227_498_866], rtol=TOL)
    assert_u16(bonds_u16(r)[:2, 2:], [[65535, 65535], [54712, 54712]], "epoch 3 bonds")


def test_outdated_weights_match_subtensor() -> None:
    """subtensor epoch.rs test_outdated_weights: weights set before a uid re-registered are dropped."""
    n = 4
    rows = {0: {2: 2 * (U16 // 3), 3: U16 // 3}, 1: {2: 2 * (U16 // 3), 3: U16 // 3}, 2: {2: U16}, 3: {3: U16}}
    r = epoch(u16_weights(n, rows), [1, 1, 1, 1], None, SUBTENSOR, last_update=[1, 1, 1, 1],
              registered_at=[0, 0, 0, 0], total_emission=1e9)
    assert_close(r.dividends, [0.5, 0.5, 0, 0], "epoch 1 dividends")
    assert_close(r.emission_share, [0.25, 0.25, 0.3333316378, 0.166668362], "epoch 1 emission")
    # uid 3 is replaced at block 1 by a hotkey without stake or permit; uid 0 sets weights again at 2.
    r = epoch(u16_weights(n, rows), [1, 1, 1, 0], bonds_u16(r), SUBTENSOR, last_update=[2, 1, 1, 1],
              registered_at=[0, 0, 0, 1], validator_permit=[True, True, True, False], total_emission=1e9)
    assert_close(r.consensus, [0, 0, 0.6666632756, 0], "epoch 2 consensus")
    assert_close(r.incentive, [0, 0, 1, 0], "epoch 2 incentive")
    assert_close(r.trust, [0, 0, 0.799997558, 0], "epoch 2 trust")
    assert_u16(np.floor(r.dividends[:1] * U16), [32767], "epoch 2 dividend of uid 0")
    np.testing.assert_allclose(r.emission[0], 250_000_000, rtol=TOL)
    assert_u16(bonds_u16(r)[0, 2:], [65535, 65535], "epoch 2 bonds of uid 0")


def test_zero_weights_fall_back_to_stake_like_subtensor() -> None:
    """subtensor epoch.rs test_zero_weights: no usable weights → emission by stake."""
    stake = [1, 0]
    no_weights = np.zeros((2, 2))
    r = epoch(no_weights, stake, None, SUBTENSOR, last_update=[0, 0], registered_at=[0, 0], total_emission=1e9)
    np.testing.assert_allclose(r.emission, [1e9, 0])
    self_only = u16_weights(2, {1: {1: U16}})
    r = epoch(self_only, stake, None, SUBTENSOR, last_update=[0, 1], registered_at=[0, 0], total_emission=1e9)
    np.testing.assert_allclose(r.emission, [1e9, 0])
    to_server = u16_weights(2, {0: {1: U16}})
    # The server re-registered at block 2, when the validator's weights were set: outdated.
    r = epoch(to_server, stake, None, SUBTENSOR, last_update=[2, 1], registered_at=[0, 2], total_emission=1e9)
    np.testing.assert_allclose(r.emission, [1e9, 0])
    r = epoch(to_server, stake, None, SUBTENSOR, last_update=[3, 1], registered_at=[0, 2], total_emission=1e9)
    np.testing.assert_allclose(r.emission, [5e8, 5e8])


# ------------------------------------------------------------------------------------- properties
def random_subnet(rng: np.random.Generator, n_rows: int, n_uids: int) -> dict[str, np.ndarray]:
    w = rng.random((n_rows, n_uids)) * (rng.random((n_rows, n_uids)) < 0.7)
    return {"weights": w, "stake": rng.lognormal(3, 1, n_rows), "bonds": rng.random((n_rows, n_uids))}


def test_sums_are_one_and_shapes_per_uid() -> None:
    x = random_subnet(np.random.default_rng(1), 16, 64)
    r = epoch(x["weights"], x["stake"], x["bonds"], YumaParams(), total_emission=1000.0)
    assert r.incentive.sum() == pytest.approx(1.0, abs=1e-6)
    assert r.dividends.sum() == pytest.approx(1.0, abs=1e-6)
    assert r.emission_share.sum() == pytest.approx(1.0, abs=1e-6)
    assert r.emission.sum() == pytest.approx(1000.0, rel=1e-6)
    assert r.server_emission.sum() == pytest.approx(0.5, abs=1e-6)
    for name in ("consensus", "rank", "trust", "incentive", "dividends", "validator_trust", "emission"):
        assert getattr(r, name).shape == (64,)
    assert r.bonds.shape == (16, 64)
    col_sums = r.bonds.sum(axis=0)
    assert np.all((np.abs(col_sums - 1) < 1e-5) | (col_sums == 0))
    assert np.all(r.consensus <= 1.0) and np.all(r.trust <= 1.0 + 1e-6)


def test_no_stake_means_no_emission() -> None:
    r = epoch(np.ones((2, 4)), [0, 0], None, YumaParams(), total_emission=10.0)
    assert r.incentive.sum() == 0 and r.emission.sum() == 0


def test_self_weight_is_ignored() -> None:
    x = random_subnet(np.random.default_rng(2), 8, 20)
    base = epoch(x["weights"], x["stake"], x["bonds"], YumaParams())
    w = x["weights"].copy()
    w[np.arange(8), np.arange(8)] = 100.0  # every validator votes massively for itself
    changed = epoch(w, x["stake"], x["bonds"], YumaParams())
    np.testing.assert_allclose(changed.incentive, base.incentive, atol=1e-6)
    np.testing.assert_allclose(changed.bonds, base.bonds, atol=1e-6)


def test_non_permit_rows_are_ignored() -> None:
    x = random_subnet(np.random.default_rng(3), 8, 20)
    permit = np.array([True] * 6 + [False] * 2)
    base = epoch(x["weights"], x["stake"], x["bonds"], YumaParams(), validator_permit=permit)
    w = x["weights"].copy()
    w[6:] = np.random.default_rng(4).random((2, 20)) * 50
    changed = epoch(w, x["stake"], x["bonds"], YumaParams(), validator_permit=permit)
    np.testing.assert_allclose(changed.incentive, base.incentive, atol=1e-6)
    np.testing.assert_allclose(changed.dividends, base.dividends, atol=1e-6)
    assert np.all(changed.dividends[6:8] == 0) and np.all(changed.validator_trust[6:8] == 0)


def test_inactive_validator_does_not_shape_consensus_but_keeps_validator_trust() -> None:
    x = random_subnet(np.random.default_rng(5), 8, 20)
    active = np.array([True] * 7 + [False])
    base = epoch(x["weights"], x["stake"], x["bonds"], YumaParams(), active=active)
    w = x["weights"].copy()
    w[7] = np.random.default_rng(6).random(20)
    changed = epoch(w, x["stake"], x["bonds"], YumaParams(), active=active)
    np.testing.assert_allclose(changed.incentive, base.incentive, atol=1e-6)
    np.testing.assert_allclose(changed.consensus, base.consensus, atol=1e-7)
    assert changed.active_stake[7] == 0 and changed.validator_trust[7] > 0  # as in subtensor


def test_outdated_weights_are_masked() -> None:
    w = np.array([[0.0, 1.0, 1.0], [1.0, 0.0, 1.0]])
    r = epoch(w, [1, 1], None, YumaParams(), last_update=[10, 10], registered_at=[0, 0, 10])
    assert r.incentive[2] == 0  # both validators weighted uid 2 before it re-registered at block 10
    r = epoch(w, [1, 1], None, YumaParams(), last_update=[11, 11], registered_at=[0, 0, 10])
    assert r.incentive[2] > 0


def test_rows_for_a_subset_of_uids_equal_the_square_layout() -> None:
    rng = np.random.default_rng(7)
    n = 12
    validators = np.array([9, 2, 5])
    square = np.zeros((n, n))
    square[validators] = rng.random((3, n))
    stake = np.zeros(n)
    stake[validators] = [5.0, 3.0, 2.0]
    full = epoch(square, stake, None, YumaParams())
    rows = epoch(square[validators], stake, None, YumaParams(), row_uids=validators)
    for name in ("incentive", "dividends", "consensus", "trust", "validator_trust", "emission_share"):
        np.testing.assert_allclose(getattr(rows, name), getattr(full, name), atol=1e-6, err_msg=name)
    np.testing.assert_allclose(rows.bonds, full.bonds[validators], atol=1e-6)
    # Per-row stake gives the same as per-uid stake.
    per_row = epoch(square[validators], stake[validators], None, YumaParams(), row_uids=validators)
    np.testing.assert_allclose(per_row.incentive, full.incentive, atol=1e-6)


def test_bonds_follow_the_ema() -> None:
    x = random_subnet(np.random.default_rng(8), 6, 10)
    params = YumaParams(bonds_moving_average=0.75)
    fresh = epoch(x["weights"], x["stake"], None, params)  # no history: bonds = ΔB
    r = epoch(x["weights"], x["stake"], x["bonds"], params)
    prev = x["bonds"] / x["bonds"].sum(axis=0)
    expected = 0.25 * fresh.bonds + 0.75 * prev
    expected = expected / expected.sum(axis=0)
    np.testing.assert_allclose(r.bonds, expected, atol=1e-6)
    reset = np.zeros(10, dtype=bool)
    reset[3] = True
    dropped = epoch(x["weights"], x["stake"], x["bonds"], params, reset_bonds=reset)
    np.testing.assert_allclose(dropped.bonds[:, 3], fresh.bonds[:, 3], atol=1e-6)


def test_bonds_penalty_interpolates_between_weights_and_clipped_weights() -> None:
    w = np.array([[0.0, 0.9, 0.1], [0.5, 0.0, 0.5], [0.5, 0.5, 0.0]])
    stake = [1.0, 1.0, 1.0]
    r_full = epoch(w, stake, None, YumaParams(bonds_penalty=1.0))
    r_none = epoch(w, stake, None, YumaParams(bonds_penalty=0.0))
    r_half = epoch(w, stake, None, YumaParams(bonds_penalty=0.5))
    # Validator 0 over-weights uid 1 (0.9 > consensus 0.5): the penalty cuts its bond there.
    assert r_full.bonds[0, 1] < r_half.bonds[0, 1] < r_none.bonds[0, 1]


def test_repeated_epochs_converge_to_stake_shares() -> None:
    x = random_subnet(np.random.default_rng(9), 5, 8)
    bonds = None
    for _ in range(200):
        bonds = epoch(x["weights"] * 0 + 1, x["stake"], bonds, YumaParams()).bonds
    share = x["stake"] / x["stake"].sum()
    for j in range(5, 8):  # uids without a row of their own: every validator weighted them equally
        np.testing.assert_allclose(bonds[:, j], share, atol=1e-3)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"weights": np.ones(3)}, "2-D"),
        ({"weights": -np.ones((2, 3))}, "non-negative"),
        ({"weights": np.full((2, 3), np.nan)}, "finite"),
        ({"stake": [1.0]}, "per row"),
        ({"stake": [1.0, -1.0]}, "non-negative"),
        ({"bonds": np.ones((3, 3))}, "shape"),
        ({"active": [True]}, "active"),
        ({"row_uids": [0, 0]}, "distinct"),
        ({"row_uids": [0, 3]}, "distinct"),
        ({"registered_at": [0, 0]}, "registered_at"),
        ({"weights": np.ones((4, 3)), "stake": [1, 1, 1, 1]}, "more weight rows"),
        ({"total_emission": -1.0}, "total_emission"),
    ],
)
def test_bad_input_is_refused_clearly(kwargs: dict, message: str) -> None:
    args = {"weights": np.ones((2, 3)), "stake": [1.0, 1.0], "bonds": None}
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        epoch(args.pop("weights"), args.pop("stake"), args.pop("bonds"), YumaParams(), **args)


def test_params_are_validated() -> None:
    with pytest.raises(ValueError, match="kappa"):
        YumaParams(kappa=1.5)
    with pytest.raises(ValueError, match="bonds_moving_average"):
        YumaParams(bonds_moving_average=float("nan"))
    assert YumaParams(bonds_moving_average=0.9).alpha == pytest.approx(0.1)


def test_quantize_weights_matches_chain_storage() -> None:
    # Max-upscale with halves rounding up: 21845/43690·65535 = 32767.5 → 32768 (subtensor traces).
    np.testing.assert_array_equal(quantize_weights([0, 43690, 21845]), [0, 65535, 32768])
    np.testing.assert_array_equal(quantize_weights([[0.0, 0.0], [1.0, 3.0]]), [[0, 0], [21845, 65535]])
    np.testing.assert_array_equal(quantize_bonds([[0.25, 0.0], [1.0, 0.0]]), [[16383, 0], [65535, 0]])


def test_large_subnet_agrees_with_float64_definition() -> None:
    """A 64 × 512 epoch against a plain float64 computation of the same steps."""
    rng = np.random.default_rng(10)
    x = random_subnet(rng, 64, 512)
    params = YumaParams()
    r = epoch(x["weights"], x["stake"], x["bonds"], params)
    w = x["weights"].copy()
    w[np.arange(64), np.arange(64)] = 0
    w /= w.sum(axis=1, keepdims=True)
    a = x["stake"] / x["stake"].sum()
    c = brute_force_quantile(a, w, params.kappa)
    np.testing.assert_allclose(r.consensus, c, atol=1e-6)
    clipped = np.minimum(w, c)
    ranks = a @ clipped
    np.testing.assert_allclose(r.incentive, ranks / ranks.sum(), atol=1e-6)
    np.testing.assert_allclose(r.trust, ranks / (a @ w), atol=1e-5)
    delta = a[:, None] * clipped
    delta /= np.where(delta.sum(axis=0) > 0, delta.sum(axis=0), 1)
    prev = x["bonds"] / x["bonds"].sum(axis=0)
    b = 0.1 * delta + 0.9 * prev
    b /= b.sum(axis=0)
    np.testing.assert_allclose(r.bonds, b, atol=1e-6)
    d = b @ (ranks / ranks.sum())
    np.testing.assert_allclose(r.dividends[:64], d / d.sum(), atol=1e-6)


def test_consensus_of_a_large_subnet_matches_a_full_sort() -> None:
    """Large enough for the two-thread split: a 128 × 1500 column quantile against argsort."""
    rng = np.random.default_rng(11)
    stake = rng.lognormal(3, 1, 128)
    values = rng.random((128, 1500)) * (rng.random((128, 1500)) < 0.8)
    got = weighted_quantile_cols(stake, values, 0.5)
    a = stake / stake.sum()
    v = values.astype(np.float32).astype(np.float64)
    order = np.argsort(v, axis=0, kind="stable")
    cum = np.cumsum(a[order], axis=0)
    k = (cum <= 0.5).sum(axis=0)
    np.testing.assert_array_equal(got, np.take_along_axis(v, order, axis=0)[k, np.arange(1500)])


def test_two_thread_epoch_equals_one_thread_and_recovers_from_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(12)
    x = random_subnet(rng, 32, 1000)
    kwargs = {"active": rng.random(32) > 0.1, "last_update": rng.integers(50, 100, 32),
              "registered_at": rng.integers(0, 100, 1000)}
    monkeypatch.setattr(yuma, "_SPLIT_MIN_ENTRIES", 1)  # split even this small subnet
    monkeypatch.setattr(yuma.os, "cpu_count", lambda: 2)
    split = epoch(x["weights"], x["stake"], x["bonds"], YumaParams(bonds_penalty=0.7), **kwargs)
    with pytest.raises(ValueError, match="shape"):
        epoch(x["weights"], x["stake"], x["bonds"][:, :10], YumaParams(), **kwargs)
    with pytest.raises(ValueError, match="non-negative"):
        epoch(-x["weights"], x["stake"], x["bonds"], YumaParams(), **kwargs)
    monkeypatch.setattr(yuma, "_SPLIT_MIN_ENTRIES", 1 << 62)
    single = epoch(x["weights"], x["stake"], x["bonds"], YumaParams(bonds_penalty=0.7), **kwargs)
    for name in ("consensus", "incentive", "dividends", "trust", "validator_trust", "emission_share", "bonds"):
        np.testing.assert_allclose(getattr(split, name), getattr(single, name), atol=1e-7, err_msg=name)
