"""The devnet's pieces that need no network: layout, TOML, process supervision, the report."""

from __future__ import annotations

import sys
import time
import tomllib

import pytest
from tnode.interfaces import Metagraph, Neuron
from tnode.keys import Keystore
from tnode.plugins.validator.devnet.plan import DevnetOptions, make_plan, to_toml
from tnode.plugins.validator.devnet.procs import Supervisor
from tnode.plugins.validator.devnet.report import build_report, ranks, spearman


def test_toml_round_trip() -> None:
    doc = {"node": {"name": 'a "b"', "netuid": 1}, "chain": {"type": "local", "block_time": 0.5,
           "genesis": {"accounts": [{"coldkey": "ab", "stake": 1.5, "register": True}]},
           "hyperparameters": {"tempo": 10}}, "transport": {"listen": ["/ip4/127.0.0.1/tcp/1"]}}
    assert tomllib.loads(to_toml(doc)) == doc


def test_plan_writes_one_config_and_key_pair_per_node(tmp_path) -> None:
    plan = make_plan(DevnetOptions(run_dir=tmp_path, miners=5, validators=2, checkpoint=str(tmp_path / "t.pt")))
    assert [n.name for n in plan.nodes] == ["authority", "validator0", "validator1"] + [f"miner{i}" for i in range(5)]
    assert [m.model for m in plan.miners] == ["transformer", "ngram", "uniform", "garbage", "transformer"]
    assert len({n.port for n in plan.nodes}) == 8
    for node in plan.nodes:
        doc = tomllib.loads(node.config_path.read_text())
        assert doc == node.doc
        assert Keystore(node.dir / "data").load("hotkey").public_hex == node.hotkey.public_hex
    genesis = plan.authority.doc["chain"]["genesis"]["accounts"]
    staked = [a for a in genesis if a.get("stake")]
    assert {a["hotkey"] for a in staked} == {v.hotkey.public_hex for v in plan.validators}
    assert all(a["register"] for a in staked)
    assert plan.miners[0].doc["chain"]["authority"] == plan.authority.p2p_addr
    assert plan.validators[0].doc["validator"]["modality"] == "text"


def test_plan_is_reused_when_run_again(tmp_path) -> None:
    first = make_plan(DevnetOptions(run_dir=tmp_path, miners=1, validators=1, models=("ngram",)))
    again = make_plan(DevnetOptions(run_dir=tmp_path, miners=1, validators=1, models=("ngram",)))
    assert first.miners[0].hotkey.public_hex == again.miners[0].hotkey.public_hex


def test_a_transformer_miner_needs_a_trained_checkpoint(tmp_path) -> None:
    with pytest.raises(ValueError, match="checkpoint"):
        make_plan(DevnetOptions(run_dir=tmp_path, miners=1, validators=1, checkpoint="train"))


def test_transformer_miners_serve_the_builtin_model_by_default(tmp_path) -> None:
    plan = make_plan(DevnetOptions(run_dir=tmp_path, miners=1, validators=1))
    assert plan.miners[0].doc["models"]["main"]["checkpoint"] == "builtin"


STUBBORN = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('up', flush=True); time.sleep(60)"
POLITE = "import time; print('up', flush=True); time.sleep(60)"


def test_stop_all_terminates_then_kills(tmp_path) -> None:
    sup = Supervisor()
    polite = sup.spawn("polite", [sys.executable, "-c", POLITE], tmp_path / "p.log", cwd=tmp_path)
    stubborn = sup.spawn("stubborn", [sys.executable, "-c", STUBBORN], tmp_path / "s.log", cwd=tmp_path)
    deadline = time.monotonic() + 10
    while "up" not in stubborn.tail() and time.monotonic() < deadline:
        time.sleep(0.05)
    began = time.monotonic()
    codes = sup.stop_all(deadline=1.0)
    assert codes == {"polite": -15, "stubborn": -9}
    assert time.monotonic() - began < 5
    assert not polite.alive() and not stubborn.alive()
    assert sup.stop_all() == codes  # idempotent


def test_ranks_and_spearman() -> None:
    assert ranks([3.0, 1.0, 2.0, 1.0]).tolist() == [4.0, 1.5, 3.0, 1.5]
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [40, 30, 20, 10]) == pytest.approx(-1.0)
    assert spearman([1, 2, 3, 4], [10, 30, 20, 40]) == pytest.approx(0.8)


def test_report_checks_order_correlation_and_garbage_share() -> None:
    keys = ["v", "t", "n", "u", "g"]
    incentive = [0.0, 0.6, 0.3, 0.1, 0.0]
    neurons = tuple(Neuron(uid=i, hotkey=k, coldkey="", stake=0.0, incentive=incentive[i]) for i, k in enumerate(keys))
    models = {"t": "transformer", "n": "ngram", "u": "uniform", "g": "garbage"}
    report = build_report(
        Metagraph(100, 1, neurons), names={k: k for k in keys}, roles={k: "miner" if k != "v" else "validator"
                                                                          for k in keys},
        models=models, heldout_loss={"transformer": 1.5, "ngram": 2.0, "uniform": 5.5, "garbage": 9.0},
        emission_total={0: 5.0, 1: 3.0, 2: 1.5, 3: 0.5, 4: 0.0}, epochs=5, seconds=60.0,
        model_order=("transformer", "ngram", "uniform", "garbage"))
    checks = report["checks"]
    assert checks["incentive_ordered"] and checks["passed"]
    assert checks["spearman_incentive_vs_heldout_quality"] == pytest.approx(1.0)
    assert checks["garbage_emission_share"] == 0.0
    assert report["models"]["transformer"]["emission_share"] == pytest.approx(0.3)
