"""PNG in and out (Pillow), and the labelled grid the devnet report writes.

A grid has one row per task: the original, the damaged input and each miner's answer, each
scaled up to the same cell size with nearest-neighbour (so pixels stay visible) and captioned.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

CAPTION = 12  # pixels of caption band above each cell


def read_png(path: Path) -> np.ndarray:
    """An image file as uint8 (H, W, C) with C = 1 (grey) or 3 (RGB)."""
    with Image.open(path) as opened:
        img = opened.convert("L" if opened.mode in ("L", "LA", "I", "I;16", "1") else "RGB")
        arr = np.asarray(img, dtype=np.uint8)
    return arr[..., None] if arr.ndim == 2 else arr


def write_png(path: Path, image: np.ndarray) -> None:
    """Write uint8 (H, W, C) as PNG."""
    arr = image[..., 0] if image.ndim == 3 and image.shape[-1] == 1 else image
    Image.fromarray(np.ascontiguousarray(arr, dtype=np.uint8)).save(path, format="PNG")


def _cell(image: np.ndarray | None, side: int) -> Image.Image:
    if image is None:
        return Image.new("RGB", (side, side), (40, 40, 40))
    arr = np.repeat(image, 3, axis=-1) if image.shape[-1] == 1 else image
    return Image.fromarray(np.ascontiguousarray(arr, dtype=np.uint8)).resize((side, side), Image.Resampling.NEAREST)


def write_grid(path: Path, rows: Sequence[tuple[str, Sequence[tuple[str, np.ndarray | None]]]], *,
               cell: int = 96) -> Path:
    """Write a grid PNG: ``rows`` of ``(row label, [(caption, image or None), ...])``."""
    columns = max((len(cells) for _, cells in rows), default=1)
    label_w = 80
    width, height = label_w + columns * (cell + 4), len(rows) * (cell + CAPTION + 6) + 4
    canvas = Image.new("RGB", (width, max(height, 1)), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    for r, (label, cells) in enumerate(rows):
        y = 4 + r * (cell + CAPTION + 6)
        draw.text((4, y + CAPTION + cell // 2 - 6), label[:12], fill=(0, 0, 0))
        for c, (caption, image) in enumerate(cells):
            x = label_w + c * (cell + 4)
            draw.text((x, y), caption[:16], fill=(0, 0, 0))
            canvas.paste(_cell(image, cell), (x, y + CAPTION))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(path, format="PNG")
    return path
