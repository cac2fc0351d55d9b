"""Running ``tnode devnet`` from a test: one process group, bounded in time, always cleaned up."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

TNODE = [sys.executable, "-c", "from tnode.cli import main; main()"]


@dataclass(frozen=True)
class DevnetRun:
    returncode: int
    output: str
    report: dict[str, Any] | None  # the --report JSON, when one was asked for and written

    def tail(self, chars: int = 4000) -> str:
        return self.output[-chars:]


def run_devnet(args: Sequence[str], run_dir: Path, *, report: Path | None = None, timeout: float = 300,
               env: Mapping[str, str] | None = None) -> DevnetRun:
    """``tnode devnet ARGS --no-live --run-dir RUN_DIR [--report REPORT]`` to its end.

    Past ``timeout`` the devnet gets SIGTERM (it stops its nodes), then SIGKILL, and the test fails
    with the end of its output.
    """
    cmd = [*TNODE, "devnet", *args, "--no-live", "--run-dir", str(run_dir)]
    if report is not None:
        cmd += ["--report", str(report)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "COLUMNS": "160", **(env or {})}, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGTERM)  # the devnet stops its nodes on SIGTERM
        try:
            out, _ = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, _ = proc.communicate()
        raise AssertionError(f"the devnet did not finish in {timeout:.0f} s:\n{out[-4000:]}") from None
    doc = json.loads(report.read_text()) if report is not None and report.is_file() else None
    return DevnetRun(proc.returncode, out, doc)


def leftover_processes(run_dir: Path) -> str:
    """Command lines of processes still running from ``run_dir`` (empty when the devnet cleaned up)."""
    return subprocess.run(["pgrep", "-af", str(run_dir)], capture_output=True, text=True).stdout.strip()
