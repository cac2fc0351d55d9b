"""``tnode collusion report`` reads what the detectors saved under the node's data_dir."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tnode.plugins.collusion.history import SuspectHistory


def tnode(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TNODE_DISABLE_PLUGIN_AUTOLOAD": "1"}
    return subprocess.run([sys.executable, "-c", "from tnode.cli import main; main()", *args], capture_output=True, text=True, env=env, timeout=60)


def test_report_lists_saved_suspects_as_json(tmp_path: Path) -> None:
    (tmp_path / "node.toml").write_text('[node]\ndata_dir = "./data"\n')
    history = SuspectHistory(8)
    history.add((f"{4:064x}",), "relay", 0.95, "median answer distance 0.05", uids=(4,), action="zero")
    history.save(tmp_path / "data" / "collusion" / "relay.json", "relay", "relay")
    out = tnode("collusion", "report", "-c", str(tmp_path / "node.toml"), "--json")
    assert out.returncode == 0, out.stderr
    suspects = json.loads(out.stdout)["suspects"]
    assert [(s["detector"], s["kind"], s["uids"], s["action"]) for s in suspects] == [("relay", "relay", [4], "zero")]


def test_report_names_a_file_that_is_not_a_history(tmp_path: Path) -> None:
    (tmp_path / "node.toml").write_text('[node]\ndata_dir = "./data"\n')
    (tmp_path / "data" / "collusion").mkdir(parents=True)
    (tmp_path / "data" / "collusion" / "x.json").write_text("[1]")
    out = tnode("collusion", "report", "-c", str(tmp_path / "node.toml"))
    assert out.returncode == 1 and "x.json" in out.stderr and "not a collusion history" in out.stderr
