"""Image models: the U-Net wrapper and baselines of known, ordered quality (classical, blur, garbage).

Expected order on restoration tasks, best first: ``unet`` > ``classical`` (biharmonic inpainting,
median denoising, bicubic upscaling) > ``blur`` (mean-colour fill, box blur, blurred nearest
neighbour) > ``garbage`` (noise or a constant grey).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import numpy as np
from tnode.contracts.image import Corruption
from tnode.errors import ConfigError, TaskError
from tnode.workers import model_stats

from .config import BlurConfig, ClassicalConfig, ImageGarbageConfig, UNetConfig
from .workers import model_pool, serve_in_workers

BUILTIN_CHECKPOINT = Path(__file__).with_name("checkpoints") / "unet.pt"
"""The U-Net shipped with tnode (``checkpoint = "builtin"``), trained by ``tnode image train`` on shapes."""


def _blur(image: np.ndarray, size: int) -> np.ndarray:
    from scipy.ndimage import uniform_filter

    out = uniform_filter(image.astype(np.float64), size=(size, size, 1), mode="reflect")
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


class _Base:
    """Lifecycle, the optional dataset behind ``generate``, and worker processes (``workers = N``:
    ``pool`` serves the model; nothing of it loads in the node's process)."""

    dataset_name = ""
    pool: Any = None

    def __init__(self, node: Any, name: str) -> None:
        self.node = node
        self.name = name
        self.dataset: Any = None
        self._means: dict[tuple[int, int, int], np.ndarray] = {}

    def stats(self) -> dict[str, Any]:
        """Workers (pid, state, RSS) or the node's RSS when it runs in process."""
        return model_stats(self.pool)

    def attach_dataset(self, dataset: Any) -> None:
        self.dataset = dataset

    def _need_dataset(self) -> Any:
        if self.dataset is None:
            raise TaskError("unsupported", f"model {self.name!r} has no dataset to generate from")
        return self.dataset

    def class_mean(self, c: Corruption) -> np.ndarray:
        """Mean of 64 train images of class ``c.label`` (any class when none matches)."""
        key = (c.label, c.height, c.width)
        if key not in self._means:
            images, labels = self._need_dataset().sample("train", 256, np.random.default_rng(c.label))
            chosen = images[labels == c.label][:64]
            chosen = chosen if len(chosen) else images[:64]
            self._means[key] = np.rint(chosen.astype(np.float64).mean(axis=0)).astype(np.uint8)
        return self._means[key]

    def _fit(self, image: np.ndarray, c: Corruption) -> np.ndarray:
        """``image`` resized to the asked size and channel count."""
        from .unet import bicubic

        if image.shape[:2] != (c.height, c.width):
            image = bicubic(image, c.height, c.width)
        if image.shape[-1] != c.channels:
            image = (np.repeat(image, c.channels, axis=-1) if image.shape[-1] == 1
                     else np.rint(image.mean(axis=-1, keepdims=True)).astype(np.uint8))
        return image

    def load(self) -> None:
        pass

    async def run(self, *, task_status: Any = anyio.TASK_STATUS_IGNORED) -> None:
        if self.dataset_name and self.node is not None:
            self.dataset = self.node.require("dataset", self.dataset_name, key_path=f"models.{self.name}.dataset")
        if self.pool is not None:
            await serve_in_workers(self, task_status)
        await anyio.to_thread.run_sync(self.load)
        task_status.started()
        await anyio.sleep_forever()


class UNetModel(_Base):
    """Component ``[models.NAME] type = "unet"``: see :class:`UNetConfig`."""

    def __init__(self, node: Any, name: str, config: UNetConfig) -> None:
        super().__init__(node, name)
        self.config = config
        self.dataset_name = config.dataset
        self.model: Any = None
        if config.workers:
            path = self.checkpoint_path()
            if not path.is_file():  # checked here: the node itself never loads it
                raise ConfigError(f"no U-Net checkpoint at {path}", key_path=f"models.{name}.checkpoint",
                                  hint="train one with `tnode image train`, or use checkpoint = \"builtin\"")
        self.pool = model_pool(node, name, "unet", config, checkpoint=str(self.checkpoint_path()))

    def checkpoint_path(self) -> Path:
        if self.config.checkpoint == "builtin":
            return BUILTIN_CHECKPOINT
        path = Path(self.config.checkpoint).expanduser()
        if not path.is_absolute() and self.node is not None:
            path = Path(self.node.config.base_dir) / path
        return path

    def load(self) -> None:
        import torch

        from .unet import load_checkpoint

        torch.set_num_threads(self.config.threads)
        path = self.checkpoint_path()
        if not path.is_file():
            raise ConfigError(f"no U-Net checkpoint at {path}", key_path=f"models.{self.name}.checkpoint",
                              hint="train one with `tnode image train`, or use checkpoint = \"builtin\"")
        try:
            self.model, _ = load_checkpoint(path)
        except (ValueError, RuntimeError, KeyError, OSError) as exc:
            raise ConfigError(f"cannot load {path}: {exc}", key_path=f"models.{self.name}.checkpoint") from None

    def restore_batch(self, batch: list[tuple[np.ndarray, Corruption]]) -> list[np.ndarray]:
        from .unet import run_unet

        if self.model is None:
            self.load()
        return run_unet(self.model, batch)

    def restore(self, image: np.ndarray, corruption: Corruption) -> np.ndarray:
        return self.restore_batch([(image, corruption)])[0]

    def generate(self, c: Corruption) -> np.ndarray:
        """The class mean plus noise of σ = 50, denoised: a sample near the class's typical image."""
        from .corrupt import add_noise

        noisy = add_noise(self._fit(self.class_mean(c), c), 50.0, np.random.default_rng(c.seed))
        return self.restore(noisy, Corruption("denoise", sigma=50.0))


class ClassicalModel(_Base):
    """Component ``[models.NAME] type = "classical"``: see :class:`ClassicalConfig`."""

    def __init__(self, node: Any, name: str, config: ClassicalConfig) -> None:
        super().__init__(node, name)
        self.config = config
        self.dataset_name = config.dataset
        self.pool = model_pool(node, name, "classical", config)

    def restore(self, image: np.ndarray, c: Corruption) -> np.ndarray:
        if c.task == "inpaint":
            from skimage.restoration import inpaint_biharmonic

            assert c.mask is not None
            out = inpaint_biharmonic(image.astype(np.float64) / 255.0, c.mask, channel_axis=-1)
            return np.clip(np.rint(out * 255.0), 0, 255).astype(np.uint8)
        if c.task == "denoise":
            from scipy.ndimage import median_filter

            size = self.config.median_size | 1
            return median_filter(image, size=(size, size, 1), mode="reflect")
        from .unet import bicubic

        return bicubic(image, image.shape[0] * c.factor, image.shape[1] * c.factor)

    def generate(self, c: Corruption) -> np.ndarray:
        """A random train image of the class (the nearest thing to a sample a classical method has)."""
        images, labels = self._need_dataset().sample("train", 256, np.random.default_rng(c.seed))
        chosen = images[labels == c.label]
        return self._fit(chosen[0] if len(chosen) else images[0], c)


class BlurModel(_Base):
    """Component ``[models.NAME] type = "blur"``: see :class:`BlurConfig`."""

    def __init__(self, node: Any, name: str, config: BlurConfig) -> None:
        super().__init__(node, name)
        self.config = config
        self.dataset_name = config.dataset
        self.pool = model_pool(node, name, "blur", config)

    def restore(self, image: np.ndarray, c: Corruption) -> np.ndarray:
        size = self.config.size | 1
        if c.task == "inpaint":
            assert c.mask is not None
            known = ~c.mask
            out = image.copy()
            out[c.mask] = np.rint(image[known].mean(axis=0)).astype(np.uint8) if known.any() else 128
            return out
        if c.task == "denoise":
            return _blur(image, size)
        up = np.repeat(np.repeat(image, c.factor, axis=0), c.factor, axis=1)
        return _blur(up, c.factor + 1)

    def generate(self, c: Corruption) -> np.ndarray:
        return self._fit(self.class_mean(c), c)


class ImageGarbageModel(_Base):
    """Component ``[models.NAME] type = "image_garbage"``: see :class:`ImageGarbageConfig`."""

    def __init__(self, node: Any, name: str, config: ImageGarbageConfig) -> None:
        super().__init__(node, name)
        self.config = config
        self.rng = np.random.default_rng(config.seed)
        self.pool = model_pool(node, name, "image_garbage", config)

    def _image(self, h: int, w: int, ch: int) -> np.ndarray:
        if self.config.mode == "constant":
            return np.full((h, w, ch), 128, dtype=np.uint8)
        return self.rng.integers(0, 256, size=(h, w, ch), dtype=np.uint8)

    def restore(self, image: np.ndarray, c: Corruption) -> np.ndarray:
        f = c.factor if c.task == "upscale" else 1
        return self._image(image.shape[0] * f, image.shape[1] * f, image.shape[2])

    def generate(self, c: Corruption) -> np.ndarray:
        return self._image(c.height, c.width, c.channels)
