"""Held-out PSNR/SSIM of image models on fixed validator-style tasks (what `tnode image eval` prints)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from tnode.contracts.image import RESTORATION_TASKS, ImageTruth

from .corrupt import corrupt
from .scoring import psnr, ssim


@dataclass(frozen=True)
class EvalRow:
    """Mean PSNR (dB) and SSIM of one model on one task."""

    model: str
    task: str
    psnr: float
    ssim: float
    count: int


def eval_tasks(dataset: Any, *, per_task: int = 32, seed: int = 1, tasks: tuple[str, ...] = RESTORATION_TASKS,
               sigmas: tuple[float, ...] = (10.0, 25.0, 50.0), factors: tuple[int, ...] = (2, 4)
               ) -> list[ImageTruth]:
    """Fixed held-out tasks (same for every model): ``per_task`` of each restoration task."""
    rng = np.random.default_rng(seed)
    out = []
    for task in tasks:
        images, _ = dataset.sample("heldout", per_task, rng)
        for img in images:
            damaged, how = corrupt(img, task, rng, sigmas=sigmas, factors=factors)
            out.append(ImageTruth(img, damaged, how))
    return out


def evaluate(name: str, model: Any, truths: list[ImageTruth]) -> list[EvalRow]:
    """Mean PSNR/SSIM per task (inpainting: over the masked pixels), plus an "all" row."""
    per: dict[str, list[tuple[float, float]]] = {}
    for t in truths:
        assert t.corrupted is not None
        answer = model.restore(t.corrupted, t.corruption)
        mask = t.corruption.mask if t.corruption.task == "inpaint" else None
        p = min(psnr(t.original, answer, mask), 100.0)  # an exact answer counts as 100 dB
        per.setdefault(t.corruption.task, []).append((p, ssim(t.original, answer, mask)))
    rows = [EvalRow(name, task, float(np.mean([v[0] for v in vals])), float(np.mean([v[1] for v in vals])), len(vals))
            for task, vals in per.items()]
    every = [v for vals in per.values() for v in vals]
    rows.append(EvalRow(name, "all", float(np.mean([v[0] for v in every])), float(np.mean([v[1] for v in every])),
                        len(every)))
    return rows
