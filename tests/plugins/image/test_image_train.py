"""U-Net training: it learns, checkpoints are atomic, and a resumed run continues exactly."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from tnode.plugins.image.config import ShapesConfig
from tnode.plugins.image.datasets import ShapesDataset
from tnode.plugins.image.train import Batch, TrainSettings, export, psnr_loss, train
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
    settings = TrainSettings(steps=200, batch_size=8, lr=3e-3, warmup=5, shape=UNetShape(8), checkpoint_every=200,
                             loss="l1", task_weights=(0.0, 1.0, 0.0))  # denoising shows learning soonest
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


def test_task_weights_are_checked_before_training(tmp_path: Path, shapes: ShapesDataset) -> None:
    with pytest.raises(ValueError, match="task_weights must be 3 non-negative numbers"):
        train(shapes, tmp_path / "w.pt", TrainSettings(steps=1, task_weights=(1.0, 0.0), **TINY))
    assert not (tmp_path / "w.pt").exists()


def test_the_upscale_projection_keeps_block_means_and_never_moves_away_from_the_original() -> None:
    from tnode.plugins.image.corrupt import downscale
    from tnode.plugins.image.unet import consistent, low_planes

    rng = np.random.default_rng(5)
    for f in (2, 4):
        original = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
        low = downscale(original, f)
        guess = torch.rand(2, 3, 16, 16)  # item 0 is an upscale answer, item 1 is left alone
        out = consistent(guess, [(0, f, low_planes(low))])
        assert torch.equal(out[1], guess[1])
        means = torch.nn.functional.avg_pool2d(out[:1], f)[0]
        assert torch.allclose(means, low_planes(low), atol=1e-6)
        truth = torch.from_numpy(original.transpose(2, 0, 1).astype(np.float32) / 255)
        # Rounding the low-resolution input to uint8 moves the constraint set by at most half a level.
        assert (out[0] - truth).norm() <= (guess[0] - truth).norm() + 0.5 / 255 * 16


def test_the_train_command_starts_from_init_weights_and_exports(tmp_path: Path) -> None:
    import subprocess
    import sys

    from tnode.plugins.image.models import BUILTIN_CHECKPOINT

    tnode = [sys.executable, "-c", "from tnode.cli import main; main()"]
    bad = subprocess.run([*tnode, "image", "train", "--checkpoint", str(tmp_path / "x.pt"), "--task-weights", "1,a"],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "--task-weights" in bad.stderr
    out = subprocess.run([*tnode, "image", "train", "--checkpoint", str(tmp_path / "c.pt"), "--steps", "2",
                          "--batch-size", "2", "--size", "16", "--init", "builtin", "--export", str(tmp_path / "e.pt")],
                         capture_output=True, text=True, timeout=120, env={**os.environ, "COLUMNS": "160"})
    assert out.returncode == 0, out.stdout + out.stderr
    assert "train PSNR" in out.stdout and "held-out restoration" in out.stdout
    builtin, exported = load_checkpoint(BUILTIN_CHECKPOINT), load_checkpoint(tmp_path / "e.pt")
    assert exported[1]["shape"] == builtin[1]["shape"] and exported[1]["step"] == 2
    assert any(not torch.equal(v, exported[0].state_dict()[k]) for k, v in builtin[0].state_dict().items())


def test_the_psnr_loss_is_minus_the_psnr_validators_score() -> None:
    from tnode.plugins.image.scoring import psnr

    rng = np.random.default_rng(2)
    truth = rng.integers(0, 256, (2, 16, 16, 3)).astype(np.float32) / 255
    noisy = np.clip(truth + rng.normal(0, 0.05, truth.shape), 0, 1).astype(np.float32)
    hole = np.zeros((2, 1, 16, 16), np.float32)
    hole[1, :, 4:10, 2:12] = 1  # the second image is scored on its hole only, as for inpainting
    weights = np.ones_like(hole)
    weights[1] = hole[1] / hole[1].mean()
    t = lambda a: torch.from_numpy(np.ascontiguousarray(a))  # noqa: E731
    batch = Batch(t(np.zeros((2, 6, 16, 16), np.float32)), t(truth.transpose(0, 3, 1, 2)), t(weights), [])
    loss = psnr_loss(t(noisy.transpose(0, 3, 1, 2)), batch).item()
    to8 = lambda a: (a * 255).astype(np.float64)  # noqa: E731  (scikit-image on the 0–255 scale)
    expected = [psnr(to8(truth[0]), to8(noisy[0])), psnr(to8(truth[1]), to8(noisy[1]), hole[1, 0] > 0)]
    assert loss == pytest.approx(-np.mean(expected), abs=0.05)  # the loss adds 1e-5 to each MSE
