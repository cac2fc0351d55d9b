"""Epochs: permits, Yuma results stored per uid, emission paid 50/50 into stake, history."""

from __future__ import annotations

import pytest
from chain_helpers import Harness, key
from tnode.plugins.chain_local.codec import TOKEN
from tnode.weights import quantize

OWNER = key("e-owner")
VALIDATOR = key("e-validator")
NOMINATOR = key("e-nominator")
MINERS = [key(f"e-miner-{i}") for i in range(3)]


def subnet(make_chain, **hyper) -> Harness:
    c = make_chain([
        {"coldkey": OWNER.public_hex, "hotkey": VALIDATOR.public_hex, "stake": 30, "balance": 100},
        {"coldkey": NOMINATOR.public_hex, "hotkey": VALIDATOR.public_hex, "stake": 10, "register": False},
    ], tempo=5, block_emission=1.0, **hyper)
    for miner in MINERS:
        c.register(miner, OWNER)
    c.blocks(1)  # weights set in a uid's registration block count as outdated (subtensor's rule)
    return c


def test_single_validator_epoch_pays_incentive_by_weight_and_dividends_to_stakers(make_chain) -> None:
    c = subnet(make_chain)
    c.submit(VALIDATOR, "set_weights", uids=[1, 2, 3], weights=quantize([0.5, 0.3, 0.2]), version_key=0)
    c.blocks(3)
    before = {m: c.ledger.total_stake(m.public_hex) for m in MINERS}
    nominator_before = c.ledger.stake(NOMINATOR.public_hex, VALIDATOR.public_hex)
    pending = c.ledger.totals()["pending_emission"]
    out = c.ledger.produce_block()  # block 5: epoch
    assert out.epoch is not None and out.epoch.block == 5
    pending += TOKEN  # block 5's own emission is minted before the epoch pays out
    mg = c.ledger.metagraph()
    inc = [mg.neurons[u].incentive for u in (1, 2, 3)]
    assert inc == pytest.approx([0.5, 0.3, 0.2], abs=1e-3)
    assert mg.neurons[0].dividends == pytest.approx(1.0)
    assert mg.neurons[0].validator_permit
    paid = sum(out.epoch.emission)
    assert pending - paid < 10  # only rounding stays pending
    miner_paid = [c.ledger.total_stake(m.public_hex) - before[m] for m in MINERS]
    assert sum(miner_paid) == pytest.approx(pending / 2, abs=10)
    assert miner_paid[0] > miner_paid[1] > miner_paid[2]
    # The validator's half is split by stake between owner (30) and nominator (10).
    nominator_paid = c.ledger.stake(NOMINATOR.public_hex, VALIDATOR.public_hex) - nominator_before
    assert nominator_paid == pytest.approx(pending / 2 / 4, rel=1e-6)
    t = c.ledger.totals()
    assert t["balances"] + t["stakes"] + t["pending_emission"] == t["issuance"]


def test_without_weights_emission_follows_stake(make_chain) -> None:
    c = subnet(make_chain)
    c.blocks(5)
    mg = c.ledger.metagraph()
    assert mg.neurons[0].emission > 0
    assert all(mg.neurons[u].emission == 0 for u in (1, 2, 3))


def test_validator_permits_go_to_the_top_stakes(make_chain) -> None:
    c = subnet(make_chain, max_allowed_validators=2)
    c.submit(OWNER, "add_stake", hotkey=MINERS[2].public_hex, amount=50 * TOKEN)
    c.submit(OWNER, "add_stake", hotkey=MINERS[0].public_hex, amount=5 * TOKEN)
    c.blocks(5)
    permits = [n.validator_permit for n in c.ledger.metagraph().neurons]
    assert permits == [True, False, False, True]


def test_epoch_results_are_readable_at_past_blocks(make_chain) -> None:
    c = subnet(make_chain)
    c.submit(VALIDATOR, "set_weights", uids=[1, 2, 3], weights=quantize([0.6, 0.2, 0.2]), version_key=0)
    c.blocks(4)  # epoch at block 5
    c.submit(VALIDATOR, "set_weights", uids=[1, 2, 3], weights=quantize([0.2, 0.2, 0.6]), version_key=0)
    c.blocks(5)  # epoch at block 10
    at5, at10 = c.ledger.metagraph(5), c.ledger.metagraph(10)
    assert at5.neurons[1].incentive > at5.neurons[3].incentive
    assert at10.neurons[3].incentive > at10.neurons[1].incentive
    assert at5.block == 5 and at5.n == 4
    assert c.ledger.metagraph(0).n == 1  # only the genesis validator existed
