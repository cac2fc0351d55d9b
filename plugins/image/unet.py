"""A small U-Net (torch) that restores images for all three restoration tasks, and its checkpoints.

Input: the damaged image prepared at output size (inpainting holes filled by biharmonic
inpainting, upscale inputs resized bicubically, noisy images as they are), scaled to [0, 1],
plus three condition planes: the inpainting mask, σ/100 and (factor − 1)/3. Output: a residual
added to that prepared image, then made consistent with what was sent: known pixels of an
inpainting input are kept as they were, and an upscaled answer is projected onto the images whose
block means are the low-resolution input (:func:`consistent`), which can only bring it closer to
the original.
Grey images go through the RGB network as three equal channels.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from tnode.contracts.image import Corruption
from torch import nn

CONDITIONS = 3  # mask, sigma, factor planes


@dataclass(frozen=True)
class UNetShape:
    """Widths of the three resolution levels."""

    base: int = 24


class _Block(nn.Sequential):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__(nn.Conv2d(cin, cout, 3, padding=1), nn.GELU(), nn.Conv2d(cout, cout, 3, padding=1), nn.GELU())


class UNet(nn.Module):
    """Three levels (full, ½, ¼ resolution), skip connections, residual output."""

    def __init__(self, shape: UNetShape = UNetShape()) -> None:
        super().__init__()
        self.shape = shape
        b = shape.base
        self.enc1 = _Block(3 + CONDITIONS, b)
        self.enc2 = _Block(b, 2 * b)
        self.mid = _Block(2 * b, 4 * b)
        self.up2 = nn.ConvTranspose2d(4 * b, 2 * b, 2, stride=2)
        self.dec2 = _Block(4 * b, 2 * b)
        self.up1 = nn.ConvTranspose2d(2 * b, b, 2, stride=2)
        self.dec1 = _Block(2 * b, b)
        self.out = nn.Conv2d(b, 3, 1)
        nn.init.zeros_(self.out.weight)
        assert self.out.bias is not None
        nn.init.zeros_(self.out.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x``: (B, 6, H, W) with H, W multiples of 4 → restored (B, 3, H, W) in [0, 1]."""
        e1 = self.enc1(x)
        e2 = self.enc2(nn.functional.avg_pool2d(e1, 2))
        m = self.mid(nn.functional.avg_pool2d(e2, 2))
        d2 = self.dec2(torch.cat([self.up2(m), e2], dim=1))
        d1 = self.dec1(torch.cat([self.up1(d2), e1], dim=1))
        return x[:, :3] + self.out(d1)

    def parameter_count(self) -> int:
        return sum(p.numel() for p in self.parameters())


