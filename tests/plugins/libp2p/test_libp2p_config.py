"""The libp2p transport's config: multiaddrs and ports are checked by `tnode validate`, not only at start."""

from __future__ import annotations

from pathlib import Path

import pytest
from tnode.cli import EXIT_CONFIG, app
from typer.testing import CliRunner


def _validate(tmp_path: Path, transport: str) -> tuple[int, str]:
    path = tmp_path / "node.toml"
    path.write_text(f'[transport]\ntype = "libp2p"\n{transport}\n\n[modalities.echo]\ntype = "echo"\n')
    if not (tmp_path / "data/node/keys/hotkey.json").exists():
        made = CliRunner().invoke(app, ["keys", "new", "hotkey", "--data-dir", str(tmp_path / "data/node")])
        assert made.exit_code == 0, made.output
    result = CliRunner().invoke(app, ["validate", "-c", str(path)])
    return result.exit_code, " ".join(result.output.split())


@pytest.mark.parametrize("port", ["70000", "-1"])
def test_listen_port_out_of_range_fails_validate(tmp_path: Path, port: str) -> None:
    code, text = _validate(tmp_path, f'listen = ["/ip4/127.0.0.1/tcp/{port}"]')
    assert code == EXIT_CONFIG == 78, text
    assert "transport.listen[0]" in text
    assert "0..65535" in text


def test_bad_bootstrap_and_announce_name_their_index(tmp_path: Path) -> None:
    code, text = _validate(tmp_path, 'listen = ["/ip4/127.0.0.1/tcp/0"]\n'
                                     'announce = ["/ip4/1.2.3.4/tcp/4001", "/ip4/1.2.3.4/tcp/99999"]\n'
                                     'bootstrap = ["/ip4/127.0.0.1/tcp/4001"]')
    assert code == 78, text
    assert "transport.announce[1]" in text
    assert "transport.announce[0]" not in text
    assert "transport.bootstrap[0]" in text and "/p2p/" in text


def test_valid_addresses_and_limits_pass(tmp_path: Path) -> None:
    code, text = _validate(tmp_path, 'listen = ["/ip4/127.0.0.1/tcp/0", "/ip6/::1/tcp/65535"]\n'
                                     'frame_read_seconds = 2.5\nmax_inbound_per_ip = 8')
    assert code == 0, text


def test_partial_frame_budget_below_the_frame_limit_is_refused(tmp_path: Path) -> None:
    code, text = _validate(tmp_path, "max_frame_bytes = 4194304\npartial_frame_bytes_per_peer = 1048576")
    assert code == 78, text
    assert "transport.partial_frame_bytes_per_peer" in text


def test_replay_memory_cap_comes_from_the_config(tmp_path: Path) -> None:
    from tnode.node import Node

    node = Node.from_dict({"transport": {"type": "libp2p", "listen": ["/ip4/127.0.0.1/tcp/0"],
                                         "replay_memory_bytes": 2 * 1024 * 1024}}, data_dir=tmp_path)
    guard = node.transport.verifier.replay
    assert guard.max_bytes == 2 * 1024 * 1024
    code, text = _validate(tmp_path, "replay_memory_bytes = 1000")
    assert code == 78 and "transport.replay_memory_bytes" in text
