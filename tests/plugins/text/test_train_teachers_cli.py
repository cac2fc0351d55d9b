"""``tnode train --teachers network`` end to end: a separate process trains a student from the n-gram
miners of a small real network (libp2p on 127.0.0.1, the local chain), resumes from the cache
without asking again, and ``--show-gating`` prints the teachers' weights."""

from __future__ import annotations

import os
import sys

import anyio
import pytest
from tnode.cli import build_app
from tnode.plugins.router.localnet import local_net
from typer.testing import CliRunner

TNODE = [sys.executable, "-c", "from tnode.cli import main; main()"]
SMALL = ["--batch-size", "4", "--d-model", "16", "--n-layers", "1", "--n-heads", "2", "--context", "16",
         "--checkpoint-every", "2", "--threads", "1", "--teacher-rps", "0"]


async def tnode(*args: str, cwd) -> tuple[int, str]:
    env = {**os.environ, "TNODE_DISABLE_PLUGIN_AUTOLOAD": "1", "OMP_NUM_THREADS": "1", "COLUMNS": "200"}
    with anyio.fail_after(120):
        done = await anyio.run_process([*TNODE, *args], cwd=cwd, env=env, check=False)
    return done.returncode, done.stdout.decode() + done.stderr.decode()


@pytest.mark.anyio
@pytest.mark.slow
async def test_train_from_the_network_resumes_from_the_cache_and_shows_the_gating(tmp_path) -> None:
    async with local_net(tmp_path / "net", (20_000, 60_000)) as net:
        authority = net.client.transport.listen_addrs()[0]
        (tmp_path / "own.txt").write_bytes(net.heldout)
        (tmp_path / "client.toml").write_text(f"""
[node]
data_dir = "data"
create_keys = true

[log]
level = "warning"

[datasets.own]
type = "text_files"
path = "own.txt"

[transport]
type = "libp2p"
listen = ["/ip4/127.0.0.1/tcp/0"]
announce_interval = 0.0
dht = false

[chain]
type = "local"
mode = "client"
authority = "{authority}"

[routers.main]
type = "moe"
modality = "text"

[teachers.net]
type = "router"
""")
        code, out = await tnode("train", "--teachers", "network", "-c", "client.toml", "--checkpoint", "s.pt",
                                "--steps", "4", *SMALL, cwd=tmp_path)
        assert code == 0, out
        assert "2 teachers" in out and "0 cached answers" in out and "failures: none" in out
        # A fresh run over the same windows (same seed): every answer comes from the cache.
        code, again = await tnode("train", "--teachers", "network", "-c", "client.toml", "--checkpoint", "s.pt",
                                  "--steps", "4", "--fresh", *SMALL, cwd=tmp_path)
        assert code == 0, again
        assert "0 requests, 32 cached answers" in again  # 4 steps × 4 windows × 2 teachers
    shown = CliRunner().invoke(build_app(), ["train", "--show-gating", str(tmp_path / "s.pt")], env={"COLUMNS": "200"})
    assert shown.exit_code == 0, shown.output
    for miner in net.miners:
        assert miner.hotkey.public_hex[:16] in shown.output


def test_teachers_network_needs_a_config() -> None:
    out = CliRunner().invoke(build_app(), ["train", "--teachers", "network"], env={"COLUMNS": "200"})
    assert out.exit_code == 2 and "--config" in out.output


def test_show_gating_of_a_checkpoint_without_one_is_a_clear_error(tmp_path) -> None:
    from tnode.plugins.text.transformer import ByteTransformer, Shape, save_checkpoint

    save_checkpoint(tmp_path / "plain.pt", ByteTransformer(Shape(16, 1, 2, 16)))
    out = CliRunner().invoke(build_app(), ["train", "--show-gating", str(tmp_path / "plain.pt")], env={"COLUMNS": "200"})
    assert out.exit_code == 78 and "no gating" in out.output
