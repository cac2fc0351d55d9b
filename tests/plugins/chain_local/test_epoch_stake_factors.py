"""The authority's collusion verdicts: a flagged validator's stake counts times its factor in epochs."""

from __future__ import annotations

import pytest
from chain_helpers import key
from tnode.weights import quantize

OWNER = key("f-owner")
HONEST = key("f-honest")
COPIER = key("f-copier")
MINERS = [key(f"f-miner-{i}") for i in range(2)]


def test_a_scaled_validator_earns_less_per_stake_and_permits_follow_real_stake(make_chain) -> None:
    c = make_chain([
        {"coldkey": OWNER.public_hex, "hotkey": HONEST.public_hex, "stake": 30, "balance": 100},
        {"coldkey": key("f-other").public_hex, "hotkey": COPIER.public_hex, "stake": 30, "balance": 100},
    ], tempo=5, block_emission=1.0)
    for miner in MINERS:
        c.register(miner, OWNER)
    c.blocks(1)
    for v in (HONEST, COPIER):
        c.submit(v, "set_weights", uids=[2, 3], weights=quantize([0.7, 0.3]), version_key=0)
    c.ledger.stake_factors = {COPIER.public_hex: 0.1}
    while c.ledger.produce_block().epoch is None:
        pass
    mg = c.ledger.metagraph()
    honest, copier = mg.by_hotkey(HONEST.public_hex), mg.by_hotkey(COPIER.public_hex)
    assert honest is not None and copier is not None
    assert copier.validator_permit and honest.validator_permit
    assert copier.dividends == pytest.approx(honest.dividends * 0.1, rel=0.05)
    c.ledger.stake_factors = {}
    while c.ledger.produce_block().epoch is None:
        pass
    mg = c.ledger.metagraph()
    # Lifted: the copier buys bonds at full stake again (its old bonds still lag behind).
    assert mg.by_hotkey(COPIER.public_hex).dividends > copier.dividends
