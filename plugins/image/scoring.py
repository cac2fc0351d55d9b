"""PSNR and SSIM scorers (scikit-image's metrics) with copy and constant-image checks.

Restoration answers are compared with the hidden original: the whole image for denoise and
upscale, the masked pixels only for inpaint (the rest was sent to the miner). A generate answer is
compared with the nearest of the held-out references of its class. An answer that is the damaged
input sent back (nearest-neighbour enlarged for upscale), or an image of (nearly) one colour when
the truth is not, scores 0 whatever its PSNR.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import anyio
import numpy as np
from skimage.metrics import peak_signal_noise_ratio, structural_similarity
from tnode.contracts.image import ImageAnswer, ImageTruth
from tnode.interfaces import ValidatorTask

from .config import PSNRConfig, SSIMConfig

COPY_MEAN_ABS = 0.5  # an answer this close to the damaged input (mean |Δ| in grey levels) is a copy
CONSTANT_STD = 1.0  # an image whose pixels vary less than this is "one colour"


def psnr(truth: np.ndarray, answer: np.ndarray, mask: np.ndarray | None = None) -> float:
    """PSNR in dB (data range 255) over all pixels or the True pixels of ``mask``; identical → inf."""
    t, a = (truth[mask], answer[mask]) if mask is not None else (truth, answer)
    if np.array_equal(t, a):
        return float("inf")
    return float(peak_signal_noise_ratio(t, a, data_range=255))


def ssim(truth: np.ndarray, answer: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Mean SSIM (window 7, or the largest odd window that fits), over ``mask`` when given."""
    side = min(truth.shape[:2])
    win = min(7, side if side % 2 else side - 1)
    if win < 3:
        return 1.0 if np.array_equal(truth, answer) else 0.0
    _, full = structural_similarity(truth, answer, data_range=255, channel_axis=-1, win_size=win, full=True)
    full = full.mean(axis=-1)
    return float(full[mask].mean() if mask is not None else full.mean())


def is_copy(truth: ImageTruth, answer: np.ndarray) -> bool:
    """Whether ``answer`` is the damaged input returned as it was (upscale: enlarged by repetition)."""
    sent = truth.corrupted
    if sent is None:
        return False
    c = truth.corruption
    if c.task == "upscale":
        sent = np.repeat(np.repeat(sent, c.factor, axis=0), c.factor, axis=1)
    region = c.mask if c.task == "inpaint" else None
    diff = np.abs(answer.astype(np.float64) - sent.astype(np.float64))
    return bool((diff[region] if region is not None else diff).mean() < COPY_MEAN_ABS)


def is_constant(truth: ImageTruth, answer: np.ndarray) -> bool:
    """Whether ``answer`` is (nearly) one colour while the original is not."""
    return bool(answer.reshape(-1, answer.shape[-1]).std(axis=0).max() < CONSTANT_STD
                and truth.original.reshape(-1, truth.original.shape[-1]).std(axis=0).max() >= 4 * CONSTANT_STD)


class _ImageScorer:
    """Shared scoring loop: checks, then a per-answer quality mapped to [0, 1]."""

    config: Any

    def __init__(self, node: Any, name: str, config: Any) -> None:
        self.node = node
        self.name = name
        self.config = config
        self.flagged: dict[str, int] = {"copy": 0, "constant": 0}

    async def run(self, *, task_status: Any = anyio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        await anyio.sleep_forever()

    def quality(self, truth: ImageTruth, answer: np.ndarray) -> float:
        raise NotImplementedError

    def to_score(self, quality: float) -> float:
        raise NotImplementedError

    def value(self, task: ValidatorTask, answer: Any) -> float | None:
        """The raw quality (dB or SSIM) of one answer, or None when it is unusable or flagged."""
        truth = task.truth
        if not isinstance(truth, ImageTruth) or not isinstance(answer, ImageAnswer):
            return None
        img = answer.image
        if img.shape != truth.original.shape:
            return None
        if self.config.check_copy and is_copy(truth, img):
            self.flagged["copy"] += 1
            return None
        if self.config.check_constant and is_constant(truth, img):
            self.flagged["constant"] += 1
            return None
        return self.quality(truth, img)

    def score(self, task: ValidatorTask, answers: Mapping[int, Any], latencies: Mapping[int, float]) -> dict[int, float]:
        """Scores in [0, 1] for every uid in ``answers``; missing, misfit and flagged answers get 0."""
        out: dict[int, float] = {}
        for uid, answer in answers.items():
            q = self.value(task, answer)
            out[uid] = 0.0 if q is None else self.to_score(q)
        return out


class PSNRScorer(_ImageScorer):
    """``[scorers.NAME] type = "psnr"``: see :class:`PSNRConfig`."""

    def quality(self, truth: ImageTruth, answer: np.ndarray) -> float:
        c = truth.corruption
        if c.task == "generate" and truth.references is not None:
            return max(psnr(ref, answer) for ref in truth.references)
        return psnr(truth.original, answer, c.mask if c.task == "inpaint" else None)

    def to_score(self, quality: float) -> float:
        lo, hi = self.config.floor_db, max(self.config.cap_db, self.config.floor_db + 1e-9)
        return float(np.clip((quality - lo) / (hi - lo), 0.0, 1.0))


class SSIMScorer(_ImageScorer):
    """``[scorers.NAME] type = "ssim"``: see :class:`SSIMConfig`."""

    def quality(self, truth: ImageTruth, answer: np.ndarray) -> float:
        c = truth.corruption
        if c.task == "generate" and truth.references is not None:
            return max(ssim(ref, answer) for ref in truth.references)
        return ssim(truth.original, answer, c.mask if c.task == "inpaint" else None)

    def to_score(self, quality: float) -> float:
        return float(np.clip(quality, 0.0, 1.0))


def make_psnr(node: Any, name: str, config: PSNRConfig) -> PSNRScorer:
    from tnode.errors import ConfigError

    if config.cap_db <= config.floor_db:
        raise ConfigError(f"cap_db {config.cap_db} must exceed floor_db {config.floor_db}",
                          key_path=f"scorers.{name}.cap_db")
    return PSNRScorer(node, name, config)


def make_ssim(node: Any, name: str, config: SSIMConfig) -> SSIMScorer:
    return SSIMScorer(node, name, config)
