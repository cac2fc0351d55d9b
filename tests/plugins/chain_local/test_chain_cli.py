"""The chain commands against an embedded authority configured by a real node.toml."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from tnode.cli import build_app
from tnode.keys import Keystore
from typer.testing import CliRunner

runner = CliRunner()


@pytest.fixture(scope="module")
def app():  # type: ignore[no-untyped-def]
    return build_app()


@pytest.fixture
def node_toml(tmp_path: Path) -> Path:
    store = Keystore(tmp_path / "data")
    store.new("hotkey", role="hotkey")
    cold = store.new("coldkey", role="coldkey")
    path = tmp_path / "node.toml"
    path.write_text(f"""
[node]
data_dir = "data"

[chain]
type = "local"
block_time = 0.05

[chain.hyperparameters]
difficulty = 32
tempo = 1000

[[chain.genesis.accounts]]
coldkey = "{cold.public_hex}"
balance = 10
""")
    return path


def invoke(app, *args: str):  # type: ignore[no-untyped-def]
    result = runner.invoke(app, list(args), catch_exceptions=False)
    return result


def test_register_stake_balance_metagraph_verify(app, node_toml: Path) -> None:  # type: ignore[no-untyped-def]
    cfg = str(node_toml)
    result = invoke(app, "wallet", "balance", "-c", cfg, "--json")
    assert result.exit_code == 0, result.output
    assert orjson.loads(result.stdout)["balance"] == 10 * 10**9

    result = invoke(app, "register", "-c", cfg, "--processes", "1")
    assert result.exit_code == 0, result.output
    assert "as uid 0" in result.output

    result = invoke(app, "stake", "add", "2.5", "-c", cfg)
    assert result.exit_code == 0, result.output
    info = orjson.loads(invoke(app, "wallet", "balance", "-c", cfg, "--json").stdout)
    assert info["balance"] == 7_500_000_000 and info["stake"] == 2_500_000_000

    result = invoke(app, "metagraph", "-c", cfg, "--json")
    assert result.exit_code == 0, result.output
    mg = orjson.loads(result.stdout)
    assert mg["neurons"]["uid"] == [0] and mg["neurons"]["stake"] == [2.5]

    result = invoke(app, "metagraph", "-c", cfg)
    assert result.exit_code == 0 and "1 neurons" in result.output

    result = invoke(app, "stake", "remove", "100", "-c", cfg)
    assert result.exit_code == 1 and "insufficient_stake" in result.output

    result = invoke(app, "chain", "verify", "-c", cfg)
    assert result.exit_code == 0 and "blocks verified" in result.output
