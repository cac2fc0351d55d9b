"""PNG in and out for ``tnode query image``, and a mask image in the image modality's wire form."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import numpy as np


def read_png(path: Path) -> np.ndarray:
    """An image file as uint8 (H, W, C), C = 1 (grey) or 3 (RGB)."""
    from PIL import Image

    with Image.open(path) as opened:
        img = opened.convert("L" if opened.mode in ("L", "LA", "I", "I;16", "1") else "RGB")
        arr = np.asarray(img, dtype=np.uint8)
    return arr[..., None] if arr.ndim == 2 else arr


def write_png(path: Path, image: np.ndarray) -> None:
    """Write uint8 (H, W, C) as PNG."""
    from PIL import Image

    arr = image[..., 0] if image.ndim == 3 and image.shape[-1] == 1 else image
    Image.fromarray(np.ascontiguousarray(arr, dtype=np.uint8)).save(path, format="PNG")


def mask_body(mask: np.ndarray, shape: tuple[int, ...]) -> dict[str, Any]:
    """``{"bits": base64 packbits}`` (row-major, big bit order) of a mask image: True where non-zero."""
    m = np.asarray(mask)
    m = m.max(axis=-1) if m.ndim == 3 else m
    if m.shape != tuple(shape[:2]):
        raise ValueError(f"the mask is {m.shape[1]}×{m.shape[0]} pixels, the image {shape[1]}×{shape[0]}")
    bits = m > 0
    if not bits.any():
        raise ValueError("the mask marks no pixel to fill in")
    return {"bits": base64.b64encode(np.packbits(bits.reshape(-1)).tobytes()).decode()}
