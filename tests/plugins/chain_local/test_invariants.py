"""Property test: any sequence of (valid or invalid) operations keeps the ledger's invariants —
tokens are conserved, nonces count accepted transactions, the hash chain verifies."""

from __future__ import annotations

from pathlib import Path

from chain_helpers import Harness, chain_config, key
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tnode.errors import ChainError
from tnode.plugins.chain_local.codec import TOKEN
from tnode.plugins.chain_local.genesis import genesis_from_config
from tnode.plugins.chain_local.ledger import Ledger

COLDS = [key(f"inv-cold-{i}") for i in range(3)]
HOTS = [key(f"inv-hot-{i}") for i in range(4)]

op = st.one_of(
    st.tuples(st.just("transfer"), st.integers(0, 2), st.integers(0, 2), st.integers(1, 30 * TOKEN)),
    st.tuples(st.just("add_stake"), st.integers(0, 2), st.integers(0, 3), st.integers(1, 30 * TOKEN)),
    st.tuples(st.just("remove_stake"), st.integers(0, 2), st.integers(0, 3), st.integers(1, 30 * TOKEN)),
    st.tuples(st.just("burned_register"), st.integers(0, 2), st.integers(0, 3), st.just(0)),
    st.tuples(st.just("set_weights"), st.integers(0, 3), st.integers(0, 3), st.integers(0, 65535)),
    st.tuples(st.just("block"), st.just(0), st.just(0), st.integers(1, 3)),
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=st.lists(op, max_size=40))
def test_invariants_hold_for_any_operation_sequence(tmp_path_factory, ops) -> None:  # type: ignore[no-untyped-def]
    path: Path = tmp_path_factory.mktemp("inv") / "chain.sqlite"
    accounts = [{"coldkey": c.public_hex, "balance": 50} for c in COLDS]
    accounts[0].update(hotkey=HOTS[0].public_hex, stake=5)
    ledger = Ledger(path, genesis_from_config(chain_config(accounts, tempo=4, max_allowed_uids=3, burn=1.0,
                                                           min_burn=0.5, max_burn=5.0, adjustment_interval=3), 1))
    c = Harness(ledger)
    accepted = {k.public_hex: 0 for k in COLDS + HOTS}
    try:
        for name, a, b, amount in ops:
            if name == "block":
                c.blocks(amount)
                continue
            try:
                if name == "transfer":
                    c.submit(COLDS[a], "transfer", dest=COLDS[b].public_hex, amount=amount)
                    signer = COLDS[a]
                elif name in ("add_stake", "remove_stake"):
                    c.submit(COLDS[a], name, hotkey=HOTS[b].public_hex, amount=amount)
                    signer = COLDS[a]
                elif name == "burned_register":
                    c.submit(COLDS[a], name, hotkey=HOTS[b].public_hex)
                    signer = COLDS[a]
                else:
                    c.submit(HOTS[a], "set_weights", uids=[0, b % max(1, ledger.metagraph().n)],
                             weights=[amount, 65535], version_key=0)
                    signer = HOTS[a]
            except ChainError:
                continue
            accepted[signer.public_hex] += 1
        t = ledger.totals()
        assert t["balances"] + t["stakes"] + t["pending_emission"] == t["issuance"]
        assert t["issuance"] <= 150 * TOKEN + 5 * TOKEN + ledger.head().number * TOKEN
        for account, count in accepted.items():
            assert ledger.nonce(account) == count
        ledger.produce_block()
        assert ledger.verify_chain() == ledger.head().number + 1
        assert ledger.pending_count() == 0
    finally:
        ledger.close()
