"""U-Net training: it learns, checkpoints are atomic, and a resumed run continues exactly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from tnode.plugins.image.config import ShapesConfig
from tnode.plugins.image.datasets import ShapesDataset
from tnode.plugins.image.train import TrainSettings, export, train
from tnode.plugins.image.unet import UNetShape, load_checkpoint

TINY = dict(batch_size=4, lr=3e-3, warmup=2, shape=UNetShape(4), checkpoint_every=3, threads=1)


@pytest.fixture
def shapes() -> ShapesDataset:
    return ShapesDataset(None, "s", ShapesConfig(size=16))


def weights(path: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(path)[0].state_dict()


def test_a_resumed_run_ends_exactly_where_an_uninterrupted_one_does(tmp_path: Path, shapes: ShapesDataset) -> None:
    straight = train(shapes, tmp_path / "a.pt", TrainSettings(steps=6, **TINY))
    assert straight.step == 6
    first = train(shapes, tmp_path / "b.pt", TrainSettings(steps=3, **TINY))
    assert first.step == 3 and load_checkpoint(tmp_path / "b.pt")[1]["step"] == 3
    resumed = train(shapes, tmp_path / "b.pt", TrainSettings(steps=6, **TINY))
    assert resumed.step == 6 and resumed.loss == pytest.approx(straight.loss, abs=1e-6)
    a, b = weights(tmp_path / "a.pt"), weights(tmp_path / "b.pt")
    assert all(torch.equal(a[k], b[k]) for k in a)
    # A finished checkpoint is not trained further; --fresh (resume=False) starts over.
    again = train(shapes, tmp_path / "b.pt", TrainSettings(steps=6, **TINY))
    assert again.step == 6 and all(torch.equal(a[k], weights(tmp_path / "b.pt")[k]) for k in a)
    assert not list(tmp_path.glob("*.tmp"))


def test_training_lowers_the_loss_and_export_drops_the_optimizer(tmp_path: Path, shapes: ShapesDataset) -> None:
    settings = TrainSettings(steps=200, batch_size=8, lr=3e-3, warmup=5, shape=UNetShape(8), checkpoint_every=200)
    losses: list[float] = []
    train(shapes, tmp_path / "m.pt", settings, progress=lambda p: losses.append(p.loss))
    assert len(losses) == 200
    # The first steps score the prepared input itself (the output layer starts at zero).
    assert np.mean(losses[-40:]) < 0.95 * np.mean(losses[:20])
    export(tmp_path / "m.pt", tmp_path / "export.pt")
    _, state = load_checkpoint(tmp_path / "export.pt")
    assert "optimizer" not in state and state["step"] == 200


def test_a_file_that_is_not_a_unet_checkpoint_is_refused(tmp_path: Path) -> None:
    torch.save({"kind": "something else"}, tmp_path / "x.pt")
    with pytest.raises(ValueError, match="not an image U-Net checkpoint"):
        load_checkpoint(tmp_path / "x.pt")
