"""Training the byte transformer on CPU: cosine schedule, periodic atomic checkpoints, exact resume.

A checkpoint holds the model, the optimizer, the step and both random generators (torch's global
one and the one that draws training windows), so a run stopped at any checkpoint and resumed
continues exactly as if it had not stopped.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .evaluate import Loss, cross_entropy, eval_windows
from .transformer import ByteTransformer, Shape, load_checkpoint, logprobs_any_length, save_checkpoint


@dataclass(frozen=True)
class TrainSettings:
    """Hyperparameters of one training run (the shape applies to new models only)."""

    steps: int = 600
    batch_size: int = 32
    lr: float = 3e-3
    min_lr_fraction: float = 0.1
    warmup: int = 30
    weight_decay: float = 0.01
    shape: Shape = Shape()
    seed: int = 0
    checkpoint_every: int = 100
    eval_windows: int = 32
    threads: int = 2
    max_seconds: float = 0.0  # > 0: stop (and checkpoint) after this long even before `steps`


@dataclass(frozen=True)
class Progress:
    """What the progress callback receives after every step."""

    step: int
    steps: int
    loss: float
    heldout: Loss | None  # set on checkpoint steps


@dataclass(frozen=True)
class TrainResult:
    step: int
    train_loss: float
    heldout: Loss
    seconds: float
    tokens_seen: int
    checkpoint: Path


class _Eval:
    """A bare module behind the LanguageModel interface (for :func:`cross_entropy`)."""

    def __init__(self, model: ByteTransformer) -> None:
        self.model = model

    def next_token_logprobs(self, tokens: np.ndarray) -> np.ndarray:
        return logprobs_any_length(self.model, torch.as_tensor(tokens, dtype=torch.long)).numpy()


def evaluate(model: ByteTransformer, batch: np.ndarray) -> Loss:
    """Held-out loss of ``model`` on ``batch`` (in eval mode; the training mode is restored)."""
    was_training = model.training
    model.eval()
    try:
        return cross_entropy(_Eval(model), batch)
    finally:
        model.train(was_training)


def _lr_at(step: int, s: TrainSettings) -> float:
    if step < s.warmup:
        return s.lr * (step + 1) / s.warmup
    frac = min(1.0, (step - s.warmup) / max(1, s.steps - s.warmup))
    return s.lr * (s.min_lr_fraction + (1 - s.min_lr_fraction) * 0.5 * (1 + math.cos(math.pi * frac)))


def train(train_tokens: np.ndarray, heldout_tokens: np.ndarray, checkpoint: Path, settings: TrainSettings, *,
          resume: bool = True, progress: Callable[[Progress], None] | None = None,
          distiller: Any = None) -> TrainResult:
    """Train (or continue training) the byte transformer, checkpointing to ``checkpoint``.

    Resumes from ``checkpoint`` when it exists and ``resume`` is true; the run ends at
    ``settings.steps`` total steps (a finished checkpoint is only evaluated). A ``distiller``
    (:class:`tnode.plugins.text.distill.Distiller`) replaces the next-token loss with its own and
    keeps its state in the checkpoint; it draws no random numbers, so the windows stay the same.
    """
    torch.set_num_threads(settings.threads)
    checkpoint = Path(checkpoint)
    data_gen = torch.Generator()
    if resume and checkpoint.exists():
        model, state = load_checkpoint(checkpoint)
        start = int(state.get("step", 0))
    else:
        torch.manual_seed(settings.seed)
        model, state, start = ByteTransformer(settings.shape), {}, 0
    model.train()
    if distiller is not None:
        distiller.setup(model, state)
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2 and not n.startswith("pos")]
    rest = [p for n, p in model.named_parameters() if not (p.dim() >= 2 and not n.startswith("pos"))]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": settings.weight_decay},
                             {"params": rest, "weight_decay": 0.0}], lr=settings.lr, betas=(0.9, 0.99))
    if state.get("optimizer"):
        opt.load_state_dict(state["optimizer"])
    if state.get("rng") is not None:
        torch.set_rng_state(state["rng"])
    if state.get("data_rng") is not None:
        data_gen.set_state(state["data_rng"])
    else:
        data_gen.manual_seed(settings.seed)

    ctx = model.shape.context
    data = torch.as_tensor(np.asarray(train_tokens, dtype=np.int64))
    if len(data) <= ctx + 1:
        raise ValueError(f"{len(data)} training tokens are too few for a context of {ctx}")
    held = eval_windows(heldout_tokens, windows=settings.eval_windows, length=ctx, seed=settings.seed)
    offsets = torch.arange(ctx + 1)

    def save(step: int) -> None:
        extra = {"rng": torch.get_rng_state(), "data_rng": data_gen.get_state()}
        if distiller is not None:
            extra.update(distiller.state())
        save_checkpoint(checkpoint, model, optimizer=opt, step=step, extra=extra)

    started = time.monotonic()
    loss_value = float("nan")
    step = start
    while step < settings.steps:
        for group in opt.param_groups:
            group["lr"] = _lr_at(step, settings)
        starts = torch.randint(0, len(data) - ctx - 1, (settings.batch_size,), generator=data_gen)
        batch = data[starts[:, None] + offsets]
        if distiller is not None:
            loss = distiller.loss(model, batch)
        else:
            logits = model(batch[:, :-1])
            loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]),
                                                     batch[:, 1:].reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if distiller is not None:
            distiller.step()
        step += 1
        loss_value = distiller.own_loss if distiller is not None else loss.item()  # the next-token loss
        out_of_time = settings.max_seconds > 0 and time.monotonic() - started >= settings.max_seconds
        heldout = None
        if step % settings.checkpoint_every == 0 or step == settings.steps or out_of_time:
            save(step)
            heldout = evaluate(model, held)
        if progress is not None:
            progress(Progress(step, settings.steps, loss_value, heldout))
        if out_of_time:
            break
    if step == start:
        save(step)  # nothing to do; still leave a checkpoint in place for a fresh zero-step run
    final = evaluate(model, held)
    return TrainResult(step, loss_value, final, time.monotonic() - started,
                       (step - start) * settings.batch_size * ctx, checkpoint)


def export(checkpoint: Path, dest: Path) -> None:
    """Write the model of ``checkpoint`` alone (no optimizer or generators): the file miners load."""
    model, state = load_checkpoint(checkpoint)
    save_checkpoint(dest, model, step=int(state.get("step", 0)))
