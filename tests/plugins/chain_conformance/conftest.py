"""Fixtures of the chain conformance suite: ``backend`` is each chain backend in turn."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest


def _anvil_available() -> bool:
    try:
        from tnode.plugins.chain_evm.anvil import anvil_binary

        anvil_binary()
        return True
    except Exception:
        return shutil.which("anvil") is not None


@pytest.fixture(params=["local", "evm"])
def backend_name(request: pytest.FixtureRequest) -> str:
    if request.param == "evm" and not _anvil_available():
        pytest.skip("anvil is not installed (.ci/install runs npm ci in plugins/chain_evm/contract)")
    return str(request.param)


@pytest.fixture
def tmp(tmp_path: Path) -> Path:
    return tmp_path
