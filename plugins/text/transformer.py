"""A small causal byte-level transformer (torch) and its component wrapper."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import anyio
import numpy as np
import torch
from tnode.errors import ConfigError
from torch import nn

from .config import TransformerConfig
from .tokenizer import VOCAB_SIZE


@dataclass(frozen=True)
class Shape:
    d_model: int = 128
    n_layers: int = 4
    n_heads: int = 4
    context: int = 128


class Block(nn.Module):
    def __init__(self, d: int, heads: int) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(d)
        self.attn = nn.MultiheadAttention(d, heads, batch_first=True)
        self.ln2 = nn.LayerNorm(d)
        self.mlp = nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d))

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        h = self.ln1(x)
        x = x + self.attn(h, h, h, attn_mask=mask, need_weights=False)[0]
        return x + self.mlp(self.ln2(x))


class ByteTransformer(nn.Module):
    """Token + learned position embeddings, pre-norm blocks, tied output projection."""

    def __init__(self, shape: Shape) -> None:
        super().__init__()
        if shape.d_model % shape.n_heads:
            raise ValueError("d_model must be divisible by n_heads")
        self.shape = shape
        self.tok = nn.Embedding(VOCAB_SIZE, shape.d_model)
        self.pos = nn.Embedding(shape.context, shape.d_model)
        self.blocks = nn.ModuleList(Block(shape.d_model, shape.n_heads) for _ in range(shape.n_layers))
        self.ln = nn.LayerNorm(shape.d_model)
        self.apply(self._init)

    @staticmethod
    def _init(m: nn.Module) -> None:
        if isinstance(m, nn.Linear | nn.Embedding):
            nn.init.normal_(m.weight, std=0.02)
            if isinstance(m, nn.Linear) and m.bias is not None:
                nn.init.zeros_(m.bias)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        t = idx.shape[1]
        if t > self.shape.context:
            raise ValueError(f"sequence of {t} exceeds the context of {self.shape.context}")
        x = self.tok(idx) + self.pos(torch.arange(t, device=idx.device))
        mask = torch.triu(torch.full((t, t), float("-inf"), device=idx.device), diagonal=1)
        for block in self.blocks:
            x = block(x, mask)
        return self.ln(x) @ self.tok.weight.T  # logits (B, T, V)


def save_checkpoint(path: Path, model: ByteTransformer, optimizer: Any = None, step: int = 0,
                    extra: dict[str, Any] | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save({"format": "tnode-byte-transformer/1", "shape": asdict(model.shape), "model": model.state_dict(),
                "optimizer": optimizer.state_dict() if optimizer is not None else None, "step": step,
                "rng": torch.get_rng_state(), **(extra or {})}, tmp)
    tmp.replace(path)


def load_checkpoint(path: Path) -> tuple[ByteTransformer, dict[str, Any]]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except FileNotFoundError:
        raise
    except Exception as exc:
        raise ValueError(f"{path}: not a readable checkpoint ({type(exc).__name__}: {exc})") from None
    if not isinstance(state, dict) or state.get("format") != "tnode-byte-transformer/1":
        raise ValueError(f"{path}: not a tnode transformer checkpoint")
    model = ByteTransformer(Shape(**state["shape"]))
    model.load_state_dict(state["model"])
    model.eval()
    return model, state


class TransformerModel:
    """Component: the transformer behind the :class:`tnode.interfaces.LanguageModel` protocol."""

    vocab_size = VOCAB_SIZE

    def __init__(self, node: Any, name: str, config: TransformerConfig) -> None:
        self.node = node
        self.name = name
        self.config = config
        self.model: ByteTransformer | None = None

    def load(self) -> None:
        torch.set_num_threads(self.config.threads)
        if self.config.checkpoint:
            path = Path(self.config.checkpoint).expanduser()
            if not path.is_absolute() and self.node is not None:
                path = Path(self.node.config.base_dir) / path
            if not path.exists():
                raise ConfigError(f"checkpoint {path} does not exist (train one with `tnode train`)",
                                  key_path=f"models.{self.name}.checkpoint")
            self.model, _ = load_checkpoint(path)
        else:
            cfg = self.config
            self.model = ByteTransformer(Shape(cfg.d_model, cfg.n_layers, cfg.n_heads, cfg.context)).eval()

    @torch.inference_mode()
    def next_token_logprobs(self, tokens: np.ndarray) -> np.ndarray:
        assert self.model is not None
        idx = torch.as_tensor(np.asarray(tokens, dtype=np.int64))
        ctx = self.model.shape.context
        if idx.shape[1] <= ctx:
            logits = self.model(idx)
        else:  # sliding window: each position sees at most `context` tokens
            parts = [self.model(idx[:, :ctx])]
            for end in range(ctx + 1, idx.shape[1] + 1):
                parts.append(self.model(idx[:, end - ctx : end])[:, -1:])
            logits = torch.cat(parts, dim=1)
        return torch.log_softmax(logits.float(), dim=-1).numpy()

    async def run(self, *, task_status: Any = anyio.TASK_STATUS_IGNORED) -> None:
        await anyio.to_thread.run_sync(self.load)
        task_status.started()
        await anyio.sleep_forever()


def cross_entropy(model: Any, tokens: np.ndarray, *, windows: int = 64, length: int = 128, seed: int = 0) -> float:
    """Mean next-token cross-entropy (nats/byte) of ``model`` on fixed random windows of ``tokens``."""
    rng = np.random.default_rng(seed)
    length = min(length, len(tokens) - 2)
    starts = rng.integers(0, len(tokens) - length - 1, size=windows)
    batch = np.stack([tokens[s : s + length + 1] for s in starts]).astype(np.int64)
    total = 0.0
    for i in range(0, windows, 16):
        chunk = batch[i : i + 16]
        lp = model.next_token_logprobs(chunk[:, :-1])
        total += -np.take_along_axis(lp, chunk[:, 1:, None], axis=-1).sum()
    return float(total / (windows * length))


def bits_per_byte(nats: float) -> float:
    return nats / math.log(2)
