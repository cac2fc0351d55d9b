"""Ledger basics: genesis, signed transactions (nonce, replay, chain id, signature), balances,
stake, block hash chain and its verification."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from chain_helpers import Harness, chain_config, key
from tnode.errors import ChainError, ConfigError
from tnode.plugins.chain_local.codec import TOKEN
from tnode.plugins.chain_local.genesis import genesis_from_config
from tnode.plugins.chain_local.ledger import Ledger
from tnode.plugins.chain_local.tx import Transaction

ALICE, ALICE_HOT, BOB = key("alice"), key("alice-hot"), key("bob")


def funded(make_chain, **hyper) -> Harness:
    return make_chain([
        {"coldkey": ALICE.public_hex, "hotkey": ALICE_HOT.public_hex, "balance": 100, "stake": 10},
        {"coldkey": BOB.public_hex, "balance": 5},
    ], **hyper)


def test_genesis_allocates_balances_stake_and_uids(make_chain) -> None:
    c = funded(make_chain)
    assert c.ledger.balance(ALICE.public_hex) == 100 * TOKEN
    assert c.ledger.stake(ALICE.public_hex, ALICE_HOT.public_hex) == 10 * TOKEN
    mg = c.ledger.metagraph()
    assert [n.hotkey for n in mg.neurons] == [ALICE_HOT.public_hex]
    assert mg.neurons[0].stake == 10.0 and mg.neurons[0].validator_permit
    assert c.ledger.head().number == 0 and c.ledger.head().hash.hex() == c.ledger.genesis_hash


def test_same_config_gives_same_genesis_and_other_config_is_refused(tmp_path: Path) -> None:
    cfg = chain_config([{"coldkey": ALICE.public_hex, "balance": 1}])
    a = genesis_from_config(cfg, 1).header().hash
    assert a == genesis_from_config(chain_config([{"coldkey": ALICE.public_hex, "balance": 1}]), 1).header().hash
    Ledger(tmp_path / "c.sqlite", genesis_from_config(cfg, 1)).close()
    Ledger(tmp_path / "c.sqlite", genesis_from_config(cfg, 1)).close()  # reopening the same chain is fine
    other = genesis_from_config(chain_config([{"coldkey": ALICE.public_hex, "balance": 2}]), 1)
    with pytest.raises(ChainError) as err:
        Ledger(tmp_path / "c.sqlite", other)
    assert err.value.code == "genesis_mismatch"


@pytest.mark.parametrize(("account", "path"), [
    ({"coldkey": "zz"}, "coldkey"),
    ({"coldkey": ALICE.public_hex, "balance": -1}, "balance"),
    ({"coldkey": ALICE.public_hex, "stake": 3}, "hotkey"),
    ({"coldkey": ALICE.public_hex, "colour": "red"}, "accounts[0]"),
])
def test_bad_genesis_accounts_name_the_key(account, path) -> None:
    with pytest.raises(ConfigError) as err:
        genesis_from_config(chain_config([account]), 1)
    assert path in err.value.key_path


def test_transfer_and_insufficient_balance(make_chain) -> None:
    c = funded(make_chain)
    c.submit(BOB, "transfer", dest=ALICE.public_hex, amount=2 * TOKEN)
    assert c.ledger.balance(BOB.public_hex) == 3 * TOKEN
    with pytest.raises(ChainError) as err:
        c.submit(BOB, "transfer", dest=ALICE.public_hex, amount=4 * TOKEN)
    assert err.value.code == "insufficient_balance"
    assert c.ledger.balance(BOB.public_hex) == 3 * TOKEN  # the refused tx changed nothing
    assert c.ledger.nonce(BOB.public_hex) == 1


def test_replayed_transaction_is_refused(make_chain) -> None:
    c = funded(make_chain)
    tx = c.tx(BOB, "transfer", dest=ALICE.public_hex, amount=TOKEN)
    c.ledger.submit(tx)
    with pytest.raises(ChainError) as err:
        c.ledger.submit(tx)
    assert err.value.code == "replayed"
    c.blocks(1)  # still refused once sealed
    with pytest.raises(ChainError):
        c.ledger.submit(tx)
    assert c.ledger.balance(BOB.public_hex) == 4 * TOKEN


def test_nonce_must_be_next(make_chain) -> None:
    c = funded(make_chain)
    with pytest.raises(ChainError) as err:
        c.ledger.submit(c.tx(BOB, "transfer", tx_nonce=5, dest=ALICE.public_hex, amount=1))
    assert err.value.code == "future_nonce"
    c.submit(BOB, "transfer", dest=ALICE.public_hex, amount=1)
    with pytest.raises(ChainError) as err:
        c.ledger.submit(c.tx(BOB, "transfer", tx_nonce=0, dest=ALICE.public_hex, amount=2))
    assert err.value.code == "stale_nonce"


def test_forged_signature_and_foreign_chain_are_refused(make_chain) -> None:
    c = funded(make_chain)
    good = c.tx(BOB, "transfer", dest=ALICE.public_hex, amount=1)
    forged = Transaction(good.chain, good.signer, good.nonce, good.call, {**good.args, "amount": 10**9},
                         good.signature)
    with pytest.raises(ChainError) as err:
        c.ledger.submit(forged)
    assert err.value.code == "bad_signature"
    foreign = Transaction.create(BOB, chain="00" * 32, nonce=0, call="transfer",
                                 args={"dest": ALICE.public_hex, "amount": 1})
    with pytest.raises(ChainError) as err:
        c.ledger.submit(foreign)
    assert err.value.code == "wrong_chain"
    with pytest.raises(ChainError) as err:
        c.submit(BOB, "mint", amount=1)
    assert err.value.code == "unknown_call"


def test_stake_add_remove(make_chain) -> None:
    c = funded(make_chain)
    c.submit(BOB, "add_stake", hotkey=ALICE_HOT.public_hex, amount=2 * TOKEN)
    assert c.ledger.total_stake(ALICE_HOT.public_hex) == 12 * TOKEN
    assert c.ledger.metagraph().neurons[0].stake == 12.0
    with pytest.raises(ChainError) as err:
        c.submit(BOB, "remove_stake", hotkey=ALICE_HOT.public_hex, amount=3 * TOKEN)
    assert err.value.code == "insufficient_stake"
    c.submit(BOB, "remove_stake", hotkey=ALICE_HOT.public_hex, amount=2 * TOKEN)
    assert c.ledger.balance(BOB.public_hex) == 5 * TOKEN
    with pytest.raises(ChainError) as err:
        c.submit(BOB, "add_stake", hotkey=key("nobody").public_hex, amount=1)
    assert err.value.code == "unknown_hotkey"
    with pytest.raises(ChainError) as err:
        c.submit(BOB, "add_stake", hotkey=ALICE_HOT.public_hex, amount=6 * TOKEN)
    assert err.value.code == "insufficient_balance"


def test_blocks_seal_pending_transactions_in_a_hash_chain(make_chain) -> None:
    c = funded(make_chain)
    txs = [c.tx(BOB, "transfer", tx_nonce=i, dest=ALICE.public_hex, amount=1) for i in range(3)]
    for tx in txs:
        c.ledger.submit(tx)
    assert c.ledger.pending_count() == 3
    out = c.ledger.produce_block()
    assert out.header.number == 1 and out.header.tx_count == 3
    assert out.header.prev_hash.hex() == c.ledger.genesis_hash
    assert [t.hash for t in c.ledger.block_transactions(1)] == [t.hash for t in txs]
    assert c.ledger.transaction_status(txs[0].hash)["block"] == 1
    c.blocks(2)
    assert c.ledger.verify_chain() == 4


def test_verify_chain_detects_tampering(make_chain) -> None:
    c = funded(make_chain)
    c.submit(BOB, "transfer", dest=ALICE.public_hex, amount=1)
    c.blocks(2)
    conn = c.ledger._conn
    forged = orjson.dumps({"amount": 2, "dest": ALICE.public_hex}).decode()
    conn.execute("UPDATE txs SET args = ? WHERE block = 1", (forged,))
    with pytest.raises(ChainError) as err:
        c.ledger.verify_chain()
    assert err.value.code == "corrupt_chain"


def test_supply_is_conserved(make_chain) -> None:
    c = funded(make_chain, tempo=3, block_emission=2.0)
    c.submit(BOB, "add_stake", hotkey=ALICE_HOT.public_hex, amount=TOKEN)
    c.blocks(7)
    t = c.ledger.totals()
    assert t["issuance"] == 115 * TOKEN + 7 * 2 * TOKEN
    assert t["balances"] + t["stakes"] + t["pending_emission"] == t["issuance"]


def test_emission_stops_at_max_supply(make_chain) -> None:
    c = make_chain([{"coldkey": ALICE.public_hex, "balance": 9}], max_supply=10.0, block_emission=0.4, tempo=1000)
    c.blocks(5)
    assert c.ledger.totals()["issuance"] == 10 * TOKEN


def test_unexpected_arguments_are_refused(make_chain) -> None:
    c = funded(make_chain)
    with pytest.raises(ChainError) as err:
        c.submit(BOB, "transfer", dest=ALICE.public_hex, amount=1, memo="hi")
    assert err.value.code == "invalid_args" and "memo" in err.value.message
