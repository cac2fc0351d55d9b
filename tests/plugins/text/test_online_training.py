"""Online learning for a serving miner: the trained weights reach the served model only as whole
snapshots swapped between forward passes, training checkpoints and resumes."""

from __future__ import annotations

import copy
import threading

import anyio
import numpy as np
import pytest
import torch
from tnode.node import Node
from tnode.plugins.text.config import TransformerConfig
from tnode.plugins.text.transformer import TransformerModel

pytestmark = pytest.mark.anyio

SHAPE = {"d_model": 16, "n_layers": 1, "n_heads": 2, "context": 16}
PROBE = np.frombuffer(b"def probe(x):\n  ", dtype=np.uint8).astype(np.int64)[None, :]


def test_swapping_while_serving_gives_only_whole_models() -> None:
    torch.set_num_threads(1)
    served = TransformerModel(None, "m", TransformerConfig(**SHAPE))
    served.load()
    a = copy.deepcopy(served.model)
    b = copy.deepcopy(served.model)
    with torch.no_grad():
        for p in b.parameters():
            p.add_(0.05)
    expected = [served.next_token_logprobs(PROBE)]
    served.swap(copy.deepcopy(b))
    expected.append(served.next_token_logprobs(PROBE))
    assert not np.allclose(expected[0], expected[1])
    seen: list[np.ndarray] = []
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set() and len(seen) < 2000:
            seen.append(served.next_token_logprobs(PROBE))

    thread = threading.Thread(target=serve)
    thread.start()
    for i in range(200):
        served.swap(copy.deepcopy(a if i % 2 == 0 else b))
    stop.set()
    thread.join(timeout=30)
    assert served.swaps == 201 and len(seen) > 0
    for out in seen:
        assert any(np.array_equal(out, e) for e in expected)


def _doc(tmp, **training) -> dict:
    (tmp / "text").mkdir(exist_ok=True)
    (tmp / "text" / "a.txt").write_bytes(b"the quick brown fox jumps over the lazy dog. " * 300)
    (tmp / "text" / "b.txt").write_bytes(b"the quick brown fox jumps over the lazy dog! " * 40)
    return {
        "log": {"level": "warning"},
        "datasets": {"own": {"type": "text_files", "path": str(tmp / "text"), "heldout_fraction": 0.5, "seed": 1}},
        "models": {"main": {"type": "transformer", "threads": 1, **SHAPE}},
        "training": {"online": {"type": "text", "model": "main", "dataset": "own", "batch_size": 4, "lr": 3e-3,
                                "swap_every": 2, "checkpoint_every": 10, "busy_fraction": 0.1, **training}},
    }


async def test_online_training_swaps_snapshots_in_and_resumes_from_its_checkpoint(tmp_path, monkeypatch) -> None:
    snapshots: list[np.ndarray] = []
    swap = TransformerModel.swap

    def recording_swap(self, model) -> None:  # what each snapshot answers, before it is served
        snapshots.append(copy.deepcopy(model).eval()(torch.as_tensor(PROBE)).log_softmax(-1).detach().numpy())
        swap(self, model)

    monkeypatch.setattr(TransformerModel, "swap", recording_swap)
    node = Node.from_dict(_doc(tmp_path, max_steps=20), data_dir=tmp_path / "node")
    async with node.running():
        served = node.component("model", "main")
        trainer = node.component("training", "online")
        answers = []
        with anyio.fail_after(60):
            while trainer.step < 20:
                answers.append(await anyio.to_thread.run_sync(served.next_token_logprobs, PROBE))
                await anyio.sleep(0.002)
        untrained = TransformerModel(None, "m", TransformerConfig(**SHAPE))
        untrained.load()  # the same seeded initial weights the node started from
        first = untrained.next_token_logprobs(PROBE)
        first_loss = float(-np.mean(np.take_along_axis(first[0, :-1], PROBE[0, 1:, None], -1)))
        snapshots.append(first)
    assert trainer.step == 20 and served.swaps >= 10
    assert (tmp_path / "node" / "training" / "online.pt").is_file()
    for out in answers:  # every answer came from one whole snapshot
        assert any(np.allclose(out, s, atol=1e-5) for s in snapshots)
    assert trainer.heldout is not None and trainer.heldout.nats < first_loss

    again = Node.from_dict(_doc(tmp_path, max_steps=24), data_dir=tmp_path / "node")
    async with again.running():
        resumed = again.component("training", "online")
        with anyio.fail_after(60):
            while resumed.step < 24:
                await anyio.sleep(0.05)
    assert resumed.rounds == 2  # it started at step 20, not 0
    assert len(answers) > 3
