"""docs/plugin-template is a working third-party plugin: installed with pip, found, validated, run.

The template is built and installed with ``pip install --target`` into a temporary directory put
on ``PYTHONPATH`` of the child processes, so the test never changes the project's environment.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from core_procs import TNODE, NodeProcess

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "docs" / "plugin-template"
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The template installed (non-editable) into a private target directory."""
    src = tmp_path_factory.mktemp("template-src") / "plugin"
    shutil.copytree(TEMPLATE, src, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    target = tmp_path_factory.mktemp("template-site")
    result = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", "--no-index",
         "--target", str(target), str(src)],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert (target / "tnode_hello" / "__init__.py").exists()
    return target


def env_for(site: Path, *, autoload: bool = True) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "TNODE_DISABLE_PLUGIN_AUTOLOAD"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(site), env.get("PYTHONPATH", "")]))
    env["COLUMNS"] = "200"
    if not autoload:
        env["TNODE_DISABLE_PLUGIN_AUTOLOAD"] = "1"
    return env


def tnode(site: Path, *args: str, autoload: bool = True, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([TNODE, *args], env=env_for(site, autoload=autoload), cwd=cwd, capture_output=True,
                          text=True, timeout=120)


def plugin_rows(output: str) -> dict[str, list[str]]:
    rows = [[c.strip() for c in line.split("│")[1:-1]] for line in output.splitlines() if line.count("│") >= 5]
    return {row[0]: row for row in rows}


def write_config(tmp_path: Path, extra: str = "") -> Path:
    path = tmp_path / "node.toml"
    path.write_text('[node]\ndata_dir = "data"\ncreate_keys = true\n\n'
                    f'[exporters.events]\ntype = "hello"\ngreeting = "hello from the template"\n{extra}')
    return path


def test_plugins_lists_the_template_as_external(site: Path) -> None:
    result = tnode(site, "plugins")
    assert result.returncode == 0, result.stderr
    row = plugin_rows(result.stdout)["hello"]
    assert row[1:] == ["0.1.0", "exporter", "tnode_hello", "external (tnode-plugin-hello)"]


def test_disable_autoload_skips_the_template(site: Path) -> None:
    result = tnode(site, "plugins", autoload=False)
    assert result.returncode == 0, result.stderr
    rows = plugin_rows(result.stdout)
    assert "hello" not in rows and rows, "built-ins are still listed"


def test_template_command_is_added_to_the_cli(site: Path) -> None:
    result = tnode(site, "hello", "operator")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "hello, operator!\n"


def test_node_toml_using_the_template_validates(site: Path, tmp_path: Path) -> None:
    ok = tnode(site, "validate", "-c", str(write_config(tmp_path)))
    assert ok.returncode == 0, ok.stderr
    bad = tnode(site, "validate", "-c", str(write_config(tmp_path, 'events = ["BlockProduce"]\n')))
    assert bad.returncode == 78
    assert "did you mean 'BlockProduced'?" in " ".join(bad.stderr.split())


def test_template_component_runs_in_a_node(site: Path, tmp_path: Path) -> None:
    config = write_config(tmp_path)
    node = NodeProcess(["run", "-c", str(config), "--log-format", "json"], env_for(site), tmp_path)
    try:
        node.wait_for('"event":"hello from the template"')
        node.wait_for('"node running"')
        node.proc.send_signal(signal.SIGTERM)
        rc = node.finish()
    finally:
        node.kill()
    assert rc == 0, node.stderr
    records = [json.loads(line) for line in (tmp_path / "data" / "events.jsonl").read_text().splitlines()]
    assert [r["event"] for r in records] == ["NodeStarted", "NodeStopping"]
    assert records[0]["components"] == ["exporters.events"]


def test_template_own_tests_pass(site: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:randomly"], cwd=TEMPLATE,
                            env=env_for(site), capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    # Every test function in the template's own test files ran and passed.
    expected = sum(text.count("\ndef test_") + text.count("\nasync def test_")
                   for text in (p.read_text() for p in (TEMPLATE / "tests").glob("test_*.py")))
    assert f"{expected} passed" in result.stdout
