"""The validator against the real local chain (authority in the same node): the chain accepts its
weights, rate limits them, checks its commit-reveal hashes, and pays the better miner more."""

from __future__ import annotations

import sys
from typing import Any

import anyio
import pytest
from tnode.keys import Keypair
from tnode.node import Node
from tnode.testing import LoopbackNetwork
from tnode.weights import WeightVector
from validator_fakes import answer_with, dead, plugins_with_fakes, responder

pytestmark = pytest.mark.anyio


def _chain_available() -> bool:
    try:
        return "local" in plugins_with_fakes("chain_local").registry.types("chain")
    except Exception:
        return False


needs_chain = pytest.mark.skipif(not _chain_available(), reason="the chain_local plugin is not available")


def network(tmp_path, miners: list[Keypair], *, commit_reveal: bool, loopback: LoopbackNetwork) -> Node:
    validator_hot, validator_cold = Keypair.generate(), Keypair.generate()
    accounts = [{"coldkey": validator_cold.public_hex, "hotkey": validator_hot.public_hex, "stake": 100.0}]
    accounts += [{"coldkey": Keypair.generate().public_hex, "hotkey": m.public_hex, "register": True} for m in miners]
    hp: dict[str, Any] = {"tempo": 6, "weights_rate_limit": 2, "max_allowed_validators": 1, "activity_cutoff": 1000,
                          "immunity_period": 1000}
    if commit_reveal:
        hp.update(commit_reveal_weights_enabled=True, commit_reveal_period=2, commit_reveal_window=6)
    doc = {
        "transport": {"type": "loopback"},
        "chain": {"type": "local", "block_time": 0.05, "genesis": {"accounts": accounts}, "hyperparameters": hp},
        "modalities": {"fake": {"type": "fake"}},
        "scorers": {"ce": {"type": "cross_entropy"}},
        "validator": {"type": "default", "modality": "fake", "step_interval": 0.05, "timeout": 0.5, "seed": 3,
                      "ema_alpha": 0.3},
    }
    return Node.from_dict(doc, data_dir=tmp_path, hotkey=validator_hot, coldkey=validator_cold,
                          plugins=plugins_with_fakes("chain_local", network=loopback))


@needs_chain
@pytest.mark.parametrize("commit_reveal", [False, True], ids=["set_weights", "commit_reveal"])
async def test_the_chain_pays_the_better_miner(tmp_path, commit_reveal: bool) -> None:
    miners = [Keypair.generate() for _ in range(3)]
    loopback = LoopbackNetwork()
    node = network(tmp_path, miners, commit_reveal=commit_reveal, loopback=loopback)
    for key, behaviour in zip(miners, [answer_with(0.9), answer_with(0.3), dead], strict=True):
        loopback.add_responder(key, responder(behaviour))
    async with node.running():
        chain = node.chain
        for i, key in enumerate(miners):
            await chain.publish_addrs(key, [f"/ip4/127.0.0.1/tcp/{9000 + i}"], key.peer_id)
        validator = node.component("validator")
        with anyio.fail_after(30):
            while True:
                mg = await chain.metagraph()
                incentive = {n.hotkey: n.incentive for n in mg.neurons}
                if incentive[miners[0].public_hex] > 0 and validator.steps > 10:
                    break
                await anyio.sleep(0.1)
        assert not validator.state.pending or commit_reveal
    good, weak, gone = (incentive[m.public_hex] for m in miners)
    assert good > weak > gone == 0.0
    assert validator.failures["unreachable"] > 0


@needs_chain
async def test_validator_and_chain_hash_commits_with_one_function(tmp_path, monkeypatch) -> None:
    """The validator's commit and the chain's check of the reveal both go through WeightVector.commit_hash."""
    callers: list[tuple[str, str]] = []
    original = WeightVector.commit_hash

    def spy(self: WeightVector, hotkey: str, salt: str, version_key: int = 0) -> str:
        digest = original(self, hotkey, salt, version_key)
        callers.append((sys._getframe(1).f_globals["__name__"], digest))
        return digest

    monkeypatch.setattr(WeightVector, "commit_hash", spy)
    miners = [Keypair.generate() for _ in range(2)]
    loopback = LoopbackNetwork()
    node = network(tmp_path, miners, commit_reveal=True, loopback=loopback)
    for key, behaviour in zip(miners, [answer_with(0.9), answer_with(0.3)], strict=True):
        loopback.add_responder(key, responder(behaviour))
    async with node.running():
        chain = node.chain
        for i, key in enumerate(miners):
            await chain.publish_addrs(key, [f"/ip4/127.0.0.1/tcp/{9100 + i}"], key.peer_id)
        with anyio.fail_after(30):  # until a reveal was accepted: the validator's row holds weights
            while True:
                mg = await chain.metagraph(matrices=True)
                if mg.weights is not None and mg.weights[0].sum() > 0:
                    break
                await anyio.sleep(0.1)
    committed = {d for name, d in callers if name == "tnode.plugins.validator.validator"}
    checked = {d for name, d in callers if name == "tnode.plugins.chain_local.calls"}
    assert committed and checked and checked <= committed
