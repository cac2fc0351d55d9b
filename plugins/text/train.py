"""Training the byte transformer on CPU: checkpoints, resume, held-out evaluation."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .transformer import ByteTransformer, Shape, cross_entropy, load_checkpoint, save_checkpoint


@dataclass
class TrainResult:
    step: int
    train_loss: float
    heldout_loss: float
    seconds: float
    checkpoint: Path


class _Wrapped:
    """Gives a bare module the LanguageModel interface for :func:`cross_entropy`."""

    def __init__(self, model: ByteTransformer) -> None:
        self.model = model

    @torch.inference_mode()
    def next_token_logprobs(self, tokens: np.ndarray) -> np.ndarray:
        self.model.eval()
        out = torch.log_softmax(self.model(torch.as_tensor(tokens, dtype=torch.long)), -1).numpy()
        self.model.train()
        return out


def train(train_tokens: np.ndarray, heldout_tokens: np.ndarray, checkpoint: Path, *, steps: int = 3000,
          batch_size: int = 32, lr: float = 3e-3, shape: Shape | None = None, seed: int = 0, resume: bool = True,
          checkpoint_every: int = 250, threads: int = 2,
          progress: Callable[[int, int, float], None] | None = None) -> TrainResult:
    """Train (or continue training) the byte transformer and save it to ``checkpoint``.

    Resumes from ``checkpoint`` when it exists and ``resume`` (model, optimizer, step and torch RNG).
    ``progress(step, steps, loss)`` is called after every step.
    """
    torch.set_num_threads(threads)
    checkpoint = Path(checkpoint)
    start_step = 0
    if resume and checkpoint.exists():
        model, state = load_checkpoint(checkpoint)
        model.train()
        opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01, betas=(0.9, 0.99))
        if state.get("optimizer"):
            opt.load_state_dict(state["optimizer"])
        start_step = int(state.get("step", 0))
        if state.get("rng") is not None:
            torch.set_rng_state(state["rng"])
    else:
        torch.manual_seed(seed)
        model = ByteTransformer(shape or Shape()).train()
        opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01, betas=(0.9, 0.99))
    ctx = model.shape.context
    data = torch.as_tensor(np.asarray(train_tokens, dtype=np.int64))
    gen = torch.Generator().manual_seed(seed + start_step)
    warmup = max(1, min(200, steps // 10))

    def lr_at(step: int) -> float:
        if step < warmup:
            return lr * (step + 1) / warmup
        frac = (step - warmup) / max(1, steps - warmup)
        return lr * (0.1 + 0.9 * 0.5 * (1 + np.cos(np.pi * min(frac, 1.0))))

    started = time.monotonic()
    loss_value = float("nan")
    for step in range(start_step, steps):
        for group in opt.param_groups:
            group["lr"] = lr_at(step)
        starts = torch.randint(0, len(data) - ctx - 1, (batch_size,), generator=gen)
        batch = torch.stack([data[s : s + ctx + 1] for s in starts.tolist()])
        logits = model(batch[:, :-1])
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), batch[:, 1:].reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        loss_value = float(loss.detach())
        if progress is not None:
            progress(step + 1, steps, loss_value)
        if (step + 1) % checkpoint_every == 0:
            save_checkpoint(checkpoint, model, opt, step + 1)
    final_step = max(steps, start_step)
    save_checkpoint(checkpoint, model, opt, final_step)
    heldout = cross_entropy(_Wrapped(model), heldout_tokens, length=min(ctx, 128))
    return TrainResult(final_step, loss_value, heldout, time.monotonic() - started, checkpoint)
