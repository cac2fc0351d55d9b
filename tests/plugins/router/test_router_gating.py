"""A gate learned by distillation (`tnode train --teachers network`) steers the router's priors."""

from __future__ import annotations

import pytest
import torch
from test_router_fanout import setup, topk_answer
from tnode.contracts.learning import GATING_FORMAT, gating_weights
from tnode.errors import ConfigError
from tnode.plugins.router.router import load_gate

pytestmark = pytest.mark.anyio


def gate_checkpoint(path, hotkeys, means):
    torch.save({"step": 10, "gating": {"format": GATING_FORMAT, "hotkeys": hotkeys, "uids": list(range(len(hotkeys))),
                                       "mean": torch.tensor(means), "answered": torch.tensor([5] * len(hotkeys))}},
               path)
    return path


def test_gating_weights_read_and_normalise_a_checkpoints_gate():
    state = {"gating": {"format": GATING_FORMAT, "hotkeys": ["a", "b"], "mean": torch.tensor([3.0, 1.0])}}
    assert gating_weights(state) == {"a": 0.75, "b": 0.25}
    with pytest.raises(ValueError, match="no gating"):
        gating_weights({"model": {}})


async def test_the_gates_favourite_starts_with_the_higher_prior_and_weight(tmp_path) -> None:
    # Two miners the chain knows nothing about: without a gate they start alike.
    plain, hot, _ = setup(tmp_path / "plain", [topk_answer(1), topk_answer(2)], k=2, k_min=2)
    async with plain.running():
        board = plain.component("router").board
        assert board.miners[hot[0]].prior == board.miners[hot[1]].prior
    # setup() makes the miners' keys, so the gate is written once their hotkeys are known and read again.
    ckpt = gate_checkpoint(tmp_path / "gate.pt", ["00" * 32], [1.0])
    gated, hot, _ = setup(tmp_path / "gated", [topk_answer(1), topk_answer(2)], k=2, k_min=2, gating=str(ckpt))
    gate_checkpoint(ckpt, hot, [0.9, 0.1])
    router = gated.component("router")
    router.gate = load_gate(gated, "r", router.config)
    async with gated.running():
        fav, other = router.board.miners[hot[0]], router.board.miners[hot[1]]
        assert fav.prior > other.prior and fav.weight > other.weight


def test_a_missing_gate_is_a_config_error(tmp_path) -> None:
    with pytest.raises(ConfigError) as err:
        setup(tmp_path, [topk_answer(1)], gating=str(tmp_path / "nope.pt"))
    assert "routers.r.gating" in str(err.value)
