"""A small causal byte-level transformer (torch), its checkpoints, and its component wrapper."""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import anyio
import numpy as np
import torch
import torch.nn.functional as F
from tnode.errors import ConfigError
from torch import nn

from .config import TransformerConfig
from .tokenizer import VOCAB_SIZE

CHECKPOINT_FORMAT = "tnode-byte-transformer/1"


@dataclass(frozen=True)
class Shape:
    """The architecture hyperparameters a checkpoint records."""

    d_model: int = 128
    n_layers: int = 3
    n_heads: int = 4
    context: int = 64


class Block(nn.Module):
    """Pre-norm block: causal self-attention then a 4x MLP, both residual."""

    def __init__(self, d: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.ln1 = nn.LayerNorm(d)
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)
        self.ln2 = nn.LayerNorm(d)
        self.mlp = nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = self.qkv(self.ln1(x)).view(b, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        # The fused kernel with is_causal builds no (t, t) mask and is the fastest path on CPU.
        att = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.proj(att.transpose(1, 2).reshape(b, t, d))
        return x + self.mlp(self.ln2(x))


class ByteTransformer(nn.Module):
    """Token + learned position embeddings, pre-norm blocks, output projection tied to the embedding."""

    def __init__(self, shape: Shape) -> None:
        super().__init__()
        if shape.d_model % shape.n_heads:
            raise ValueError(f"d_model {shape.d_model} is not divisible by n_heads {shape.n_heads}")
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
        """Logits (batch, seq, vocab) for int64 ids (batch, seq) with seq ≤ context."""
        return self.hidden(idx) @ self.tok.weight.T

    def hidden(self, idx: torch.Tensor) -> torch.Tensor:
        """The final normalized hidden states (batch, seq, d_model) the logits are read from."""
        t = idx.shape[1]
        if t > self.shape.context:
            raise ValueError(f"sequence of {t} tokens exceeds the context of {self.shape.context}")
        x = self.tok(idx) + self.pos(torch.arange(t, device=idx.device))
        for block in self.blocks:
            x = block(x)
        return self.ln(x)

    def parameter_count(self) -> int:
        return sum(p.numel() for p in self.parameters())


@torch.inference_mode()
def logprobs_any_length(model: ByteTransformer, idx: torch.Tensor) -> torch.Tensor:
    """Log-probabilities for sequences of any length.

    Longer than the context, windows of ``context`` tokens advance by half a context, and each
    window contributes the positions it sees with at least half a context before them: every
    position is predicted from between ``context/2`` and ``context`` tokens, at about twice the
    cost of one pass instead of one pass per position.

    The windows lie on a fixed grid (starts at multiples of the stride), so the answer for a
    position depends only on the tokens up to it, never on the sequence's length: a sequence
    right-padded into a batch gets exactly the answer it gets alone.
    """
    ctx = model.shape.context
    t = idx.shape[1]
    if t <= ctx:
        return torch.log_softmax(model(idx).float(), dim=-1)
    stride = max(1, ctx // 2)
    parts = [model(idx[:, :ctx])]
    done = ctx
    while done < t:
        start = done + stride - ctx  # the grid window whose last `stride` positions start at `done`
        end = min(start + ctx, t)  # a cut-off last window: causal, so its earlier positions are unchanged
        parts.append(model(idx[:, start:end])[:, done - start :])
        done = end
    return torch.log_softmax(torch.cat(parts, dim=1).float(), dim=-1)


# --------------------------------------------------------------------------- checkpoints
def save_checkpoint(path: Path, model: ByteTransformer, *, optimizer: Any = None, step: int = 0,
                    extra: dict[str, Any] | None = None) -> None:
    """Write atomically (temp file + rename): a crash mid-write never leaves a broken checkpoint."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    state = {"format": CHECKPOINT_FORMAT, "shape": asdict(model.shape), "model": model.state_dict(),
             "optimizer": optimizer.state_dict() if optimizer is not None else None, "step": step,
             **(extra or {})}
    torch.save(state, tmp)
    tmp.replace(path)


def load_checkpoint(path: Path) -> tuple[ByteTransformer, dict[str, Any]]:
    """Load a checkpoint written by :func:`save_checkpoint`; ``ValueError`` when it is not one."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such checkpoint")
    try:
        # weights_only: a checkpoint from the network must never run code when loaded.
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ValueError(f"{path}: not a readable checkpoint ({type(exc).__name__}: {exc})") from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path}: not a tnode byte-transformer checkpoint")
    try:
        model = ByteTransformer(Shape(**state["shape"]))
        model.load_state_dict(state["model"])
    except (TypeError, RuntimeError, KeyError) as exc:
        raise ValueError(f"{path}: checkpoint does not match the architecture ({exc})") from None
    model.eval()
    return model, state


