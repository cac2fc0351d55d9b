"""``tnode query text -c <run dir>/client/node.toml`` from a fresh process against a running
``tnode devnet``: the devnet's query client holds no uid and no stake, and idle miners serve it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest

pytestmark = pytest.mark.slow

TNODE = [sys.executable, "-c", "from tnode.cli import main; main()"]


def test_tnode_query_text_answers_from_the_devnet(tmp_path: Path) -> None:
    run_dir, log = tmp_path / "run", tmp_path / "devnet.log"
    env = {**os.environ, "TNODE_DISABLE_PLUGIN_AUTOLOAD": "1"}
    with open(log, "wb") as out:
        devnet = subprocess.Popen([*TNODE, "devnet", "--miners", "2", "--validators", "1", "--models", "ngram,uniform",
                                   "--block-time", "0.5", "--registration", "genesis", "--no-live",
                                   "--run-dir", str(run_dir)],
                                  stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                                  start_new_session=True)
    try:
        deadline = time.monotonic() + 75
        while b"query: tnode query text" not in log.read_bytes():
            assert devnet.poll() is None, log.read_text()[-2000:]
            assert time.monotonic() < deadline, "the devnet printed no query command within 75 s"
            time.sleep(0.5)
        line = next(x for x in log.read_text().splitlines() if x.startswith("query: tnode query text"))
        client = run_dir / "client" / "node.toml"
        assert line.endswith(f"-c {client}")
        done = subprocess.run([*TNODE, "query", "text", "def __init__(self", "--max-tokens", "4", "--json",
                               "-c", str(client)], capture_output=True, env=env, timeout=60, cwd=tmp_path)
    finally:
        devnet.send_signal(signal.SIGTERM)
        try:
            devnet.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(devnet.pid, signal.SIGKILL)
            devnet.wait(timeout=10)
    assert done.returncode == 0, done.stderr.decode()
    result = orjson.loads(done.stdout)
    assert result["tokens"] == 4
    used = [m for m in result["miners"] if m["status"] == "used"]
    assert len(used) == 2 and all(m["latency_ms"] > 0 for m in used)
