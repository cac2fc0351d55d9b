"""``tnode devnet --chain evm``: the devnet's processes on a local anvil chain, small and fast.

One keeper (the devnet's authority), one validator and two miners (a uniform and a garbage miner),
registered at genesis by ``tnode evm devchain``; the validator commits and reveals weights on the contract;
the keeper posts the epoch and every other node verifies it; the incentive follows quality.
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest
from devnet_helpers import leftover_processes, run_devnet

pytestmark = pytest.mark.slow


def test_devnet_on_anvil_pays_miners_in_order_of_quality(anvil_bin: str, tmp_path: Path) -> None:
    report, run = tmp_path / "r.json", tmp_path / "run"
    result = run_devnet(["--chain", "evm", "--miners", "2", "--validators", "1", "--epochs", "1", "--tempo", "3",
                         "--models", "uniform,garbage", "--registration", "genesis"],
                        run, report=report, timeout=240, env={"TNODE_ANVIL": anvil_bin})
    # Exit 3: the report's own goals (1 % garbage) were missed, which one short epoch may do; the
    # checks below are this test's.
    assert result.returncode in (0, 3), result.tail()
    assert result.report is not None, result.tail()
    checks = result.report["checks"]
    assert checks["incentive_order"] == ["uniform", "garbage"] and checks["incentive_ordered"], checks
    # One epoch against the weakest honest miner: garbage keeps the validator's small floor weight
    # (the full devnet, docs/chain-evm.md, measures the 1 % goal against four models).
    assert checks["garbage_emission_share"] <= 0.1, checks
    # Every node ran on the contract; the keeper posted, the validator verified without an alarm.
    chain = json.loads((run / "evm" / "chain.json").read_text())
    for name in ("authority", "validator0", "miner0", "miner1"):
        doc = tomllib.loads((run / name / "node.toml").read_text())
        assert doc["chain"]["type"] == "evm" and doc["chain"]["contract"] == chain["contract"], name
    assert tomllib.loads((run / "authority" / "node.toml").read_text())["chain"]["keeper"] is True
    validator_log = (run / "validator0" / "node.log").read_text()
    assert "weights revealed" in validator_log
    assert "the keeper's epoch differs" not in validator_log
    assert not leftover_processes(run)
