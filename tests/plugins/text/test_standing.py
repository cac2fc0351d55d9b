"""A miner follows what the chain pays it: after each epoch it reads its own uid and incentive."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest
from text_helpers import text_doc, write_corpus
from tnode.events import EpochCompleted
from tnode.keys import Keypair
from tnode.node import Node

pytestmark = pytest.mark.anyio


def miner_on_chain(tmp_path: Path, *, register: bool) -> Node:
    doc = text_doc(write_corpus(tmp_path), model={"type": "ngram", "dataset": "tiny", "order": 2})
    accounts = [{"coldkey": "self", "hotkey": "self", "balance": 10.0, "register": register},
                # Someone else holds a uid, so epochs run whether or not this node is registered.
                {"coldkey": Keypair.generate().public_hex, "hotkey": Keypair.generate().public_hex,
                 "register": True}]
    doc["chain"] = {"type": "local", "block_time": 0.05, "genesis": {"accounts": accounts},
                    "hyperparameters": {"tempo": 3}}
    doc["node"] = {"create_keys": True}
    return Node.from_dict(doc, data_dir=tmp_path / "node")


async def _after_epochs(node: Node, count: int) -> None:
    seen = 0
    done = anyio.Event()

    async def on_epoch(_: EpochCompleted) -> None:
        nonlocal seen
        seen += 1
        if seen >= count:
            done.set()

    sub = node.bus.subscribe(EpochCompleted, on_epoch, name="test-epochs")
    with anyio.fail_after(20):
        await done.wait()
    sub.close()
    await anyio.sleep(0.2)  # the modality reads the metagraph after the same event


async def test_a_registered_miner_knows_its_uid_after_an_epoch(tmp_path: Path) -> None:
    node = miner_on_chain(tmp_path, register=True)
    async with node.running():
        modality = node.component("modality", "text")
        assert modality.standing is None
        await _after_epochs(node, 2)
        standing = modality.standing
        assert standing is not None
        assert standing.uid in (0, 1) and standing.hotkey == node.hotkey.public_hex


async def test_an_unregistered_miner_has_no_standing(tmp_path: Path) -> None:
    node = miner_on_chain(tmp_path, register=False)
    async with node.running():
        await _after_epochs(node, 1)
        assert node.component("modality", "text").standing is None


def test_a_missing_checkpoint_is_reported_against_the_config_file_before_start(tmp_path: Path) -> None:
    from tnode.errors import ConfigErrors

    path = tmp_path / "node.toml"
    path.write_text('[node]\ncreate_keys = true\n\n[models.main]\ntype = "transformer"\ncheckpoint = "gone.pt"\n')
    with pytest.raises(ConfigErrors) as info:  # the constructor checks it, so `tnode validate` does too
        Node.from_file(path)
    (err,) = info.value.errors
    assert err.file == str(path)
    assert err.key_path == "models.main.checkpoint"
    assert "gone.pt does not exist" in str(err)
