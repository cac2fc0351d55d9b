"""Training the image U-Net on CPU: a mixture of the restoration tasks, atomic checkpoints, exact resume.

The default loss (``psnr``) is the mean over images of 10·log10(MSE) — minus the PSNR the
validators score, image by image (inpainting: over the hole) — so training optimises exactly the
figure that is rewarded; a plain MSE would let the hard images of a batch dominate it. From random
weights it starts slowly (the first steps barely move a zero residual), so a new model is best
started with ``l1`` (mean absolute error, same weighting) and then refined with ``psnr`` from those
weights (``init``).

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
from .unet import UNet, UNetShape, consistent, load_checkpoint, low_planes, prepare, save_checkpoint


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
    task_weights: tuple[float, ...] = (0.4, 0.2, 0.4)  # how often each of RESTORATION_TASKS is drawn
    loss: str = "psnr"  # or "l1"


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


@dataclass(frozen=True)
class Batch:
    """Inputs (B, 6, H, W), targets (B, 3, H, W), loss weights (B, 1, H, W) and the upscale items
    ``(index, factor, low-resolution input)`` that :func:`consistent` projects."""

    x: torch.Tensor
    y: torch.Tensor
    w: torch.Tensor
    upscales: list[tuple[int, int, torch.Tensor]]


def _task_probabilities(settings: TrainSettings) -> np.ndarray:
    weights = np.asarray(settings.task_weights, dtype=np.float64)
    if weights.shape != (len(RESTORATION_TASKS),) or (weights < 0).any() or weights.sum() <= 0:
        raise ValueError(f"task_weights must be {len(RESTORATION_TASKS)} non-negative numbers "
                         f"({', '.join(RESTORATION_TASKS)}), not all zero; got {settings.task_weights}")
    return weights / weights.sum()


def make_batch(dataset: Any, rng: np.random.Generator, settings: TrainSettings) -> Batch:
    """One batch from the train split, a random task each (drawn by ``task_weights``). Inpainting is
    weighed on its hole only: the known pixels are kept anyway."""
    probabilities = _task_probabilities(settings)
    images, _ = dataset.sample("train", settings.batch_size, rng)
    xs, ys, ws, ups = [], [], [], []
    for i, img in enumerate(images):
        task = RESTORATION_TASKS[int(rng.choice(len(RESTORATION_TASKS), p=probabilities))]
        damaged, how = corrupt(img, task, rng, sigmas=settings.sigmas, factors=settings.factors)
        x, known = prepare(damaged, how)
        xs.append(x)
        weight = (~known).astype(np.float32) if task == "inpaint" else np.ones(known.shape, np.float32)
        ws.append(weight[None] / max(float(weight.mean()), 1e-6))
        if task == "upscale":
            ups.append((i, how.factor, low_planes(damaged)))
        target = img.astype(np.float32) / 255.0
        ys.append(np.repeat(target, 3, axis=-1).transpose(2, 0, 1) if target.shape[-1] == 1
                  else target.transpose(2, 0, 1))
    return Batch(torch.from_numpy(np.stack(xs)), torch.from_numpy(np.stack(ys).astype(np.float32)),
                 torch.from_numpy(np.stack(ws)), ups)


def l1_loss(out: torch.Tensor, batch: Batch) -> torch.Tensor:
    """Mean absolute error (inpainting: over the hole), on the [0, 1] scale."""
    return ((out - batch.y).abs() * batch.w).mean()


LOSSES = {"psnr": "psnr_loss", "l1": "l1_loss"}


def psnr_loss(out: torch.Tensor, batch: Batch) -> torch.Tensor:
    """Mean over images of 10·log10(weighted MSE + 1e-5): minus the mean PSNR in dB, capped at 50 dB."""
    mse = ((out - batch.y) ** 2 * batch.w).mean(dim=(1, 2, 3))
    return (10 * torch.log10(mse + 1e-5)).mean()


def train(dataset: Any, checkpoint: Path, settings: TrainSettings, *, resume: bool = True,
          progress: Callable[[Progress], None] | None = None, init: Path | None = None) -> TrainResult:
    """Train (or continue training) the U-Net on ``dataset``'s train split, checkpointing to ``checkpoint``.

    ``init``: a new run starts from the weights of this checkpoint (its shape wins over
    ``settings.shape``) with a fresh optimizer and schedule; ignored when resuming."""
    torch.set_num_threads(settings.threads)
    _task_probabilities(settings)
    if settings.loss not in LOSSES:
        raise ValueError(f"loss must be one of {', '.join(LOSSES)}, got {settings.loss!r}")
    loss_of = psnr_loss if settings.loss == "psnr" else l1_loss
    checkpoint = Path(checkpoint)
    if resume and checkpoint.exists():
        model, state = load_checkpoint(checkpoint)
        start = int(state.get("step", 0))
    elif init is not None:
        torch.manual_seed(settings.seed)
        model, state, start = load_checkpoint(Path(init))[0], {}, 0
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
        batch = make_batch(dataset, rng, settings)
        loss = loss_of(consistent(model(batch.x), batch.upscales), batch)
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

