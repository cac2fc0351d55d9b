"""Procedural scenes: a gradient background and a few overlapping coloured shapes, drawn from a seed.

The label of a scene is the kind of its front-most (last drawn) shape: 0 circle, 1 rectangle,
2 triangle. Every pixel depends only on the seed and the size, so a scene is reproducible anywhere.
"""

from __future__ import annotations

import numpy as np

SHAPE_CLASSES = ("circle", "rectangle", "triangle")


def _colour(rng: np.random.Generator) -> np.ndarray:
    return rng.uniform(0, 255, 3)


def _triangle(yy: np.ndarray, xx: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """Pixels inside the triangle ``pts`` (3 × (y, x)), by the signs of three edge functions."""
    def edge(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return (xx - a[1]) * (b[0] - a[0]) - (yy - a[0]) * (b[1] - a[1])

    e = [edge(pts[0], pts[1]), edge(pts[1], pts[2]), edge(pts[2], pts[0])]
    return ((e[0] >= 0) & (e[1] >= 0) & (e[2] >= 0)) | ((e[0] <= 0) & (e[1] <= 0) & (e[2] <= 0))


def render_scene(seed: int, height: int = 32, width: int = 32, channels: int = 3) -> tuple[np.ndarray, int]:
    """The scene of ``seed`` as uint8 (height, width, channels) and its label."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    yy, xx = (yy + 0.5) / height, (xx + 0.5) / width
    angle = rng.uniform(0, 2 * np.pi)
    t = (np.cos(angle) * xx + np.sin(angle) * yy)
    t = (t - t.min()) / max(float(np.ptp(t)), 1e-9)
    a, b = _colour(rng), _colour(rng)
    img = a[None, None, :] * (1 - t[..., None]) + b[None, None, :] * t[..., None]
    label = 0
    for _ in range(int(rng.integers(2, 5))):
        kind = int(rng.integers(0, 3))
        colour = _colour(rng)
        cy, cx = rng.uniform(0.15, 0.85, 2)
        size = rng.uniform(0.12, 0.3)
        if kind == 0:
            inside = (yy - cy) ** 2 + (xx - cx) ** 2 <= size**2
        elif kind == 1:
            h, w = size * rng.uniform(0.6, 1.4), size * rng.uniform(0.6, 1.4)
            inside = (np.abs(yy - cy) <= h) & (np.abs(xx - cx) <= w)
        else:
            angles = rng.uniform(0, 2 * np.pi) + np.array([0, 2.1, 4.2]) + rng.uniform(-0.3, 0.3, 3)
            pts = np.stack([cy + size * 1.3 * np.sin(angles), cx + size * 1.3 * np.cos(angles)], axis=1)
            inside = _triangle(yy, xx, pts)
        img[inside] = colour
        if inside.any():
            label = kind
    if channels == 1:
        img = img.mean(axis=-1, keepdims=True)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8), label
