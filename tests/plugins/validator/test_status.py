"""The status document and its rendering."""

from __future__ import annotations

import json

from rich.console import Console
from tnode.hyperparameters import Hyperparameters
from tnode.interfaces import Metagraph, Neuron
from tnode.plugins.validator.status import node_status, render_status

NEURONS = (
    Neuron(uid=0, hotkey="aa" * 32, coldkey="cc" * 32, stake=1000.0, validator_permit=True, validator_trust=0.9,
           dividends=1.0, emission=0.5, addrs=(), peer_id=""),
    Neuron(uid=1, hotkey="bb" * 32, coldkey="dd" * 32, stake=0.0, incentive=0.75, trust=1.0, emission=0.375,
           addrs=("/ip4/127.0.0.1/tcp/4001/p2p/12D3KooWabc",), peer_id="12D3KooWabc"),
)
MG = Metagraph(block=42, netuid=1, neurons=NEURONS, hyperparameters=Hyperparameters(tempo=10))


def test_status_of_a_registered_miner() -> None:
    doc = node_status(MG, "bb" * 32, name="miner0")
    assert doc["registered"] and doc["neuron"]["uid"] == 1
    assert doc["neuron"]["incentive"] == 0.75 and doc["neuron"]["emission"] == 0.375
    assert doc["peers"] == []  # the only other uid published no address
    json.dumps(doc)  # --json must work


def test_status_of_an_unregistered_node_lists_reachable_peers() -> None:
    doc = node_status(MG, "ee" * 32)
    assert not doc["registered"] and doc["neuron"] is None
    assert [p["uid"] for p in doc["peers"]] == [1]


def test_rendering_shows_the_numbers() -> None:
    console = Console(record=True, width=160)
    console.print(render_status(node_status(MG, "aa" * 32, name="validator0")))
    text = console.export_text()
    assert "uid 0" in text and "stake 1000.0000" in text and "dividends 1.0000" in text
    assert "not registered" not in text
