"""Subnets of the embedded chain: each netuid has its own rules, uids, weights and epoch; the block
emission is split between them by their configured share; stake is per hotkey, shared."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest
from chain_helpers import HARD_EASY, Harness, find_nonce, key
from tnode.config import load_table
from tnode.errors import ChainError, ConfigError
from tnode.plugins.chain_local.codec import TOKEN
from tnode.plugins.chain_local.config import LocalChainConfig
from tnode.plugins.chain_local.genesis import genesis_from_config
from tnode.plugins.chain_local.ledger import Ledger

VAL_COLD, VAL_HOT = key("sn-val-cold"), key("sn-val-hot")
MINERS = [(key(f"sn-m{i}-cold"), key(f"sn-m{i}-hot")) for i in range(4)]
TEMPO = 5


def _rules(**extra: Any) -> dict[str, Any]:
    return {**HARD_EASY, "tempo": TEMPO, "max_registrations_per_block": 64, "max_registrations_per_interval": 1024,
            "weights_rate_limit": 0, "immunity_period": 0, "max_allowed_validators": 1, **extra}


def _config(shares: tuple[float, float] = (0.4, 0.6), *, rules1: dict[str, Any] | None = None,
            rules2: dict[str, Any] | None = None, accounts: list[dict[str, Any]] | None = None) -> LocalChainConfig:
    if accounts is None:
        accounts = [{"coldkey": VAL_COLD.public_hex, "hotkey": VAL_HOT.public_hex, "stake": 100, "netuids": [1, 2]}]
        accounts += [{"coldkey": c.public_hex, "balance": 10} for c, _ in MINERS]
    return load_table(LocalChainConfig, {
        "genesis": {"accounts": accounts},
        "hyperparameters": {"block_emission": 1.0},
        "subnets": [
            {"netuid": 1, "modality": "text", "emission_share": shares[0], "hyperparameters": rules1 or _rules()},
            {"netuid": 2, "modality": "image", "emission_share": shares[1], "hyperparameters": rules2 or _rules()},
        ],
    })


@pytest.fixture
def chain(tmp_path: Path) -> Any:
    ledgers: list[Ledger] = []

    def make(config: LocalChainConfig | None = None, name: str = "chain.sqlite") -> Harness:
        ledger = Ledger(tmp_path / name, genesis_from_config(config or _config(), 1))
        ledgers.append(ledger)
        return Harness(ledger)

    yield make
    for ledger in ledgers:
        ledger.close()


def _register(c: Harness, hot: Any, cold: Any, netuid: int) -> int:
    header = c.ledger.head()
    nonce = find_nonce(header.hash, hot.public_bytes, c.ledger.difficulty(netuid))
    result = c.submit(hot, "register", coldkey=cold.public_hex, block=header.number, nonce=nonce, netuid=netuid)
    return int(result["uid"])


def _set_weights(c: Harness, netuid: int, uids: list[int], weights: list[int]) -> None:
    c.submit(VAL_HOT, "set_weights", uids=uids, weights=weights, version_key=0, netuid=netuid)


def _to_epoch(c: Harness) -> None:
    while True:
        c.ledger.produce_block()
        if c.ledger.head().number % TEMPO == 0:
            return


def _two_miners_each(c: Harness) -> None:
    # Validator is uid 0 in both subnets (genesis); miners 0, 1 join subnet 1 and miners 2, 3 subnet 2.
    for i, (cold, hot) in enumerate(MINERS):
        assert _register(c, hot, cold, 1 if i < 2 else 2) == 1 + i % 2
    c.blocks(1)  # weights set in the block of a registration would be masked as older than the uid


def test_subnets_are_listed_with_their_modality_and_share(chain: Any) -> None:
    c = chain()
    listing = c.ledger.subnet_list()
    assert [(s["netuid"], s["modality"], s["emission_share"], s["n"]) for s in listing] == [
        (1, "text", 0.4, 1), (2, "image", 0.6, 1)]


def test_one_hotkey_registers_in_two_subnets_with_a_uid_in_each(chain: Any) -> None:
    c = chain()
    cold, hot = MINERS[0]
    assert _register(c, hot, cold, 1) == 1
    c.blocks(1)
    assert _register(c, hot, cold, 2) == 1
    with pytest.raises(ChainError) as exc:
        _register(c, hot, cold, 2)
    assert exc.value.code == "already_registered"
    for netuid in (1, 2):
        mg = c.ledger.metagraph(netuid=netuid)
        assert mg.netuid == netuid and mg.by_hotkey(hot.public_hex) is not None
    # Stake is per hotkey: the validator's genesis stake counts in both subnets.
    assert c.ledger.metagraph(netuid=1).neurons[0].stake == c.ledger.metagraph(netuid=2).neurons[0].stake == 100


def test_the_uid_cap_is_per_subnet(chain: Any) -> None:
    c = chain(_config(rules1=_rules(max_allowed_uids=2, immunity_period=1000), rules2=_rules(max_allowed_uids=8)))
    (c0, h0), (c1, h1), (c2, h2), _ = MINERS
    _register(c, h0, c0, 1)  # subnet 1 is now full (validator + one miner)
    with pytest.raises(ChainError) as exc:
        _register(c, h1, c1, 1)
    assert exc.value.code == "subnet_full"
    assert _register(c, h1, c1, 2) == 1
    assert _register(c, h2, c2, 2) == 2
    assert c.ledger.metagraph(netuid=1).n == 2 and c.ledger.metagraph(netuid=2).n == 3


def test_weights_in_one_subnet_do_not_move_incentive_in_the_other(chain: Any) -> None:
    c = chain()
    _two_miners_each(c)
    _set_weights(c, 1, [1, 2], [65535, 0])
    _set_weights(c, 2, [1, 2], [0, 65535])
    _to_epoch(c)
    first = [n.incentive for n in c.ledger.metagraph(netuid=2).neurons]
    assert first[2] > 0.99 and c.ledger.metagraph(netuid=1).neurons[1].incentive > 0.99
    _set_weights(c, 1, [1, 2], [0, 65535])  # subnet 1 changes its mind; subnet 2 is left alone
    for _ in range(3):
        _to_epoch(c)
    assert [n.incentive for n in c.ledger.metagraph(netuid=2).neurons] == pytest.approx(first, abs=1e-9)
    assert c.ledger.metagraph(netuid=1).neurons[2].incentive > 0.99


def test_emission_is_split_by_the_configured_shares(chain: Any) -> None:
    c = chain()
    _two_miners_each(c)
    _set_weights(c, 1, [1, 2], [65535, 32768])
    _set_weights(c, 2, [1, 2], [65535, 65535])
    paid = {1: 0.0, 2: 0.0}
    start, first_block = c.ledger.totals(), c.ledger.head().number
    for _ in range(6):
        _to_epoch(c)
        for netuid in paid:
            paid[netuid] += sum(n.emission for n in c.ledger.metagraph(netuid=netuid).neurons)
    total = paid[1] + paid[2]
    assert total > 0
    assert paid[1] / total == pytest.approx(0.4, rel=0.01)
    assert paid[2] / total == pytest.approx(0.6, rel=0.01)
    # Nothing is minted twice or lost between the subnets.
    end = c.ledger.totals()
    assert end["issuance"] == end["balances"] + end["stakes"] + end["pending_emission"]
    assert end["issuance"] - start["issuance"] == (c.ledger.head().number - first_block) * TOKEN


def test_a_transaction_for_an_unknown_subnet_is_refused(chain: Any) -> None:
    c = chain()
    cold, hot = MINERS[0]
    with pytest.raises(ChainError) as exc:
        c.submit(cold, "burned_register", hotkey=hot.public_hex, netuid=7)
    assert exc.value.code == "unknown_subnet" and "1 (text), 2 (image)" in exc.value.message
    with pytest.raises(ChainError) as exc:
        c.ledger.metagraph(netuid=7)
    assert exc.value.code == "unknown_subnet"


def test_a_transaction_without_netuid_acts_on_the_first_subnet(chain: Any) -> None:
    c = chain()
    cold, hot = MINERS[0]
    result = c.submit(cold, "burned_register", hotkey=hot.public_hex)
    assert result["netuid"] == 1
    assert c.ledger.metagraph(netuid=1).by_hotkey(hot.public_hex) is not None
    assert c.ledger.metagraph(netuid=2).by_hotkey(hot.public_hex) is None


def test_subnets_survive_a_restart(chain: Any) -> None:
    c = chain()
    _two_miners_each(c)
    _set_weights(c, 2, [1, 2], [0, 65535])
    _to_epoch(c)
    before = c.ledger.metagraph(netuid=2)
    path = c.ledger.path
    c.ledger.close()
    reopened = chain(_config(), name=path.name)
    after = reopened.ledger.metagraph(netuid=2)
    assert [n.incentive for n in after.neurons] == [n.incentive for n in before.neurons]
    assert reopened.ledger.subnets[2].modality == "image"


@pytest.mark.parametrize(("subnets", "key_path", "words"), [
    ([{"netuid": 1, "emission_share": 0.5}, {"netuid": 2, "emission_share": 0.4}], "subnets", "sum to 1"),
    ([{"netuid": 1, "emission_share": 0.5}, {"netuid": 1, "emission_share": 0.5}], "subnets[1].netuid",
     "already"),
    ([{"netuid": 1, "modality": "text", "emission_share": 0.5},
      {"netuid": 2, "modality": "text", "emission_share": 0.5}], "subnets[1].modality", "already"),
])
def test_subnet_tables_are_checked(subnets: list[dict[str, Any]], key_path: str, words: str) -> None:
    with pytest.raises(ConfigError) as exc:
        load_table(LocalChainConfig, {"subnets": subnets}, path="chain")
    text = str(exc.value)
    assert f"chain.{key_path}" in text and words in text


def test_the_node_netuid_must_be_one_of_the_subnets() -> None:
    with pytest.raises(ConfigError) as exc:
        genesis_from_config(_config(), 5)
    assert "netuid 5" in str(exc.value) and exc.value.key_path == "chain.subnets"


def test_a_single_subnet_config_keeps_its_genesis_document() -> None:
    # No [[chain.subnets]]: the genesis document (hence hash) is the one written before subnets existed.
    cfg = load_table(LocalChainConfig, {"genesis": {"accounts": [
        {"coldkey": VAL_COLD.public_hex, "hotkey": VAL_HOT.public_hex, "stake": 1}]}})
    doc = genesis_from_config(cfg, 1).document()
    assert set(doc) == {"version", "chain_id", "netuid", "hyperparameters", "accounts"}
    assert set(doc["accounts"][0]) == {"coldkey", "hotkey", "balance", "stake", "register"}


def test_a_file_that_only_looks_like_format_1_is_refused_and_left_unchanged(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    conn = sqlite3.connect(path)
    conn.executescript("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);"
                       "CREATE TABLE neurons (uid INTEGER PRIMARY KEY, hotkey TEXT NOT NULL UNIQUE);")
    conn.close()
    cfg = load_table(LocalChainConfig, {})
    with pytest.raises(ChainError) as exc:
        Ledger(path, genesis_from_config(cfg, 1))
    assert exc.value.code == "ledger_format"
    assert str(path) in exc.value.message and "format 1" in exc.value.message
    assert not list(tmp_path.glob("*backup*"))  # nothing upgraded, so nothing backed up
