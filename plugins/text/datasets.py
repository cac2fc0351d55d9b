"""Token datasets with disjoint train / held-out splits (split by document, deterministic)."""

from __future__ import annotations

import ast
import hashlib
import sysconfig
from pathlib import Path
from typing import Any

import anyio
import numpy as np
from tnode.errors import ConfigError

from .config import PythonDocsConfig, TextFilesConfig
from .tokenizer import VOCAB_SIZE


def _heldout(name: str, seed: int, fraction: float) -> bool:
    digest = hashlib.blake2b(f"{seed}:{name}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64 < fraction


def stdlib_documents(max_bytes: int) -> list[tuple[str, str]]:
    """(module path, its docstrings) for the stdlib's modules, in sorted path order."""
    root = Path(sysconfig.get_paths()["stdlib"])
    docs: list[tuple[str, str]] = []
    total = 0
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root).as_posix()
        if "site-packages" in rel or "/test" in f"/{rel}" or "idle_test" in rel:
            continue
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError, ValueError, OSError):
            continue
        parts = []
        for node in [tree, *ast.walk(tree)]:
            if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
                doc = ast.get_docstring(node, clean=True)
                if doc and (node is tree or not isinstance(node, ast.Module)):
                    parts.append(doc)
        text = "\n\n".join(dict.fromkeys(parts))  # drop repeats, keep order
        if len(text) < 200:
            continue
        docs.append((rel, text + "\n\n"))
        total += len(text)
        if total >= max_bytes:
            break
    return docs


class TokenDataset:
    """Implements :class:`tnode.interfaces.Dataset` over byte tokens."""

    vocab_size = VOCAB_SIZE

    def __init__(self, node: Any, name: str, config: PythonDocsConfig | TextFilesConfig) -> None:
        self.node = node
        self.name = name
        self.config = config
        self._splits: dict[str, np.ndarray] = {}

    def _documents(self) -> list[tuple[str, str]]:
        cfg = self.config
        if isinstance(cfg, PythonDocsConfig):
            return stdlib_documents(cfg.max_bytes)
        base = Path(self.node.config.base_dir) if self.node is not None else Path.cwd()
        path = Path(cfg.path).expanduser()
        path = path if path.is_absolute() else base / path
        if path.is_file():
            files = [path]
        elif path.is_dir():
            files = sorted(p for p in path.glob(cfg.glob) if p.is_file())
        else:
            raise ConfigError(f"no such file or directory: {path}", key_path=f"datasets.{self.name}.path")
        if not files:
            raise ConfigError(f"no files match {cfg.glob!r} under {path}", key_path=f"datasets.{self.name}.glob")
        return [(p.name if path.is_file() else p.relative_to(path).as_posix(), p.read_text(errors="replace"))
                for p in files]

    def build(self) -> None:
        """Read the documents and split them (by document) into train and held-out token arrays."""
        cfg = self.config
        docs = self._documents()
        train, held = [], []
        for name, text in docs:
            (held if _heldout(name, cfg.seed, cfg.heldout_fraction) else train).append(text)
        if isinstance(cfg, TextFilesConfig) and len(docs) == 1:
            # One file: split its text at a fixed point instead of by document.
            data = docs[0][1]
            cut = int(len(data) * (1 - cfg.heldout_fraction))
            train, held = [data[:cut]], [data[cut:]]
        if not held and len(train) > 1:
            held.append(train.pop())
        if not train or not held:
            raise ConfigError("dataset is too small to split into train and held-out parts",
                              key_path=f"datasets.{self.name}")
        self._splits = {
            "train": np.frombuffer("".join(train).encode(), dtype=np.uint8).copy(),
            "heldout": np.frombuffer("".join(held).encode(), dtype=np.uint8).copy(),
        }

    def tokens(self, split: str) -> np.ndarray:
        if not self._splits:
            self.build()
        try:
            return self._splits[split]
        except KeyError:
            raise ValueError(f"unknown split {split!r} (train or heldout)") from None

    def sample_windows(self, split: str, count: int, length: int, rng: np.random.Generator) -> np.ndarray:
        data = self.tokens(split)
        if len(data) <= length:
            raise ValueError(f"split {split!r} has {len(data)} tokens, fewer than a window of {length}")
        starts = rng.integers(0, len(data) - length, size=count)
        return np.stack([data[s : s + length] for s in starts]).astype(np.int64)

    async def run(self, *, task_status: Any = anyio.TASK_STATUS_IGNORED) -> None:
        await anyio.to_thread.run_sync(self.build)
        self.node.log.info("dataset ready", dataset=self.name, train_tokens=len(self._splits["train"]),
                           heldout_tokens=len(self._splits["heldout"]))
        task_status.started()
        await anyio.sleep_forever()