# --------------------------------------------------------------------------- component
BUILTIN_CHECKPOINT = Path(__file__).with_name("checkpoints") / "byte-transformer.pt"
"""The model shipped with tnode (``checkpoint = "builtin"``), trained by ``tnode train`` on python_docs."""


class TransformerModel:
    """Component ``[models.NAME] type = "transformer"``: a :class:`tnode.contracts.text.LanguageModel`."""

    vocab_size = VOCAB_SIZE

    def __init__(self, node: Any, name: str, config: TransformerConfig) -> None:
        self.node = node
        self.name = name
        self.config = config
        self.model: ByteTransformer | None = None
        self._swap_lock = threading.Lock()  # a forward pass takes the reference once, under this lock
        self.swaps = 0
        path = self.checkpoint_path()
        if path is not None and not path.is_file():  # checked here so that `tnode validate` reports it
            raise ConfigError(f"checkpoint {path} does not exist", key_path=f"models.{name}.checkpoint",
                              hint="train one with `tnode train --checkpoint PATH`")
        from .models import worker_pool

        self.pool = worker_pool(node, name, "transformer", config, checkpoint=str(path) if path else "")

    @property
    def context(self) -> int:
        """Longest context the model uses; callers may drop older tokens."""
        if self.pool is not None and "context" in self.pool.info:
            return int(self.pool.info["context"])
        return self.model.shape.context if self.model is not None else self.config.context

    def stats(self) -> dict[str, Any]:
        """Workers (pid, state, RSS) or the node's RSS when it runs in process."""
        from .models import model_stats

        return model_stats(self.pool)

    def checkpoint_path(self) -> Path | None:
        if not self.config.checkpoint:
            return None
        if self.config.checkpoint == "builtin":
            return BUILTIN_CHECKPOINT
        path = Path(self.config.checkpoint).expanduser()
        if not path.is_absolute() and self.node is not None:
            path = Path(self.node.config.base_dir) / path
        return path

    def load(self) -> None:
        """Load the checkpoint (or build untrained weights when none is configured)."""
        torch.set_num_threads(self.config.threads)
        path = self.checkpoint_path()
        key = f"models.{self.name}.checkpoint"
        if path is None:
            cfg = self.config
            torch.manual_seed(0)
            self.model = ByteTransformer(Shape(cfg.d_model, cfg.n_layers, cfg.n_heads, cfg.context)).eval()
            return
        if not path.is_file():
            raise ConfigError(f"checkpoint {path} does not exist", key_path=key,
                              hint="train one with `tnode train --checkpoint PATH`")
        try:
            self.model, _ = load_checkpoint(path)
        except ValueError as exc:
            raise ConfigError(str(exc), key_path=key) from None

    def next_token_logprobs(self, tokens: np.ndarray) -> np.ndarray:
        """float32 (batch, seq, 256) log-probabilities; see :class:`tnode.contracts.text.LanguageModel`."""
        if self.model is None:
            self.load()
        with self._swap_lock:
            model = self.model
        assert model is not None
        idx = torch.as_tensor(np.asarray(tokens, dtype=np.int64))
        return logprobs_any_length(model, idx).numpy()

    def swap(self, model: ByteTransformer) -> None:
        """Serve ``model`` from the next forward pass on; a pass under way finishes on the old one.

        ``model`` must not be changed afterwards (train a copy and swap in a fresh snapshot)."""
        if self.pool is not None:
            raise RuntimeError(f"model {self.name!r} runs in worker processes: its weights cannot be swapped")
        model.eval()
        with self._swap_lock:
            self.model = model
            self.swaps += 1

    async def run(self, *, task_status: Any = anyio.TASK_STATUS_IGNORED) -> None:
        if self.pool is not None:  # the weights load in each worker, not here
            from .models import serve_in_workers

            await serve_in_workers(self.node, self.name, self.pool, task_status)
        await anyio.to_thread.run_sync(self.load)
        assert self.model is not None
        self.node.log.info("model ready", model=self.name, type="transformer",
                           parameters=self.model.parameter_count(), context=self.model.shape.context)
        task_status.started()
        await anyio.sleep_forever()
