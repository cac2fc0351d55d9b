"""The devnet end to end, small and fast: separate processes on 127.0.0.1, and the chain pays for quality.

One authority, one validator and four miners (the shipped transformer, a 3-gram, a uniform model and a
garbage miner) register by proof of work; the validator scores them on held-out text and sets weights;
after two counted epochs the incentive must follow the miners' held-out quality.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from devnet_helpers import leftover_processes, run_devnet

pytestmark = pytest.mark.slow


def test_devnet_pays_miners_in_order_of_quality(tmp_path: Path) -> None:
    report, run = tmp_path / "r.json", tmp_path / "run"
    result = run_devnet(["--miners", "4", "--validators", "1", "--epochs", "2", "--tempo", "8",
                         "--block-time", "0.5"], run, report=report)
    out = result.output
    assert result.returncode == 0, result.tail()
    doc = result.report
    assert doc is not None
    checks = doc["checks"]
    assert checks["incentive_order"] == ["transformer", "ngram", "uniform", "garbage"], (checks, out[-2000:])
    assert checks["incentive_ordered"], checks
    assert checks["spearman_incentive_vs_heldout_quality"] >= 0.9, checks
    assert checks["garbage_emission_share"] <= 0.01, checks
    miners = [n for n in doc["neurons"] if n["role"] == "miner"]
    assert len(miners) == 4
    by_model = {n["model"]: n for n in miners}
    # Held-out quality measured independently agrees with the configured order of the models.
    assert by_model["transformer"]["heldout_loss"] < by_model["ngram"]["heldout_loss"] \
        < by_model["uniform"]["heldout_loss"]
    # Every devnet process is gone once the command returned.
    assert not leftover_processes(run)
