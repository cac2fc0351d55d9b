"""Training the image U-Net on CPU: a mixture of the restoration tasks, atomic checkpoints, exact resume.

A checkpoint holds the model, the optimizer, the step and both random generators (torch's and
the numpy one that draws images and corruptions), so a run stopped at a checkpoint and resumed
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
from tnode.contracts.image import RESTORATION_TASKS

from .corrupt import corrupt
from .unet import UNet, UNetShape, load_checkpoint, prepare, save_checkpoint


@dataclass(frozen=True)
class TrainSettings:
    """Hyperparameters of one training run (the shape applies to new models only)."""

    steps: int = 2500
    batch_size: int = 16
    lr: float = 3e-3
    min_lr_fraction: float = 0.05
    warmup: int = 50
    shape: UNetShape = UNetShape()
    seed: int = 0
    checkpoint_every: int = 100
    threads: int = 1
    sigmas: tuple[float, ...] = (10.0, 25.0, 50.0)
    factors: tuple[int, ...] = (2, 4)
    max_seconds: float = 0.0  # > 0: stop (and checkpoint) after this long even before `steps`


@dataclass(frozen=True)
class Progress:
    """What the progress callback receives after every step."""

    step: int
    steps: int
    loss: float
    saved: bool


@dataclass(frozen=True)
class TrainResult:
    step: int
    loss: float
    seconds: float
    checkpoint: Path


def _rng_state_out(rng: np.random.Generator) -> dict[str, str]:
    """numpy's PCG64 state as strings (its 128-bit integers survive weights-only loading that way)."""
    st = rng.bit_generator.state
    return {"bit_generator": st["bit_generator"], "state": str(st["state"]["state"]), "inc": str(st["state"]["inc"]),
            "has_uint32": str(st["has_uint32"]), "uinteger": str(st["uinteger"])}


def _rng_state_in(saved: dict[str, str]) -> dict[str, Any]:
    return {"bit_generator": saved["bit_generator"], "state": {"state": int(saved["state"]), "inc": int(saved["inc"])},
            "has_uint32": int(saved["has_uint32"]), "uinteger": int(saved["uinteger"])}


def _lr_at(step: int, s: TrainSettings) -> float:
    if step < s.warmup:
        return s.lr * (step + 1) / s.warmup
    frac = min(1.0, (step - s.warmup) / max(1, s.steps - s.warmup))
    return s.lr * (s.min_lr_fraction + (1 - s.min_lr_fraction) * 0.5 * (1 + math.cos(math.pi * frac)))


def make_batch(dataset: Any, rng: np.random.Generator, settings: TrainSettings
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Inputs (B, 6, H, W), targets (B, 3, H, W) and loss weights (B, 1, H, W) from the train split,
    one random task each. Inpainting is weighed on its hole only: the known pixels are kept anyway,
    and counting them would drown the hole's gradient."""
    images, _ = dataset.sample("train", settings.batch_size, rng)
    xs, ys, ws = [], [], []
    for img in images:
        task = RESTORATION_TASKS[int(rng.integers(len(RESTORATION_TASKS)))]
        damaged, how = corrupt(img, task, rng, sigmas=settings.sigmas, factors=settings.factors)
        x, known = prepare(damaged, how)
        xs.append(x)
        weight = (~known).astype(np.float32) if task == "inpaint" else np.ones(known.shape, np.float32)
        ws.append(weight[None] / max(float(weight.mean()), 1e-6))
        target = img.astype(np.float32) / 255.0
        ys.append(np.repeat(target, 3, axis=-1).transpose(2, 0, 1) if target.shape[-1] == 1
                  else target.transpose(2, 0, 1))
    return (torch.from_numpy(np.stack(xs)), torch.from_numpy(np.stack(ys).astype(np.float32)),
            torch.from_numpy(np.stack(ws)))


def train(dataset: Any, checkpoint: Path, settings: TrainSettings, *, resume: bool = True,
          progress: Callable[[Progress], None] | None = None) -> TrainResult:
    """Train (or continue training) the U-Net on ``dataset``'s train split, checkpointing to ``checkpoint``."""
    torch.set_num_threads(settings.threads)
    checkpoint = Path(checkpoint)
    if resume and checkpoint.exists():
        model, state = load_checkpoint(checkpoint)
        start = int(state.get("step", 0))
    else:
        torch.manual_seed(settings.seed)
        model, state, start = UNet(settings.shape), {}, 0
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=settings.lr, weight_decay=1e-4)
    if state.get("optimizer"):
        opt.load_state_dict(state["optimizer"])
    if state.get("rng") is not None:
        torch.set_rng_state(state["rng"])
    rng = np.random.default_rng(settings.seed)
    if state.get("data_rng") is not None:
        rng.bit_generator.state = _rng_state_in(state["data_rng"])

    def save(step: int) -> None:
        save_checkpoint(checkpoint, model, optimizer=opt, step=step,
                        extra={"rng": torch.get_rng_state(), "data_rng": _rng_state_out(rng)})

    started = time.monotonic()
    loss_value = float("nan")
    step = start
    while step < settings.steps:
        for group in opt.param_groups:
            group["lr"] = _lr_at(step, settings)
        x, y, w = make_batch(dataset, rng, settings)
        loss = ((model(x) - y).abs() * w).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        loss_value = loss.item()
        out_of_time = settings.max_seconds > 0 and time.monotonic() - started >= settings.max_seconds
        saved = step % settings.checkpoint_every == 0 or step == settings.steps or out_of_time
        if saved:
            save(step)
        if progress is not None:
            progress(Progress(step, settings.steps, loss_value, saved))
        if out_of_time:
            break
    if step == start:
        save(step)
    return TrainResult(step, loss_value, time.monotonic() - started, checkpoint)


def export(checkpoint: Path, dest: Path) -> None:
    """Write the model of ``checkpoint`` alone (no optimizer or generators): the file miners load."""
    model, state = load_checkpoint(checkpoint)
    save_checkpoint(dest, model, step=int(state.get("step", 0)))

