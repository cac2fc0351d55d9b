"""Fixtures for the core tests: external plugins installed as real distributions in a temp dir."""

from __future__ import annotations

import importlib.metadata as md
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

FakeDist = Callable[..., Path]


@pytest.fixture
def fake_dist(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeDist:
    """Install a one-module distribution with a ``tnode`` entry point onto ``sys.path``.

    ``fake_dist(entry_point, module, source)`` writes ``module.py`` and a ``.dist-info`` whose
    ``entry_points.txt`` maps ``entry_point`` to it — the same files ``pip install`` writes — so
    :func:`importlib.metadata.entry_points` finds it exactly like an installed third-party plugin.
    """
    site = tmp_path / "site"
    site.mkdir()
    monkeypatch.syspath_prepend(str(site))

    def install(entry_point: str, module: str, source: str, *, version: str = "1.2.3") -> Path:
        (site / f"{module}.py").write_text(textwrap.dedent(source))
        dist = site / f"{module}-{version}.dist-info"
        dist.mkdir()
        (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {module}\nVersion: {version}\n")
        (dist / "entry_points.txt").write_text(f"[tnode]\n{entry_point} = {module}\n")
        monkeypatch.delitem(sys.modules, module, raising=False)
        return site

    return install


def builtin_plugin_names() -> list[str]:
    """Entry-point names of the built-in plugins (modules under ``tnode.plugins``)."""
    return sorted(ep.name for ep in md.entry_points(group="tnode") if ep.value.startswith("tnode.plugins."))


GOOD_PLUGIN = '''
    from dataclasses import dataclass

    import anyio
    import tnode
    from tnode.config import option


    @dataclass(frozen=True)
    class TickerConfig:
        """Counts to nothing."""

        every_ms: int = option(100, "Tick period.", ge=1)
        port: int = option(0, "A port it pretends to bind; 9 is always taken.", ge=0)


    class Ticker:
        def __init__(self, node, name, config):
            self.name = name
            self.config = config

        async def run(self, *, task_status=anyio.TASK_STATUS_IGNORED):
            if self.config.port == 9:
                raise OSError(f"port {self.config.port} is already in use")
            task_status.started()
            await anyio.sleep_forever()


    @tnode.hookimpl
    def tnode_add_component_kinds(declare):
        declare(kind="exporter", section="exporters", after="validator")


    @tnode.hookimpl
    def tnode_register_components(register):
        register(kind="exporter", type="ticker", factory=Ticker, schema=TickerConfig)
'''
