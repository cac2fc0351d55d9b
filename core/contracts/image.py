"""The image modality's contract (``tnode.contracts.image``): the types image plugins share.

What image datasets and models provide, what a validator keeps back (:class:`ImageTruth`) and what
it parses a miner's answer into (:class:`ImageAnswer`). The image modality, image scorers and any
filter that inspects image answers import these from here, never from each other.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

TASKS = ("inpaint", "denoise", "upscale", "generate")
"""Every image task name a validator may send."""
RESTORATION_TASKS = ("inpaint", "denoise", "upscale")
"""The tasks with a hidden original to score against (``generate`` has none)."""
CHANNELS = (1, 3)
"""Channel counts an image may have: grey or RGB."""


@dataclass(frozen=True)
class Corruption:
    """How one task damaged (or, for ``generate``, asks for) an image.

    ``mask`` is True where inpainting must fill in; ``sigma`` is the noise level on the 0–255 scale;
    ``factor`` the upscale factor; ``label``/``height``/``width``/``channels``/``seed`` describe a
    generate request.
    """

    task: str
    mask: np.ndarray | None = None
    sigma: float = 0.0
    factor: int = 1
    label: int = 0
    height: int = 0
    width: int = 0
    channels: int = 3
    seed: int = 0


@dataclass(frozen=True)
class ImageTruth:
    """What a validator keeps back: the original, the input it sent, and how it was made.

    ``references`` holds the held-out images of the asked class for ``generate`` (the answer is
    compared with the nearest of them).
    """

    original: np.ndarray  # uint8 (H, W, C)
    corrupted: np.ndarray | None  # uint8, what the miner received (None for generate)
    corruption: Corruption
    references: np.ndarray | None = None  # uint8 (K, H, W, C)


@dataclass(frozen=True)
class ImageAnswer:
    """A parsed, validated miner answer: one uint8 (H, W, C) image."""

    image: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict)


class ImageDataset(Protocol):
    """Labelled uint8 images with disjoint train / held-out splits, deterministic for a seed."""

    name: str
    height: int
    width: int
    channels: int
    num_classes: int

    def sample(self, split: str, count: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """``count`` images of ``split`` ("train" or "heldout"): uint8 (N, H, W, C) and int64 labels (N,)."""
        ...


class ImageModel(Protocol):
    """A model that answers image tasks."""

    name: str

    def restore(self, image: np.ndarray, corruption: Corruption) -> np.ndarray:
        """Restore ``image`` (uint8 (h, w, C), the damaged input) → uint8 (H, W, C)."""
        ...

    def generate(self, corruption: Corruption) -> np.ndarray:
        """A uint8 (height, width, channels) image of class ``corruption.label``."""
        ...
