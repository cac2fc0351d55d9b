"""Image datasets with disjoint train / held-out splits: procedural scenes, scikit-learn's digits, a folder.

Every dataset returns uint8 (N, H, W, C) images with int64 labels from :meth:`sample`. Splits are
deterministic for a seed: shapes by the parity of the scene seed, digits and files by a keyed hash
of the item's index or path, so a held-out item never trains a model.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import anyio
import numpy as np
from PIL import Image, UnidentifiedImageError
from tnode.errors import ConfigError

from .config import DigitsConfig, ImageFilesConfig, ShapesConfig
from .scenes import SHAPE_CLASSES, render_scene

SPLITS = ("train", "heldout")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


def in_heldout(key: str, seed: int, fraction: float) -> bool:
    """Whether item ``key`` belongs to the held-out split."""
    digest = hashlib.blake2b(key.encode(), key=str(seed).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64 < fraction


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r} (expected 'train' or 'heldout')")


class _Running:
    """The component lifecycle shared by the datasets: build in a thread, then idle."""

    name: str
    node: Any

    def build(self) -> None: ...

    def describe(self) -> dict[str, Any]:
        return {}

    async def run(self, *, task_status: Any = anyio.TASK_STATUS_IGNORED) -> None:
        await anyio.to_thread.run_sync(self.build)
        if self.node is not None:
            self.node.log.info("dataset ready", dataset=self.name, **self.describe())
        task_status.started()
        await anyio.sleep_forever()


class ShapesDataset(_Running):
    """Component ``[datasets.NAME] type = "shapes"``: see :class:`ShapesConfig`."""

    num_classes = len(SHAPE_CLASSES)

    def __init__(self, node: Any, name: str, config: ShapesConfig) -> None:
        self.node, self.name, self.config = node, name, config
        self.height = self.width = config.size
        self.channels = config.channels

    def scene_seed(self, split: str, index: int) -> int:
        """The render seed of scene ``index`` of ``split``: even for train, odd for held-out."""
        _check_split(split)
        mixed = int.from_bytes(hashlib.blake2b(f"{self.config.seed}:{index}".encode(), digest_size=7).digest(), "big")
        return 2 * mixed + (split == "heldout")

    def sample(self, split: str, count: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """``count`` scenes of ``split`` at indices drawn from ``rng`` (a space of 2^62 per split)."""
        indices = rng.integers(0, 2**62, size=count)
        return self.scenes(split, [int(i) for i in indices])

    def scenes(self, split: str, indices: list[int]) -> tuple[np.ndarray, np.ndarray]:
        """The scenes at ``indices`` of ``split``."""
        pairs = [render_scene(self.scene_seed(split, i), self.height, self.width, self.channels) for i in indices]
        images = np.stack([p[0] for p in pairs]) if pairs else np.zeros((0, self.height, self.width, self.channels),
                                                                        np.uint8)
        return images, np.asarray([p[1] for p in pairs], dtype=np.int64)

    def build(self) -> None:
        pass  # scenes are drawn on demand

    def describe(self) -> dict[str, Any]:
        return {"type": "shapes", "size": self.height, "channels": self.channels}


class _ArrayDataset(_Running):
    """A dataset held in memory as two arrays per split."""

    height: int
    width: int
    channels: int

    def __init__(self) -> None:
        self._images: dict[str, np.ndarray] = {}
        self._labels: dict[str, np.ndarray] = {}
        self.num_classes = 1

    def arrays(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        """All images and labels of ``split``."""
        _check_split(split)
        if not self._images:
            self.build()
        return self._images[split], self._labels[split]

    def sample(self, split: str, count: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        images, labels = self.arrays(split)
        idx = rng.integers(0, len(images), size=count)
        return images[idx], labels[idx]

    def _store(self, keys: list[str], images: np.ndarray, labels: np.ndarray, seed: int, fraction: float) -> None:
        held = np.array([in_heldout(k, seed, fraction) for k in keys], dtype=bool)
        if held.all() or not held.any():  # tiny sets: keep both splits non-empty
            held[:] = False
            held[-1] = True
        for split, sel in (("train", ~held), ("heldout", held)):
            self._images[split] = images[sel]
            self._labels[split] = labels[sel].astype(np.int64)
        self.keys = {"train": [k for k, h in zip(keys, held, strict=True) if not h],
                     "heldout": [k for k, h in zip(keys, held, strict=True) if h]}

    def describe(self) -> dict[str, Any]:
        return {"train": len(self._images["train"]), "heldout": len(self._images["heldout"]),
                "size": self.height, "channels": self.channels}


def _resize(image: Image.Image, size: int, channels: int) -> np.ndarray:
    img = image.convert("L" if channels == 1 else "RGB")
    w, h = img.size
    side = min(w, h)
    img = img.crop(((w - side) // 2, (h - side) // 2, (w - side) // 2 + side, (h - side) // 2 + side))
    arr = np.asarray(img.resize((size, size), Image.Resampling.BICUBIC), dtype=np.uint8)
    return arr[..., None] if arr.ndim == 2 else arr


class DigitsDataset(_ArrayDataset):
    """Component ``[datasets.NAME] type = "digits"``: see :class:`DigitsConfig`."""

    def __init__(self, node: Any, name: str, config: DigitsConfig) -> None:
        super().__init__()
        self.node, self.name, self.config = node, name, config
        self.height = self.width = config.size
        self.channels = config.channels
        self.num_classes = 10

    def build(self) -> None:
        from sklearn.datasets import load_digits  # bundled with scikit-learn: no download

        digits = load_digits()
        small = np.clip(np.rint(digits.images * (255.0 / 16.0)), 0, 255).astype(np.uint8)
        images = np.stack([_resize(Image.fromarray(d), self.height, self.channels) for d in small])
        self._store([f"digit-{i}" for i in range(len(images))], images, np.asarray(digits.target),
                    self.config.seed, self.config.heldout_fraction)


class ImageFilesDataset(_ArrayDataset):
    """Component ``[datasets.NAME] type = "image_files"``: see :class:`ImageFilesConfig`."""

    def __init__(self, node: Any, name: str, config: ImageFilesConfig) -> None:
        super().__init__()
        self.node, self.name, self.config = node, name, config
        self.height = self.width = config.size
        self.channels = config.channels

    def build(self) -> None:
        cfg, key = self.config, f"datasets.{self.name}"
        base = Path(self.node.config.base_dir) if self.node is not None else Path.cwd()
        root = Path(cfg.path).expanduser()
        root = root if root.is_absolute() else base / root
        if not root.is_dir():
            raise ConfigError(f"no such directory: {root}", key_path=f"{key}.path")
        files = sorted((p for p in root.glob(cfg.glob) if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES),
                       key=lambda p: p.relative_to(root).as_posix())[: cfg.max_files]
        if len(files) < 2:
            raise ConfigError(f"{len(files)} PNG/JPEG file(s) match {cfg.glob!r} under {root}; need at least 2",
                              key_path=f"{key}.glob")
        rels = [p.relative_to(root).as_posix() for p in files]
        classes = sorted({r.split("/")[0] for r in rels if "/" in r})
        images = []
        for path in files:
            try:
                with Image.open(path) as img:
                    images.append(_resize(img, cfg.size, cfg.channels))
            except (UnidentifiedImageError, OSError) as exc:
                raise ConfigError(f"cannot read image {path}: {exc}", key_path=f"{key}.path") from None
        labels = np.asarray([classes.index(r.split("/")[0]) if "/" in r else 0 for r in rels], dtype=np.int64)
        self.num_classes = max(1, len(classes))
        self._store(rels, np.stack(images), labels, cfg.seed, cfg.heldout_fraction)
