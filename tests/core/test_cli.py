"""The tnode command line, in process: validate, init, keys, plugins, config reference."""

from __future__ import annotations

import stat
from pathlib import Path

import orjson
import pytest
from conftest import GOOD_PLUGIN, FakeDist, builtin_plugin_names
from tnode.cli import EXIT_CONFIG, app
from tnode.keys import Keystore
from typer.testing import CliRunner


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("COLUMNS", "200")  # rich tables must not wrap cells
    monkeypatch.delenv("TNODE_PASSPHRASE", raising=False)
    return CliRunner()


@pytest.fixture
def ticker_toml(tmp_path: Path, fake_dist: FakeDist, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """A node.toml using an external plugin's component (built-ins blocked to keep it small)."""
    monkeypatch.delenv("TNODE_DISABLE_PLUGIN_AUTOLOAD", raising=False)
    fake_dist("ticker", "tnode_fixture_ticker_cli", GOOD_PLUGIN)

    def write(extra: str = "") -> Path:
        path = tmp_path / "node.toml"
        path.write_text(f"[node]\ncreate_keys = true\n\n[plugins]\nblock = {builtin_plugin_names()!r}\n\n"
                        f"[exporters.t]\ntype = \"ticker\"\n{extra}")
        return path

    return write


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# --------------------------------------------------------------------------- validate
def test_validate_accepts_a_valid_config(cli: CliRunner, ticker_toml) -> None:  # type: ignore[no-untyped-def]
    path = ticker_toml("every_ms = 5\n")
    result = cli.invoke(app, ["validate", "-c", str(path)])
    assert result.exit_code == 0, result.output
    assert f"ok {path}: 1 components (exporters.t)" in " ".join(result.output.split())


def test_validate_exits_78_and_names_the_problem(cli: CliRunner, ticker_toml) -> None:  # type: ignore[no-untyped-def]
    path = ticker_toml("every_msec = 5\n")
    result = cli.invoke(app, ["validate", "-c", str(path)])
    assert result.exit_code == EXIT_CONFIG == 78
    text = " ".join(result.output.split())
    assert "invalid configuration" in text
    assert f"{path}: exporters.t.every_msec: unknown key" in text
    assert "did you mean 'every_ms'?" in text


def test_validate_refuses_a_missing_hotkey_file_as_run_does(cli: CliRunner, ticker_toml) -> None:  # type: ignore[no-untyped-def]
    path = ticker_toml()
    path.write_text(path.read_text().replace("create_keys = true", "create_keys = false"))
    result = cli.invoke(app, ["validate", "-c", str(path)])
    assert result.exit_code == EXIT_CONFIG
    assert "hotkey file not found" in " ".join(result.output.split())
    assert not (path.parent / "data").exists()  # validate writes nothing


def test_validate_exits_78_on_toml_syntax_errors(cli: CliRunner, tmp_path: Path) -> None:
    path = tmp_path / "node.toml"
    path.write_text("[node\n")
    result = cli.invoke(app, ["validate", "-c", str(path)])
    assert result.exit_code == 78
    assert "invalid TOML" in result.output and str(path) in " ".join(result.output.split())


def test_validate_exits_78_when_the_file_is_missing(cli: CliRunner, tmp_path: Path) -> None:
    result = cli.invoke(app, ["validate", "-c", str(tmp_path / "absent.toml")])
    assert result.exit_code == 78
    assert "file not found" in result.output


# --------------------------------------------------------------------------- init
def test_init_writes_node_toml_and_keys_with_mode_0600(cli: CliRunner, tmp_path: Path) -> None:
    result = cli.invoke(app, ["init", str(tmp_path / "n")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "n" / "node.toml").read_text().startswith("# tnode node configuration")
    store = Keystore(tmp_path / "n" / "data" / "node")
    assert store.names() == ["coldkey", "hotkey"]
    for name in ("hotkey", "coldkey"):
        assert mode(store.path(name)) == 0o600
        assert store.load(name).peer_id in result.output


def test_the_commented_miner_example_of_init_validates_once_uncommented(cli: CliRunner, tmp_path: Path) -> None:
    assert cli.invoke(app, ["init", str(tmp_path)]).exit_code == 0
    lines = []
    for line in (tmp_path / "node.toml").read_text().splitlines():
        # Uncomment table headers and key = value lines; prose comments stay comments.
        if line.startswith("# [") or (line.startswith("# ") and " = " in line and not line.startswith("# A ")):
            line = line[2:]
        lines.append(line)
    text = "\n".join(lines).replace('[modalities.echo]\ntype = "echo"', "")
    (tmp_path / "full.toml").write_text(text)
    result = cli.invoke(app, ["validate", "-c", str(tmp_path / "full.toml")])
    assert result.exit_code == 0, result.output
    assert "modalities.text" in result.output and "validator" in result.output


def test_init_refuses_to_overwrite_without_force(cli: CliRunner, tmp_path: Path) -> None:
    assert cli.invoke(app, ["init", str(tmp_path)]).exit_code == 0
    hot = Keystore(tmp_path / "data" / "node").load("hotkey").public_hex
    again = cli.invoke(app, ["init", str(tmp_path)])
    assert again.exit_code == 1 and "use --force" in again.output
    assert cli.invoke(app, ["init", str(tmp_path), "--force"]).exit_code == 0
    # --force rewrites node.toml but never replaces existing keys.
    assert Keystore(tmp_path / "data" / "node").load("hotkey").public_hex == hot


def test_init_encrypts_the_coldkey_with_the_env_passphrase(cli: CliRunner, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TNODE_PASSPHRASE", "s3cret")
    assert cli.invoke(app, ["init", str(tmp_path), "--encrypt"]).exit_code == 0
    keys = tmp_path / "data" / "node" / "keys"
    assert "encryption" in orjson.loads((keys / "coldkey.json").read_bytes())
    assert "encryption" not in orjson.loads((keys / "hotkey.json").read_bytes())


def test_init_output_validates_with_the_builtin_plugins(cli: CliRunner, tmp_path: Path) -> None:
    from tnode.pluginmanager import load_plugins

    types = {(s.kind, s.type) for s in load_plugins(autoload_external=False).registry.specs()}
    if not {("transport", "libp2p"), ("modality", "echo")} <= types:
        pytest.skip("the echo and libp2p plugins are not registered yet")
    assert cli.invoke(app, ["init", str(tmp_path)]).exit_code == 0
    result = cli.invoke(app, ["validate", "-c", str(tmp_path / "node.toml")])
    assert result.exit_code == 0, result.output


# --------------------------------------------------------------------------- keys
def test_keys_new_show_list(cli: CliRunner, tmp_path: Path) -> None:
    new = cli.invoke(app, ["keys", "new", "hot1", "-d", str(tmp_path)])
    assert new.exit_code == 0, new.output
    key = Keystore(tmp_path).load("hot1")
    assert mode(Keystore(tmp_path).path("hot1")) == 0o600
    assert key.public_hex in new.output and key.peer_id in new.output

    show = cli.invoke(app, ["keys", "show", "hot1", "-d", str(tmp_path)])
    assert show.exit_code == 0
    assert f"public {key.public_hex}" in show.output and "encrypted no" in show.output
    assert key.seed.hex() not in show.output

    assert cli.invoke(app, ["keys", "new", "coldkey", "-d", str(tmp_path)]).exit_code == 0
    listing = cli.invoke(app, ["keys", "list", "-d", str(tmp_path)])
    assert listing.exit_code == 0
    rows = [[cell.strip() for cell in line.split("│")[1:-1]] for line in listing.output.splitlines()
            if "12D3KooW" in line]
    assert [row[:2] for row in rows] == [["coldkey", "coldkey"], ["hot1", "hotkey"]]
    assert rows[1][2] == key.peer_id and rows[1][3] == "no"


def test_keys_new_refuses_to_overwrite(cli: CliRunner, tmp_path: Path) -> None:
    assert cli.invoke(app, ["keys", "new", "hot", "-d", str(tmp_path)]).exit_code == 0
    again = cli.invoke(app, ["keys", "new", "hot", "-d", str(tmp_path)])
    assert again.exit_code == 1 and "refusing to overwrite" in again.output


def test_encrypted_key_show_and_unlock(cli: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TNODE_PASSPHRASE", "right")
    assert cli.invoke(app, ["keys", "new", "coldkey", "-d", str(tmp_path), "--encrypt"]).exit_code == 0
    monkeypatch.delenv("TNODE_PASSPHRASE")
    show = cli.invoke(app, ["keys", "show", "coldkey", "-d", str(tmp_path)])
    assert show.exit_code == 0 and "encrypted yes" in show.output
    wrong = cli.invoke(app, ["keys", "show", "coldkey", "-d", str(tmp_path), "--unlock"], input="wrong\n")
    assert wrong.exit_code == 1 and "wrong passphrase" in wrong.output
    right = cli.invoke(app, ["keys", "show", "coldkey", "-d", str(tmp_path), "--unlock"], input="right\n")
    assert right.exit_code == 0, right.output


def test_keys_show_missing_key(cli: CliRunner, tmp_path: Path) -> None:
    result = cli.invoke(app, ["keys", "show", "nope", "-d", str(tmp_path)])
    assert result.exit_code == 1 and "no such key file" in result.output


# --------------------------------------------------------------------------- plugins / reference
def test_plugins_lists_every_builtin(cli: CliRunner) -> None:
    result = cli.invoke(app, ["plugins"])
    assert result.exit_code == 0, result.output
    rows = {line.split("│")[1].strip(): line for line in result.output.splitlines() if line.count("│") >= 5}
    for name in builtin_plugin_names():
        assert name in rows, f"{name} missing from `tnode plugins`"
        assert "built-in" in rows[name]
        assert f"tnode.plugins.{name}" in rows[name]


def test_plugins_marks_external_plugins(cli: CliRunner, fake_dist: FakeDist, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TNODE_DISABLE_PLUGIN_AUTOLOAD", raising=False)
    fake_dist("ticker", "tnode_fixture_ticker_list", GOOD_PLUGIN, version="4.5.6")
    result = cli.invoke(app, ["plugins"])
    assert result.exit_code == 0, result.output
    (row,) = [line for line in result.output.splitlines() if "│ ticker" in line]
    assert "4.5.6" in row and "exporter" in row and "external (tnode_fixture_ticker_list)" in row


def test_config_reference_prints_the_generated_reference(cli: CliRunner, tmp_path: Path) -> None:
    from tnode.pluginmanager import load_plugins
    from tnode.reference import render_reference

    out = tmp_path / "config.md"
    result = cli.invoke(app, ["config", "reference", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert out.read_text() == render_reference(load_plugins(autoload_external=False).registry)
    assert "### `[node]`" in out.read_text()


CLI_PLUGIN = """
    import tnode


    @tnode.hookimpl
    def tnode_add_cli_commands(app):
        @app.command("tick")
        def tick(times: int = 1) -> None:
            \"\"\"Print tick.\"\"\"
            print("tick " * times)
"""


def test_plugins_add_commands_through_tnode_add_cli_commands(cli: CliRunner, fake_dist: FakeDist,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    import tnode.cli
    import typer

    monkeypatch.delenv("TNODE_DISABLE_PLUGIN_AUTOLOAD", raising=False)
    fake_dist("tick", "tnode_fixture_tick_cli", CLI_PLUGIN)
    fresh = typer.Typer()
    fresh.command("version")(tnode.cli.version)
    fresh.command("init")(tnode.cli.init)
    monkeypatch.setattr(tnode.cli, "app", fresh)  # keep the shared app free of test commands
    result = cli.invoke(tnode.cli.build_app(), ["tick", "--times", "2"])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == "tick tick"


# --------------------------------------------------------------------------- validate = run
ONLY_TEXT = [n for n in builtin_plugin_names() if n not in ("text", "libp2p", "chain_local")]
BUILT_AT_ASSEMBLY = {
    # Each of these passed `tnode validate` before it built components, then failed `tnode run`.
    "top_k": ('[modalities.text]\ntype = "text"\ntop_k = 80\n',
              "modalities.text.top_k: top_k 80 exceeds max_top_k 64"),
    "checkpoint": ('[models.main]\ntype = "transformer"\ncheckpoint = "gone.pt"\n',
                   "models.main.checkpoint: checkpoint {dir}/gone.pt does not exist"),
    "text_files": ('[datasets.d]\ntype = "text_files"\npath = "corpus"\n',
                   "datasets.d.path: no such file or directory: {dir}/corpus"),
    "chain_client": ('[chain]\ntype = "local"\nmode = "client"\nauthority = "/ip4/127.0.0.1/tcp/1"\n',
                     "chain.authority: client mode needs the authority's multiaddr ending in /p2p/<peer id>"),
    "n_heads": ('[models.main]\ntype = "transformer"\nd_model = 30\nn_heads = 4\n',
                "models.main.n_heads: d_model 30 is not divisible by n_heads 4"),
}


@pytest.mark.parametrize("case", sorted(BUILT_AT_ASSEMBLY))
def test_validate_reports_what_run_reports(cli: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                           case: str) -> None:
    monkeypatch.setenv("TNODE_DISABLE_PLUGIN_AUTOLOAD", "1")
    table, message = BUILT_AT_ASSEMBLY[case]
    path = tmp_path / "node.toml"
    path.write_text(f'[node]\ncreate_keys = true\n\n[plugins]\nblock = {ONLY_TEXT!r}\n\n'
                    f'[transport]\ntype = "libp2p"\nlisten = ["/ip4/127.0.0.1/tcp/0"]\n\n{table}')
    expected = f"{path}: {message.format(dir=tmp_path)}"
    outputs = []
    for command in ("validate", "run"):
        result = cli.invoke(app, [command, "-c", str(path)])
        assert result.exit_code == EXIT_CONFIG, (command, result.output)
        outputs.append(" ".join(result.output.split()))
        assert expected in outputs[-1], (command, result.output)
    assert not (tmp_path / "data").exists() or command == "run"  # validate wrote no key files


def test_validate_reports_every_problem_in_one_pass(cli: CliRunner, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TNODE_DISABLE_PLUGIN_AUTOLOAD", "1")
    path = tmp_path / "node.toml"
    path.write_text(f'[node]\ncreate_keys = true\n\n[plugins]\nblock = {ONLY_TEXT!r}\n\n'
                    '[models.a]\ntype = "transformer"\ncheckpoint = "gone.pt"\n\n'
                    '[datasets.d]\ntype = "text_files"\npath = "corpus"\n')
    result = cli.invoke(app, ["validate", "-c", str(path)])
    assert result.exit_code == EXIT_CONFIG
    text = " ".join(result.output.split())
    assert "models.a.checkpoint" in text and "datasets.d.path" in text


# --------------------------------------------------------------------------- plugin commands
def test_a_plugin_command_colliding_with_another_names_both_plugins() -> None:
    import tnode
    import typer
    from tnode.cli_support import add_plugin_commands
    from tnode.errors import PluginError
    from tnode.pluginmanager import PluginManager

    class Ticks:
        def __init__(self, text: str) -> None:
            self.text = text

        @tnode.hookimpl
        def tnode_add_cli_commands(self, app: typer.Typer) -> None:
            @app.command("tick")
            def tick() -> None:
                """Print a tick."""
                print(self.text)

    manager = PluginManager()
    manager.register(Ticks("a"), name="first")
    manager.register(Ticks("b"), name="second")
    manager.validate()
    app = typer.Typer()
    with pytest.raises(PluginError, match="command 'tick' of plugin '(first|second)' collides with the one of "
                                          "'(first|second)'"):
        add_plugin_commands(app, manager)


def test_a_plugin_command_colliding_with_a_core_command_is_refused() -> None:
    import tnode
    import typer
    from tnode.cli import version
    from tnode.cli_support import add_plugin_commands
    from tnode.errors import PluginError
    from tnode.pluginmanager import PluginManager

    class Version:
        @tnode.hookimpl
        def tnode_add_cli_commands(self, app: typer.Typer) -> None:
            app.command()(version)

    manager = PluginManager()
    manager.register(Version(), name="shadow")
    manager.validate()
    app = typer.Typer()
    app.command()(version)
    with pytest.raises(PluginError, match="command 'version' of plugin 'shadow' collides with the one of the core"):
        add_plugin_commands(app, manager)


def test_building_the_app_twice_adds_plugin_commands_once() -> None:
    from tnode.cli import build_app

    first = sorted(c.name or "" for c in build_app().registered_commands)
    second = sorted(c.name or "" for c in build_app().registered_commands)
    assert first == second


def test_error_messages_keep_their_table_names(capsys: pytest.CaptureFixture[str]) -> None:
    # "[datasets.nope]" is a key path in the message, not console markup to swallow.
    from tnode.cli_support import fail

    exit_ = fail("models.m.dataset: refers to [datasets.nope], which is not configured", 78)
    assert exit_.exit_code == 78
    assert "refers to [datasets.nope], which is not configured" in " ".join(capsys.readouterr().err.split())
