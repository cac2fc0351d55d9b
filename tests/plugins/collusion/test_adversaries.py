"""The adversaries on their own: a relay's rebuilt distributions, a lazy miner's mix, a copier's
weights, and the devnet's adversary checks on a constructed report."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import structlog
from tnode.interfaces import Metagraph, Neuron
from tnode.plugins.collusion.adversary_config import LazyMinerConfig
from tnode.plugins.collusion.adversary_miners import LazyModel, full_distribution, log_softmax
from tnode.plugins.collusion.adversary_validators import copied_weights
from tnode.plugins.validator.devnet.adversaries import adversary_checks, parse_adversaries
from tnode.plugins.validator.devnet.plan import DevnetOptions, make_plan


def test_a_top_k_answer_becomes_a_full_distribution_with_the_same_top_k() -> None:
    rng = np.random.default_rng(0)
    full = log_softmax(rng.normal(0, 2, (5, 256)))
    ids = np.argsort(-full, axis=-1)[:, :16]
    values = np.take_along_axis(full, ids, axis=-1)
    rebuilt = full_distribution(ids, values)
    assert np.allclose(np.exp(rebuilt.astype(np.float64)).sum(axis=-1), 1.0, atol=1e-5)
    assert np.array_equal(np.sort(np.argsort(-rebuilt, axis=-1)[:, :16], axis=-1), np.sort(ids, axis=-1))
    assert np.allclose(np.take_along_axis(rebuilt, ids, axis=-1), values)


class Fixed:
    """An inner model answering one fixed distribution."""

    vocab_size = 256

    def __init__(self) -> None:
        self.row = log_softmax(np.random.default_rng(1).normal(0, 2, 256))

    def next_token_logprobs(self, tokens: np.ndarray) -> np.ndarray:
        b, t = tokens.shape
        return np.broadcast_to(self.row, (b, t, 256)).copy()


def test_a_lazy_model_answers_well_on_its_fraction_of_tasks_only() -> None:
    inner = Fixed()
    node = SimpleNamespace(log=structlog.get_logger())
    lazy = LazyModel(node, "main", LazyMinerConfig(model="honest", fraction=0.3, seed=4))
    lazy.inner = inner
    out = lazy.next_token_logprobs(np.zeros((400, 3), dtype=np.int64))
    good = np.all(np.isclose(out, inner.row), axis=(1, 2))
    assert 0.22 < good.mean() < 0.38
    assert lazy.good == int(good.sum()) and lazy.junk == 400 - lazy.good
    assert np.allclose(np.exp(out[~good].astype(np.float64)).sum(axis=-1), 1.0, atol=1e-4)


def metagraph(weights: np.ndarray, stake: list[float]) -> Metagraph:
    neurons = tuple(Neuron(uid=u, hotkey=f"{u:064x}", coldkey=f"c{u}", stake=s) for u, s in enumerate(stake))
    return Metagraph(block=10, netuid=1, neurons=neurons, weights=weights)


def test_a_copier_sets_the_stake_weighted_mean_and_a_cabal_boosts_its_miner() -> None:
    w = np.zeros((6, 6))
    w[0, 3:] = [0.6, 0.3, 0.1]
    w[1, 3:] = [0.2, 0.4, 0.4]
    mg = metagraph(w, [3.0, 1.0, 1.0, 0, 0, 0])
    copy = copied_weights(mg, own_uid=2)
    assert copy is not None
    assert np.allclose(copy, [0, 0, 0, 0.5, 0.325, 0.175])
    cabal = copied_weights(mg, own_uid=2, boost_uid=5, boost=0.5)
    assert cabal is not None and np.isclose(cabal[5], 0.5 + 0.5 * 0.175) and np.isclose(cabal.sum(), 1.0)
    assert copied_weights(metagraph(np.zeros((6, 6)), [1.0] * 6), own_uid=2) is None


def test_unknown_adversaries_are_refused_by_name() -> None:
    assert parse_adversaries("relay, lazy,copier") == ("relay", "lazy", "copier")
    with pytest.raises(ValueError, match="unknown adversary sybil"):
        parse_adversaries("relay,sybil")


def test_the_plan_places_adversaries_a_twin_and_the_chain_verdict(tmp_path: Path) -> None:
    plan = make_plan(DevnetOptions(run_dir=tmp_path, miners=2, validators=1, models=("ngram", "uniform"),
                                   adversaries=("relay", "lazy", "copier"), registration="genesis"))
    assert [(m.name, m.model, m.adversary, m.twin_of) for m in plan.miners] == [
        ("miner0", "ngram", "", ""), ("miner1", "uniform", "", ""), ("miner2", "ngram", "", "miner0"),
        ("relay0", "relay", "relay", ""), ("lazy0", "lazy", "lazy", "")]
    relay = next(m for m in plan.miners if m.adversary == "relay")
    assert relay.doc["models"]["main"] == {"type": "relay", "source": plan.miners[0].hotkey.public_hex}
    copier = next(v for v in plan.validators if v.adversary == "copier")
    assert copier.doc["validator"]["type"] == "copier"
    assert plan.authority.doc["collusion"]["weight_copy"]["action"] == "scale"
    honest = plan.validators[0].doc
    assert honest["scorers"]["guard"]["duplicates"] == "off"


def report_of(plan: Any, emission: dict[str, float], stake: dict[str, float]) -> dict[str, Any]:
    rows = []
    for n in [*plan.validators, *plan.miners]:
        rows.append({"hotkey": n.hotkey.public_hex, "role": n.role, "emission_total": emission.get(n.name, 0.0),
                     "stake": stake.get(n.name, 0.0)})
    return {"neurons": rows, "checks": {"spearman_incentive_vs_heldout_quality": 1.0}}


def test_adversary_checks_count_recall_precision_pay_and_dividends(tmp_path: Path) -> None:
    plan = make_plan(DevnetOptions(run_dir=tmp_path, miners=2, validators=1, models=("ngram", "uniform"),
                                   adversaries=("relay", "copier"), registration="genesis"))
    key = {n.name: n.hotkey.public_hex for n in [*plan.validators, *plan.miners]}
    emission = {"miner0": 60.0, "miner1": 10.0, "miner2": 60.0, "relay0": 0.5, "validator0": 70.0, "copier0": 40.0}
    stake = {"validator0": 1070.0, "copier0": 1040.0}
    suspects = [{"kind": "relay", "members": [key["relay0"]]}, {"kind": "weight_copy", "members": [key["copier0"]]},
                {"kind": "shared_address", "members": [key["miner0"], key["miner1"]]}]
    checks = adversary_checks(plan, report_of(plan, emission, stake), suspects)
    assert checks["adversaries_flagged"] == {"copier0": True, "relay0": True}
    assert checks["adversary_recall"] == 1.0 and checks["adversary_precision"] == 1.0
    assert checks["honest_twins"] == {"miner2": "miner0"}
    assert checks["adversary_miner_emission_share"]["relay0"] == pytest.approx(0.5 / 130.5)
    assert checks["copier_below_every_honest_validator"] and checks["adversary_checks_passed"]
    # A flagged twin costs precision; a copier paid like an honest validator fails its check.
    suspects.append({"kind": "relay", "members": [key["miner2"]]})
    checks = adversary_checks(plan, report_of(plan, emission, {"validator0": 1070.0, "copier0": 500.0}), suspects)
    assert checks["honest_flagged"] == ["miner2"] and checks["adversary_precision"] == pytest.approx(2 / 3)
    assert not checks["copier_below_every_honest_validator"] and not checks["adversary_checks_passed"]


def test_a_late_copier_of_agreeing_honest_validators_stands_out() -> None:
    from tnode.plugins.collusion.validators import copy_ratios

    rng = np.random.default_rng(5)
    quality = rng.uniform(0.2, 1.0, 12)
    stake = np.zeros(16)
    stake[:4] = 1.0  # uids 0-2 honest validators, 3 the copier, 4-15 miners
    previous = None
    for _ in range(6):
        w = np.zeros((16, 16))
        for v in range(3):  # honest validators measuring with little noise: they nearly agree
            w[v, 4:] = quality * (1 + rng.normal(0, 0.02, 12))
        w[:3] /= w[:3].sum(axis=1, keepdims=True)
        w[3] = (previous if previous is not None else w)[:3].mean(axis=0)  # the mean, one reveal late
        if previous is not None:
            ratios = copy_ratios(w, previous, stake)
            assert ratios[3] <= 0.35, ratios
            assert (ratios[:3] > 0.35).all(), ratios
        previous = w
