"""Image aggregation: answers checked, outliers dropped, the rest combined per pixel.

Each answer to a restoration task must be a uint8 image of the shape the task implies. The
per-pixel median of the valid answers is the robust centre; an answer whose mean absolute distance
to it exceeds ``outlier_factor`` × the median of those distances (and a small absolute margin, so
near-identical honest answers are never dropped) is an outlier. What remains is combined by the
router's quality weights, or by the median again when asked.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from tnode.errors import TaskError

_MIN_OUTLIER_DISTANCE = 4.0  # grey levels: below this every answer agrees well enough


def expected_shape(task: str, image: np.ndarray, body: dict[str, Any]) -> tuple[int, int, int]:
    """The (H, W, C) an answer to ``task`` on ``image`` must have."""
    h, w, c = image.shape
    if task == "upscale":
        f = int(body.get("factor", 2))
        return h * f, w * f, c
    return h, w, c


def parse_image(payload: Any, shape: tuple[int, int, int]) -> np.ndarray:
    """A miner's image answer checked as untrusted input."""
    if not isinstance(payload, np.ndarray) or payload.dtype != np.uint8:
        raise TaskError("invalid_response", "the answer must be a uint8 image array")
    out = payload.reshape(*payload.shape[:2], 1) if payload.ndim == 2 else payload
    if out.shape != shape:
        raise TaskError("invalid_response", f"expected an image of shape {shape}, got {payload.shape}")
    return out


def outliers(images: Sequence[np.ndarray], factor: float) -> list[int]:
    """Indices of answers far from the per-pixel median of all of them (none with fewer than 3)."""
    if len(images) < 3:
        return []
    stack = np.stack(images).astype(np.float64)
    centre = np.median(stack, axis=0)
    dist = np.abs(stack - centre).mean(axis=(1, 2, 3))
    limit = max(factor * float(np.median(dist)), _MIN_OUTLIER_DISTANCE)
    return [i for i, d in enumerate(dist) if d > limit]


def combine(images: Sequence[np.ndarray], weights: np.ndarray, how: str = "weighted") -> np.ndarray:
    """One uint8 image: the quality-weighted per-pixel mean, or the per-pixel median."""
    stack = np.stack(images).astype(np.float64)
    if how == "median" or len(images) == 1:
        out = np.median(stack, axis=0)
    else:
        w = np.asarray(weights, dtype=np.float64)
        w = w / w.sum() if w.sum() > 0 else np.full(len(images), 1.0 / len(images))
        out = np.tensordot(w, stack, axes=1)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """Peak signal-to-noise ratio in dB between two uint8 images (capped at 100 for identical ones)."""
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 100.0 if mse <= 1e-10 else float(10 * np.log10(255.0**2 / mse))
