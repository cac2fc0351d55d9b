"""The committed contract artifact is what the source compiles to; Python and the contract agree
on the seal, the commit hash, the hyperparameter layout and the key binding."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from evm_helpers import key
from tnode.hyperparameters import Hyperparameters
from tnode.plugins.chain_evm import accounts, contract
from tnode.plugins.chain_evm import pow as pow_
from tnode.weights import WeightVector

CONTRACT_DIR = Path(contract.__file__).parent / "contract"


def test_artifact_matches_a_fresh_compile() -> None:
    node = shutil.which("node")
    if node is None or not (CONTRACT_DIR / "node_modules/solc").is_dir():
        pytest.skip("node or the npm solc package is missing (.ci/install runs npm ci)")
    done = subprocess.run([node, "compile.cjs", "--check"], cwd=CONTRACT_DIR, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr


def test_every_hyperparameter_has_a_place_in_the_contract() -> None:
    contract.check_layout()
    hp = Hyperparameters(kappa=0.25, max_weight_limit=0.6, burn=2.5, commit_reveal_weights_enabled=True, tempo=7)
    assert contract.hp_from_contract(contract.hp_to_contract(hp)) == hp


@pytest.mark.anyio
async def test_seal_and_commit_hash_agree_with_the_contract(evm: object) -> None:
    _anvil, client, _dev = evm  # type: ignore[misc]
    hot = key("hot")
    block_hash = bytes(range(32))
    for nonce in (0, 1, 2**64 - 1):
        (on_chain,) = await client.call("seal", block_hash, hot.public_bytes, nonce)
        assert on_chain == pow_.seal(block_hash, hot.public_bytes, nonce)
    vector = WeightVector((3, 1, 2), (100, 65535, 7))
    for salt in ("", "s", "x" * 300):
        (digest,) = await client.call("weightsCommitHash", hot.public_bytes, list(vector.uids), list(vector.values),
                                      salt.encode(), 9)
        assert digest.hex() == vector.commit_hash(hot.public_hex, salt, 9)


@pytest.mark.anyio
async def test_binding_is_stored_and_verifies(evm: object) -> None:
    _anvil, client, _dev = evm  # type: ignore[misc]
    hot, other = key("hot"), key("other")
    account = await client._as(hot)
    (sig,) = await client.call("bindingSignature", hot.public_bytes)
    assert accounts.binding_valid(hot.public_bytes, sig, client.chain_id, client.address, account.address)
    assert not accounts.binding_valid(other.public_bytes, sig, client.chain_id, client.address, account.address)
    assert not accounts.binding_valid(hot.public_bytes, sig, client.chain_id + 1, client.address, account.address)
