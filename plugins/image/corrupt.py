"""Making task inputs from originals (validators, training) and the mask's wire encoding.

Inpainting zeroes the masked pixels before sending, so the hidden content never leaves the
validator; noise is Gaussian on the 0–255 scale, rounded and clipped to uint8; upscale inputs are
block means (area downsampling), so every low-resolution pixel is an exact average of the original.
"""

from __future__ import annotations

import base64
from typing import Any

import numpy as np
from tnode.contracts.image import Corruption


def box_mask(height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """A rectangle covering 20–50 % of each side, somewhere inside the image."""
    h = int(rng.integers(max(1, height // 5), max(2, height // 2) + 1))
    w = int(rng.integers(max(1, width // 5), max(2, width // 2) + 1))
    y, x = int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1))
    mask = np.zeros((height, width), dtype=bool)
    mask[y : y + h, x : x + w] = True
    return mask


def free_mask(height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """Free-form strokes: a few random walks with a brush of radius ~side/16."""
    yy, xx = np.mgrid[0:height, 0:width]
    mask = np.zeros((height, width), dtype=bool)
    radius = max(1.0, min(height, width) / 16)
    for _ in range(int(rng.integers(2, 4))):
        y, x = rng.uniform(0, height), rng.uniform(0, width)
        angle = rng.uniform(0, 2 * np.pi)
        for _ in range(int(rng.integers(4, 9))):
            mask |= (yy - y) ** 2 + (xx - x) ** 2 <= radius**2
            angle += rng.uniform(-0.8, 0.8)
            y = float(np.clip(y + np.sin(angle) * radius, 0, height - 1))
            x = float(np.clip(x + np.cos(angle) * radius, 0, width - 1))
    if not mask.any():
        mask[height // 2, width // 2] = True
    return mask


def encode_mask(mask: np.ndarray) -> dict[str, Any]:
    """The body form of a mask: ``{"box": [y0, x0, y1, x1]}`` when it is one rectangle (end
    exclusive), else ``{"bits": base64 of numpy.packbits(mask, row-major, big bit order)}``."""
    ys, xs = np.nonzero(mask)
    if ys.size:
        y0, y1, x0, x1 = int(ys.min()), int(ys.max()) + 1, int(xs.min()), int(xs.max()) + 1
        if mask[y0:y1, x0:x1].all() and int(mask.sum()) == (y1 - y0) * (x1 - x0):
            return {"box": [y0, x0, y1, x1]}
    return {"bits": base64.b64encode(np.packbits(mask.reshape(-1)).tobytes()).decode()}


def decode_mask(value: Any, height: int, width: int) -> np.ndarray:
    """Inverse of :func:`encode_mask`; raises ``ValueError`` naming what is wrong."""
    if not isinstance(value, dict) or len(value) != 1 or next(iter(value)) not in ("box", "bits"):
        raise ValueError('mask must be {"box": [y0, x0, y1, x1]} or {"bits": "<base64>"}')
    if "box" in value:
        box = value["box"]
        if (not isinstance(box, list) or len(box) != 4
                or not all(isinstance(v, int) and not isinstance(v, bool) for v in box)):
            raise ValueError("mask.box must be four integers [y0, x0, y1, x1]")
        y0, x0, y1, x1 = box
        if not (0 <= y0 < y1 <= height and 0 <= x0 < x1 <= width):
            raise ValueError(f"mask.box {box} is empty or outside the {height}×{width} image")
        mask = np.zeros((height, width), dtype=bool)
        mask[y0:y1, x0:x1] = True
        return mask
    bits = value["bits"]
    need = (height * width + 7) // 8
    if not isinstance(bits, str) or len(bits) > 4 * need + 8:
        raise ValueError(f"mask.bits must be a base64 string of {need} bytes")
    try:
        raw = base64.b64decode(bits, validate=True)
    except ValueError:
        raise ValueError("mask.bits is not valid base64") from None
    if len(raw) != need:
        raise ValueError(f"mask.bits holds {len(raw)} bytes, a {height}×{width} mask needs {need}")
    mask = np.unpackbits(np.frombuffer(raw, dtype=np.uint8))[: height * width].astype(bool).reshape(height, width)
    if not mask.any():
        raise ValueError("mask.bits masks no pixel")
    return mask


def downscale(image: np.ndarray, factor: int) -> np.ndarray:
    """Block-mean downsampling of uint8 (H, W, C) by ``factor`` (H and W must be multiples of it)."""
    h, w, c = image.shape
    blocks = image.reshape(h // factor, factor, w // factor, factor, c).astype(np.float64)
    return np.rint(blocks.mean(axis=(1, 3))).astype(np.uint8)


def add_noise(image: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    noisy = image.astype(np.float64) + rng.normal(0.0, sigma, image.shape)
    return np.clip(np.rint(noisy), 0, 255).astype(np.uint8)


def corrupt(image: np.ndarray, task: str, rng: np.random.Generator, *, sigmas: tuple[float, ...] = (25.0,),
            factors: tuple[int, ...] = (2,), mask_kinds: tuple[str, ...] = ("box", "free")
            ) -> tuple[np.ndarray, Corruption]:
    """The damaged input for ``task`` and how it was made."""
    h, w, c = image.shape
    if task == "inpaint":
        kind = mask_kinds[int(rng.integers(len(mask_kinds)))]
        mask = box_mask(h, w, rng) if kind == "box" else free_mask(h, w, rng)
        damaged = image.copy()
        damaged[mask] = 0
        return damaged, Corruption("inpaint", mask=mask)
    if task == "denoise":
        sigma = float(sigmas[int(rng.integers(len(sigmas)))])
        return add_noise(image, sigma, rng), Corruption("denoise", sigma=sigma)
    if task == "upscale":
        usable = [f for f in factors if h % f == 0 and w % f == 0]
        if not usable:
            raise ValueError(f"a {h}×{w} image cannot be downscaled by any of {factors}")
        factor = int(usable[int(rng.integers(len(usable)))])
        return downscale(image, factor), Corruption("upscale", factor=factor)
    raise ValueError(f"unknown restoration task {task!r}")
