"""``tnode devnet --online-learning``: the learning miner's layout, the report's figures and checks."""

from __future__ import annotations

import subprocess
import tomllib

import pytest
from tnode.interfaces import Metagraph, Neuron
from tnode.plugins.validator.devnet.online import ONLINE_NAME, Probe, latency_summary, online_report, rises
from tnode.plugins.validator.devnet.plan import DevnetOptions, make_plan
from tnode.plugins.validator.devnet.procs import tnode_command
from tnode.plugins.validator.devnet.quality import eval_doc


def test_the_option_adds_one_untrained_miner_with_online_training(tmp_path) -> None:
    plain = make_plan(DevnetOptions(run_dir=tmp_path / "plain", miners=2, validators=1))
    plan = make_plan(DevnetOptions(run_dir=tmp_path / "online", miners=2, validators=1, online_learning=True))
    assert [m.name for m in plan.miners] == ["miner0", "miner1", ONLINE_NAME]
    online = plan.miners[-1]
    assert online.online and not any(m.online for m in plan.miners[:-1])
    doc = tomllib.loads(online.config_path.read_text())
    assert doc["models"]["main"] == {"type": "transformer", "threads": 1, "workers": 0}  # no checkpoint: untrained
    assert doc["training"]["online"]["model"] == "main" and doc["training"]["online"]["dataset"] == "docs"
    assert doc["datasets"]["docs"]["type"] == "python_docs"
    assert doc["spam"] == plan.miners[0].doc["spam"]  # admitted like every miner
    assert len({n.port for n in plan.nodes}) == len(plan.nodes)
    hp, hp_plain = (p.authority.doc["chain"]["hyperparameters"] for p in (plan, plain))
    assert hp["max_registrations_per_block"] == hp_plain["max_registrations_per_block"] + 1 == 3
    assert "online" not in eval_doc(plan)["models"]  # judged by its pay, not by its untrained start
    # The node.toml is one the node accepts.
    done = subprocess.run(tnode_command("validate", "-c", str(online.config_path)), capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_option_needs_the_text_modality(tmp_path) -> None:
    with pytest.raises(ValueError, match="online-learning"):
        make_plan(DevnetOptions(run_dir=tmp_path, miners=1, validators=1, modality="image", online_learning=True))


def test_rises_compares_the_last_third_with_the_first() -> None:
    assert rises([0.0, 0.05, 0.1, 0.2, 0.25, 0.3])
    assert not rises([0.3, 0.3, 0.3, 0.1, 0.1, 0.1])
    assert not rises([0.2, 0.2, 0.2])
    assert not rises([0.0, 1.0])  # too few epochs to tell


def test_latency_summary_percentiles() -> None:
    summary = latency_summary([0.01] * 99 + [1.0])
    assert summary["requests"] == 100 and summary["p50_ms"] == pytest.approx(10.0)
    assert 10.0 < summary["p99_ms"] < 1000.0
    assert latency_summary([])["p99_ms"] is None


def _report(tmp_path, online_lat: list[float], base_lat: list[float], online_inc: list[float]) -> dict:
    plan = make_plan(DevnetOptions(run_dir=tmp_path, miners=2, validators=1, online_learning=True))
    hotkeys = [plan.validators[0].hotkey.public_hex] + [m.hotkey.public_hex for m in plan.miners]
    neurons = tuple(Neuron(uid=i, hotkey=h, coldkey="", stake=0.0) for i, h in enumerate(hotkeys))
    incentives = [(10 * (e + 1), (0.0, 0.6, 0.4 - x, x)) for e, x in enumerate(online_inc)]
    probe = Probe(plan.client.dir, {}, latencies={ONLINE_NAME: online_lat, "miner0": base_lat})
    return online_report(plan, Metagraph(100, 1, neurons), incentives, probe)


def test_report_passes_a_learning_miner_within_2x(tmp_path) -> None:
    report = _report(tmp_path, [0.02] * 200, [0.015] * 200, [0.0, 0.01, 0.05, 0.1, 0.15, 0.2])
    assert report["miner"] == ONLINE_NAME and report["baseline"] == "miner0"  # the transformer miner
    assert report["incentive_per_epoch"][ONLINE_NAME] == [0.0, 0.01, 0.05, 0.1, 0.15, 0.2]
    assert report["incentive_per_epoch"]["miner0"] == [0.6] * 6
    assert report["epoch_blocks"] == [10, 20, 30, 40, 50, 60]
    assert report["p99_ratio"] == pytest.approx(20 / 15, rel=1e-3)
    assert report["checks"] == {"online_incentive_rises": True, "online_p99_within_2x": True}


def test_report_fails_a_slow_or_stagnant_miner(tmp_path) -> None:
    slow = _report(tmp_path / "slow", [0.05] * 200, [0.015] * 200, [0.0, 0.01, 0.05, 0.1, 0.15, 0.2])
    assert slow["checks"] == {"online_incentive_rises": True, "online_p99_within_2x": False}
    flat = _report(tmp_path / "flat", [0.02] * 200, [0.015] * 200, [0.1] * 6)
    assert flat["checks"] == {"online_incentive_rises": False, "online_p99_within_2x": True}
    unmeasured = _report(tmp_path / "none", [], [0.015] * 200, [0.1] * 6)
    assert unmeasured["p99_ratio"] is None and not unmeasured["checks"]["online_p99_within_2x"]


def test_the_learning_miner_can_start_from_a_weak_checkpoint(tmp_path) -> None:
    weak = str(tmp_path / "weak.pt")
    plan = make_plan(DevnetOptions(run_dir=tmp_path, miners=1, validators=1, online_learning=True,
                                   online_checkpoint=weak))
    assert plan.miners[-1].doc["models"]["main"]["checkpoint"] == weak
    assert plan.miners[0].doc["models"]["main"]["checkpoint"] == "builtin"  # the baseline is untouched


def _transport() -> dict:
    return {"type": "libp2p", "listen": ["/ip4/127.0.0.1/tcp/0"], "announce_interval": 0.0, "dht": False}


@pytest.mark.anyio
async def test_the_probe_times_real_replies_and_counts_failures(tmp_path) -> None:
    import numpy as np
    from tnode.node import Node

    miner = Node.from_dict({"log": {"level": "warning"}, "transport": _transport(),
                            "models": {"main": {"type": "uniform"}},
                            "modalities": {"text": {"type": "text", "model": "main"}}}, data_dir=tmp_path / "miner")
    client = Node.from_dict({"log": {"level": "warning"}, "transport": _transport()}, data_dir=tmp_path / "client")
    async with miner.running(), client.running():
        addr = miner.transport.listen_addrs()[0]
        probe = Probe(tmp_path / "client", {"up": addr, "wrong": addr})
        window = np.frombuffer(b"def probe(self):\n    return self" * 2, dtype=np.uint8)[:64]
        for _ in range(3):
            await probe.ask(client, "up", window)
        probe.targets["wrong"] = addr.rsplit("/p2p/", 1)[0] + "/p2p/" + client.peer_id  # not the miner's identity
        await probe.ask(client, "wrong", window)
    assert len(probe.latencies["up"]) == 3 and all(0 < s < 10 for s in probe.latencies["up"])
    assert "wrong" not in probe.latencies and sum(probe.errors["wrong"].values()) == 1
