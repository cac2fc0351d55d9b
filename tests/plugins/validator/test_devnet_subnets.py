"""A devnet with two subnets (text and image) on one chain: each ranks its own miners, and each
subnet's share of the emission matches the configured split."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from devnet_helpers import leftover_processes, run_devnet
from tnode.plugins.validator.devnet.plan import DevnetOptions, make_plan


def test_plan_gives_each_modality_a_subnet(tmp_path: Path) -> None:
    plan = make_plan(DevnetOptions(run_dir=tmp_path, miners=2, validators=1, modality="text,image",
                                   emission_shares=(0.3, 0.7), registration="genesis"))
    assert plan.subnets == {1: "text", 2: "image"}
    chain = tomllib.loads(plan.authority.config_path.read_text())["chain"]
    assert [(s["netuid"], s["modality"], s["emission_share"]) for s in chain["subnets"]] == [
        (1, "text", 0.3), (2, "image", 0.7)]
    assert "hyperparameters" in chain["subnets"][1]
    for spec in [*plan.validators, *plan.miners]:
        doc = tomllib.loads(spec.config_path.read_text())
        assert doc["node"]["netuid"] == spec.netuid == (1 if spec.modality == "text" else 2)
        assert spec.name.startswith(f"{spec.modality}-")
        assert spec.modality in doc["modalities"]
    # Genesis registrations land in the node's own subnet only.
    accounts = {a["hotkey"]: a for a in chain["genesis"]["accounts"] if "hotkey" in a}
    for spec in [*plan.validators, *plan.miners]:
        assert accounts[spec.hotkey.public_hex]["netuids"] == [spec.netuid]
    assert [m.model for m in plan.part(2).miners] == ["unet", "classical"]


def test_single_modality_plan_keeps_its_layout(tmp_path: Path) -> None:
    plan = make_plan(DevnetOptions(run_dir=tmp_path, miners=2, validators=1))
    chain = tomllib.loads(plan.authority.config_path.read_text())["chain"]
    assert "subnets" not in chain and "hyperparameters" in chain
    assert [m.name for m in plan.miners] == ["miner0", "miner1"]


def test_shares_must_match_the_modalities(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="sum to 1"):
        make_plan(DevnetOptions(run_dir=tmp_path, modality="text,image", emission_shares=(0.5, 0.6)))


@pytest.mark.slow
def test_two_subnets_rank_their_miners_and_split_emission(tmp_path: Path) -> None:
    report = tmp_path / "r.json"
    # Two miners per subnet, of clearly different quality: the shipped transformer and a 3-gram, the
    # shipped U-Net and a garbage image miner.
    result = run_devnet(["--modality", "text,image", "--emission-shares", "0.3,0.7", "--miners", "2",
                         "--models", "transformer,ngram,unet,image_garbage", "--validators", "1", "--epochs", "2",
                         "--tempo", "8", "--block-time", "0.5", "--registration", "genesis"],
                        tmp_path / "run", report=report)
    assert result.returncode == 0, result.tail()
    doc = result.report
    assert doc is not None
    assert doc["subnets"]["1"]["checks"]["incentive_order"] == ["transformer", "ngram"], doc["subnets"]["1"]["checks"]
    assert doc["subnets"]["2"]["checks"]["incentive_order"] == ["unet", "image_garbage"], \
        doc["subnets"]["2"]["checks"]
    for netuid, share in (("1", 0.3), ("2", 0.7)):
        split = doc["emission_split"][netuid]
        assert split["configured"] == share
        assert split["measured"] == pytest.approx(share, rel=0.01), doc["emission_split"]
    assert doc["checks"]["passed"], doc["checks"]
    # Each subnet's report holds only its own miners.
    models = {n["model"] for n in doc["subnets"]["2"]["neurons"] if n["role"] == "miner"}
    assert models == {"unet", "image_garbage"}
    assert not leftover_processes(tmp_path / "run")
