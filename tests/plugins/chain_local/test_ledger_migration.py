"""A ledger written in format 1 (one subnet, before subnets) opens under format 2: upgraded in place
after a backup, with every balance, stake, uid, epoch result, block and pending transaction kept.

``fixtures/ledger-v1.sqlite`` was written by the format-1 ledger itself (``fixtures/make_ledger_v1.py``
run with that tnode), and ``fixtures/ledger-v1.json`` is what it read back from it then.
"""

from __future__ import annotations

import importlib.util
import shutil
import sqlite3
from pathlib import Path

import orjson
import pytest
from tnode.config import load_table
from tnode.errors import ChainError
from tnode.plugins.chain_local.config import LocalChainConfig
from tnode.plugins.chain_local.genesis import genesis_from_config
from tnode.plugins.chain_local.ledger import Ledger

FIXTURES = Path(__file__).with_name("fixtures")
EXPECTED = orjson.loads((FIXTURES / "ledger-v1.json").read_bytes())
_spec = importlib.util.spec_from_file_location("make_ledger_v1", FIXTURES / "make_ledger_v1.py")
assert _spec is not None and _spec.loader is not None
MAKER = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(MAKER)
ACCOUNTS, HYPERPARAMETERS = MAKER.ACCOUNTS, MAKER.HYPERPARAMETERS


def genesis():  # the configuration the fixture's chain was made with
    cfg = load_table(LocalChainConfig, {"genesis": {"accounts": ACCOUNTS}, "hyperparameters": HYPERPARAMETERS})
    return genesis_from_config(cfg, 1)


def columns(path: Path, table: str) -> list[str]:
    conn = sqlite3.connect(path)
    try:
        return [r[1] for r in conn.execute(f"PRAGMA table_info({table})").fetchall()]
    finally:
        conn.close()


def snapshot(ledger: Ledger) -> dict:
    return orjson.loads(orjson.dumps(MAKER.snapshot(ledger)))


@pytest.fixture
def v1(tmp_path: Path) -> Path:
    path = tmp_path / "chain.sqlite"
    shutil.copyfile(FIXTURES / "ledger-v1.sqlite", path)
    assert "netuid" not in columns(path, "neurons")
    return path


def test_a_format_1_ledger_is_upgraded_in_place_and_keeps_the_chain(v1: Path) -> None:
    ledger = Ledger(v1, genesis())
    try:
        assert ledger.upgrade_backup == v1.with_name("chain.sqlite.v1-backup")
        assert snapshot(ledger) == EXPECTED
        assert ledger.verify_chain() == EXPECTED["head"]["number"] + 1
        assert [s["netuid"] for s in ledger.subnet_list()] == [1]
        # The chain goes on: the pending transaction is sealed and the next epoch (block 10) pays.
        before = ledger.totals()["pending_emission"]
        out = ledger.produce_block()
        assert out.header.number == 10 and out.header.tx_count == 1 and out.epoch is not None
        assert ledger.totals()["pending_emission"] < before
        incentive = [n.incentive for n in ledger.metagraph().neurons[1:]]
        assert incentive == sorted(incentive, reverse=True) and incentive[0] > 0.4
    finally:
        ledger.close()
    assert "netuid" in columns(v1, "neurons") and "netuid" in columns(v1, "neuron_history")
    # The backup is the chain as format 1 left it, byte for byte in content.
    backup = v1.with_name("chain.sqlite.v1-backup")
    assert "netuid" not in columns(backup, "neurons")
    original = sqlite3.connect(FIXTURES / "ledger-v1.sqlite")
    copy = sqlite3.connect(backup)
    try:
        for table in ("meta", "neurons", "weights", "bonds", "txs", "blocks", "neuron_history", "stakes"):
            query = f"SELECT * FROM {table} ORDER BY 1, 2"
            assert original.execute(query).fetchall() == copy.execute(query).fetchall(), table
    finally:
        original.close()
        copy.close()
    # Opened again, it is simply format 2: no second upgrade, no second backup.
    again = Ledger(v1, genesis())
    try:
        assert again.upgrade_backup is None and again.head().number == 10
    finally:
        again.close()
    assert sorted(p.name for p in v1.parent.iterdir() if "backup" in p.name) == ["chain.sqlite.v1-backup"]


def test_the_upgraded_chain_still_refuses_another_genesis(v1: Path) -> None:
    cfg = load_table(LocalChainConfig, {"genesis": {"accounts": ACCOUNTS},
                                        "hyperparameters": {**HYPERPARAMETERS, "tempo": 6}})
    with pytest.raises(ChainError) as exc:
        Ledger(v1, genesis_from_config(cfg, 1))
    assert exc.value.code == "genesis_mismatch"


def test_an_upgrade_that_fails_leaves_the_file_in_format_1(v1: Path) -> None:
    conn = sqlite3.connect(v1)
    conn.execute("CREATE TABLE weights_v1 (x INTEGER)")  # the upgrade's rename of weights then fails
    conn.commit()
    conn.close()
    with pytest.raises(sqlite3.OperationalError):
        Ledger(v1, genesis())
    assert "netuid" not in columns(v1, "neurons") and "netuid" not in columns(v1, "weights")
    conn = sqlite3.connect(v1)
    try:
        assert conn.execute("SELECT COUNT(*) FROM neurons").fetchone()[0] == len(EXPECTED["neurons"])
    finally:
        conn.close()
