"""A devnet with one relay adversary: the validators flag it and pay it at most 1 % of the miners'
emission, while the honest twin the devnet adds beside it is left alone."""

from __future__ import annotations

from pathlib import Path

import pytest
from devnet_helpers import leftover_processes, run_devnet


@pytest.mark.slow
def test_a_relay_is_flagged_and_paid_at_most_one_percent(tmp_path: Path) -> None:
    report, run = tmp_path / "r.json", tmp_path / "run"
    result = run_devnet(["--miners", "2", "--models", "ngram,uniform", "--validators", "1", "--adversaries", "relay",
                         "--epochs", "2", "--tempo", "6", "--block-time", "0.5", "--registration", "genesis"],
                        run, report=report, timeout=240, env={"OMP_NUM_THREADS": "1"})
    out = result.output
    assert result.report is not None, result.tail()
    checks = result.report["checks"]
    assert checks["adversaries_flagged"] == {"relay0": True}, (checks, out[-3000:])
    assert checks["adversary_miner_emission_share"]["relay0"] <= 0.01, checks
    assert checks["honest_flagged"] == [], checks
    assert checks["honest_twins"] == {"miner2": "miner0"}
    assert not leftover_processes(run)