def bicubic(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bicubic resize of uint8 (h, w, C) with Pillow, per channel."""
    planes = [np.asarray(Image.fromarray(image[..., c]).resize((width, height), Image.Resampling.BICUBIC))
              for c in range(image.shape[-1])]
    return np.stack(planes, axis=-1)


def prepare(image: np.ndarray, corruption: Corruption) -> tuple[np.ndarray, np.ndarray]:
    """The network input for one damaged image: float32 (6, H, W) and the known-pixel mask (H, W)."""
    img = image.astype(np.float32) / 255.0
    if img.shape[-1] == 1:
        img = np.repeat(img, 3, axis=-1)
    h, w = img.shape[:2]
    hole = np.zeros((h, w), dtype=np.float32)
    if corruption.task == "inpaint" and corruption.mask is not None:
        hole = corruption.mask.astype(np.float32)
        if not (hole > 0).all():
            from skimage.restoration import inpaint_biharmonic

            # The network refines a biharmonic fill (smooth, ~2 ms at 32×32) rather than inventing the hole.
            img = inpaint_biharmonic(img, hole > 0, channel_axis=-1).astype(np.float32)
    elif corruption.task == "upscale":
        f = corruption.factor
        up = bicubic(np.clip(np.rint(img * 255), 0, 255).astype(np.uint8), h * f, w * f)
        img, (h, w) = up.astype(np.float32) / 255.0, (h * f, w * f)
        hole = np.zeros((h, w), dtype=np.float32)
    sigma = np.full((h, w), corruption.sigma / 100.0, dtype=np.float32)
    factor = np.full((h, w), (max(corruption.factor, 1) - 1) / 3.0, dtype=np.float32)
    x = np.concatenate([img.transpose(2, 0, 1), hole[None], sigma[None], factor[None]], axis=0)
    return x.astype(np.float32), hole == 0


def low_planes(image: np.ndarray) -> torch.Tensor:
    """A low-resolution input as float (3, h, w) in [0, 1] (grey repeated), for :func:`consistent`."""
    img = image.astype(np.float32) / 255.0
    if img.shape[-1] == 1:
        img = np.repeat(img, 3, axis=-1)
    return torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1)))


def consistent(y: torch.Tensor, upscales: list[tuple[int, int, torch.Tensor]]) -> torch.Tensor:
    """``y`` (B, 3, H, W) with each upscale answer ``(index, factor, low (3, h, w))`` projected onto the
    images whose ``factor``×``factor`` block means equal ``low``: y + nearest(low − blockmean(y)).

    Validators make upscale inputs by block means, so the original lies in that set; the orthogonal
    projection onto a set holding the original never moves an answer away from it. Differentiable,
    so training sees the same answers as serving."""
    if not upscales:
        return y
    rows = list(y.unbind(0))
    for i, f, low in upscales:
        yi = rows[i][None]
        gap = low[None] - nn.functional.avg_pool2d(yi, f)
        rows[i] = (yi + gap.repeat_interleave(f, dim=2).repeat_interleave(f, dim=3))[0]
    return torch.stack(rows)


def run_unet(model: UNet, batch: list[tuple[np.ndarray, Corruption]]) -> list[np.ndarray]:
    """Restore several damaged images of the same output size in one forward pass."""
    prepared = [prepare(img, c) for img, c in batch]
    x = torch.from_numpy(np.stack([p[0] for p in prepared]))
    _, _, h, w = x.shape
    ph, pw = (-h) % 4, (-w) % 4  # the two poolings need multiples of 4
    if ph or pw:
        x = nn.functional.pad(x, (0, pw, 0, ph), mode="replicate")
    upscales = [(i, c.factor, low_planes(img)) for i, (img, c) in enumerate(batch) if c.task == "upscale"]
    with torch.inference_mode():
        y = consistent(model(x)[:, :, :h, :w], upscales).clamp(0, 1).numpy()
    out = []
    for (img, c), (xin, known), yi in zip(batch, prepared, y, strict=True):
        res = yi.transpose(1, 2, 0)
        if c.task == "inpaint":
            res = np.where(known[..., None], xin[:3].transpose(1, 2, 0), res)
        res8 = np.clip(np.rint(res * 255), 0, 255).astype(np.uint8)
        if img.shape[-1] == 1:
            res8 = np.rint(res8.astype(np.float32).mean(axis=-1, keepdims=True)).astype(np.uint8)
        out.append(res8)
    return out


def save_checkpoint(path: Path, model: UNet, *, optimizer: Any = None, step: int = 0,
                    extra: dict[str, Any] | None = None) -> None:
    """Write atomically (temp file + rename), so a crash never leaves a half-written checkpoint."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state: dict[str, Any] = {"kind": "tnode-image-unet", "shape": asdict(model.shape), "model": model.state_dict(),
                             "step": step}
    if optimizer is not None:
        state["optimizer"] = optimizer.state_dict()
    state.update(extra or {})
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    tmp.replace(path)


def load_checkpoint(path: Path) -> tuple[UNet, dict[str, Any]]:
    """The model of a checkpoint and the whole state (weights_only: no pickled code runs)."""
    state = torch.load(Path(path), map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or state.get("kind") != "tnode-image-unet":
        raise ValueError(f"{path} is not an image U-Net checkpoint")
    model = UNet(UNetShape(**state["shape"]))
    model.load_state_dict(state["model"])
    model.eval()
    return model, state
