"""Training the byte transformer: the loss falls, checkpoints resume exactly, export, time limit."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from tnode.plugins.text.tokenizer import encode  # noqa: E402
from tnode.plugins.text.train import Progress, TrainSettings, export, train  # noqa: E402
from tnode.plugins.text.transformer import Shape, load_checkpoint  # noqa: E402

TOKENS = encode("abcabcabd, the cat sat on the mat; " * 200)
TINY = Shape(d_model=32, n_layers=1, n_heads=2, context=32)


def settings(**kw: object) -> TrainSettings:
    base: dict[str, object] = {"steps": 60, "batch_size": 8, "lr": 1e-2, "warmup": 5, "shape": TINY,
                               "checkpoint_every": 20, "eval_windows": 8, "threads": 1}
    return TrainSettings(**{**base, **kw})  # type: ignore[arg-type]


def test_loss_falls_on_a_tiny_corpus(tmp_path: Path) -> None:
    seen: list[Progress] = []
    result = train(TOKENS, TOKENS, tmp_path / "m.pt", settings(), progress=seen.append)
    losses = [p.loss for p in seen]
    assert len(losses) == 60 and result.step == 60
    assert np.mean(losses[-10:]) < 0.5 * np.mean(losses[:5])
    assert result.heldout.nats < 1.5 < np.log(256)
    assert [p.step for p in seen if p.heldout is not None] == [20, 40, 60]
    assert (tmp_path / "m.pt").exists()


def test_resume_continues_exactly(tmp_path: Path) -> None:
    straight = train(TOKENS, TOKENS, tmp_path / "a.pt", settings(steps=30, checkpoint_every=10))
    train(TOKENS, TOKENS, tmp_path / "b.pt", settings(steps=30, checkpoint_every=10, max_seconds=1e-9))
    first, _ = load_checkpoint(tmp_path / "b.pt")
    _, state = load_checkpoint(tmp_path / "b.pt")
    assert state["step"] == 1  # the time limit stopped it after one step, with a checkpoint
    resumed = train(TOKENS, TOKENS, tmp_path / "b.pt", settings(steps=30, checkpoint_every=10))
    assert resumed.step == 30
    a, _ = load_checkpoint(tmp_path / "a.pt")
    b, _ = load_checkpoint(tmp_path / "b.pt")
    for (name, pa), (_, pb) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        torch.testing.assert_close(pa, pb, msg=name)
    assert resumed.heldout.nats == pytest.approx(straight.heldout.nats, rel=1e-5)
    assert not torch.equal(first.tok.weight, b.tok.weight)


def test_export_keeps_the_model_only(tmp_path: Path) -> None:
    train(TOKENS, TOKENS, tmp_path / "m.pt", settings(steps=5))
    export(tmp_path / "m.pt", tmp_path / "ship.pt")
    model, state = load_checkpoint(tmp_path / "ship.pt")
    assert state["optimizer"] is None and "data_rng" not in state and state["step"] == 5
    assert (tmp_path / "ship.pt").stat().st_size < (tmp_path / "m.pt").stat().st_size
    assert model.shape == TINY


def test_too_little_data_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="too few"):
        train(TOKENS[:20], TOKENS, tmp_path / "m.pt", settings())
