"""A devnet with one relay adversary: the validators flag it and pay it at most 1 % of the miners'
emission, while the honest twin the devnet adds beside it is left alone."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

TNODE = [sys.executable, "-c", "from tnode.cli import main; main()"]


@pytest.mark.slow
def test_a_relay_is_flagged_and_paid_at_most_one_percent(tmp_path: Path) -> None:
    report = tmp_path / "r.json"
    cmd = [*TNODE, "devnet", "--miners", "2", "--models", "ngram,uniform", "--validators", "1",
           "--adversaries", "relay", "--epochs", "2", "--tempo", "6", "--block-time", "0.5",
           "--registration", "genesis", "--no-live", "--run-dir", str(tmp_path / "run"), "--report", str(report)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "COLUMNS": "160", "OMP_NUM_THREADS": "1"}, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=85)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGTERM)  # the devnet stops its nodes on SIGTERM
        out, _ = proc.communicate(timeout=30)
        pytest.fail(f"the devnet did not finish in 85 s:\n{out[-4000:]}")
    assert report.is_file(), out[-4000:]
    checks = json.loads(report.read_text())["checks"]
    assert checks["adversaries_flagged"] == {"relay0": True}, (checks, out[-3000:])
    assert checks["adversary_miner_emission_share"]["relay0"] <= 0.01, checks
    assert checks["honest_flagged"] == [], checks
    assert checks["honest_twins"] == {"miner2": "miner0"}
    leftover = subprocess.run(["pgrep", "-f", str(tmp_path / "run")], capture_output=True, text=True).stdout
    assert not leftover.strip(), leftover
