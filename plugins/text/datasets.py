"""Token datasets with disjoint train / held-out splits.

Documents (a stdlib module's docstrings, a text file) go whole to one split, chosen by a keyed
hash of the document's name: the split is deterministic for a seed, independent of the order
documents are found in, and a validator's held-out windows never contain text a miner trained on.
"""

from __future__ import annotations

import ast
import hashlib
import sys
import sysconfig
from pathlib import Path
from typing import Any

import anyio
import numpy as np
import orjson
from tnode.errors import ConfigError

from .config import PythonDocsConfig, TextFilesConfig
from .tokenizer import VOCAB_SIZE

SPLITS = ("train", "heldout")
_EXTRACTOR_VERSION = 1  # bump when stdlib_documents changes what it extracts (invalidates caches)
_DOC_NODES = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)


def in_heldout(name: str, seed: int, fraction: float) -> bool:
    """Whether document ``name`` belongs to the held-out split."""
    digest = hashlib.blake2b(name.encode(), key=str(seed).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64 < fraction


def _skip(rel: str) -> bool:
    parts = rel.split("/")
    return ("site-packages" in parts or "idlelib" in parts
            or any(p in ("test", "tests", "idle_test") or p.startswith("test_") for p in parts))


def stdlib_documents(max_bytes: int, root: Path | None = None) -> list[tuple[str, str]]:
    """``(module path, its docstrings)`` for the standard library's modules, in sorted path order.

    A docstring already taken by an earlier module is dropped, so no text is in two documents
    (and so never in both splits).
    """
    root = root or Path(sysconfig.get_paths()["stdlib"])
    seen: set[str] = set()
    docs: list[tuple[str, str]] = []
    total = 0
    for path in sorted(root.rglob("*.py"), key=lambda p: p.relative_to(root).as_posix()):
        rel = path.relative_to(root).as_posix()
        if _skip(rel):
            continue
        try:
            tree = ast.parse(path.read_bytes())
        except (SyntaxError, ValueError, OSError):
            continue
        parts = []
        for node in ast.walk(tree):
            if isinstance(node, _DOC_NODES):
                doc = ast.get_docstring(node, clean=True)
                if doc and doc not in seen:
                    seen.add(doc)
                    parts.append(doc)
        text = "\n\n".join(parts)
        if len(text) < 200:
            continue
        docs.append((rel, text + "\n\n"))
        total += len(text)
        if total >= max_bytes:
            break
    return docs


class TokenDataset:
    """Components ``[datasets.NAME] type = "python_docs" | "text_files"``: a
    :class:`tnode.contracts.text.TokenDataset` of byte tokens."""

    vocab_size = VOCAB_SIZE

    def __init__(self, node: Any, name: str, config: PythonDocsConfig | TextFilesConfig,
                 *, cache_dir: Path | None = None) -> None:
        self.node = node
        self.name = name
        self.config = config
        self.cache_dir = cache_dir or (Path(node.data_dir) / "datasets" if node is not None else None)
        self.documents: dict[str, list[str]] = {}
        self._splits: dict[str, np.ndarray] = {}
        if isinstance(config, TextFilesConfig):
            self._text_paths(config)  # a wrong path fails `tnode validate`, not only the start


    # ------------------------------------------------------------------ building
    def _python_docs(self, cfg: PythonDocsConfig) -> list[tuple[str, str]]:
        stdlib = sysconfig.get_paths()["stdlib"]
        key = hashlib.blake2b(f"{_EXTRACTOR_VERSION}:{stdlib}:{sys.version}:{cfg.max_bytes}".encode(),
                              digest_size=8).hexdigest()
        cache = self.cache_dir / f"python_docs-{key}.json" if (self.cache_dir and cfg.cache) else None
        if cache is not None and cache.is_file():
            try:
                return [(str(n), str(t)) for n, t in orjson.loads(cache.read_bytes())]
            except (orjson.JSONDecodeError, ValueError, TypeError):
                pass  # a damaged cache is rebuilt below
        docs = stdlib_documents(cfg.max_bytes)
        if cache is not None:
            cache.parent.mkdir(parents=True, exist_ok=True)
            tmp = cache.with_name(cache.name + ".tmp")
            tmp.write_bytes(orjson.dumps(docs))
            tmp.replace(cache)
        return docs

    def _text_paths(self, cfg: TextFilesConfig) -> tuple[Path, list[Path]]:
        """The configured path and the files it names (reads directories, not files)."""
        base = Path(self.node.config.base_dir) if self.node is not None else Path.cwd()
        path = Path(cfg.path).expanduser()
        path = path if path.is_absolute() else base / path
        key = f"datasets.{self.name}"
        if path.is_file():
            return path, [path]
        if not path.is_dir():
            raise ConfigError(f"no such file or directory: {path}", key_path=f"{key}.path")
        files = sorted((p for p in path.glob(cfg.glob) if p.is_file()), key=lambda p: p.relative_to(path).as_posix())
        if not files:
            raise ConfigError(f"no files match {cfg.glob!r} under {path}", key_path=f"{key}.glob")
        return path, files

    def _text_files(self, cfg: TextFilesConfig) -> list[tuple[str, str]]:
        path, files = self._text_paths(cfg)
        if files == [path]:
            return [(path.name, path.read_text(encoding="utf-8", errors="replace"))]
        return [(p.relative_to(path).as_posix(), p.read_text(encoding="utf-8", errors="replace")) for p in files]

    def build(self) -> None:
        """Read the documents and split them into train and held-out token arrays (blocking I/O)."""
        cfg = self.config
        docs = self._python_docs(cfg) if isinstance(cfg, PythonDocsConfig) else self._text_files(cfg)
        split: dict[str, list[str]] = {"train": [], "heldout": []}
        texts: dict[str, list[str]] = {"train": [], "heldout": []}
        if len(docs) == 1:
            # One document cannot be split by document: its tail is held out.
            name, text = docs[0]
            cut = int(len(text) * (1 - cfg.heldout_fraction))
            split = {"train": [f"{name}[:{cut}]"], "heldout": [f"{name}[{cut}:]"]}
            texts = {"train": [text[:cut]], "heldout": [text[cut:]]}
        else:
            for name, text in docs:
                which = "heldout" if in_heldout(name, cfg.seed, cfg.heldout_fraction) else "train"
                split[which].append(name)
                texts[which].append(text)
            for need, other in (("heldout", "train"), ("train", "heldout")):
                if not split[need] and len(split[other]) > 1:
                    # Tiny corpora: move the last document over so both splits exist.
                    split[need].append(split[other].pop())
                    texts[need].append(texts[other].pop())
        arrays = {s: np.frombuffer("".join(texts[s]).encode("utf-8"), dtype=np.uint8).copy() for s in SPLITS}
        if min(len(a) for a in arrays.values()) < 2:
            raise ConfigError("the dataset is too small to split into train and held-out parts",
                              key_path=f"datasets.{self.name}")
        self.documents = split
        self._splits = arrays

    # ------------------------------------------------------------------ Dataset protocol
    def tokens(self, split: str) -> np.ndarray:
        """All tokens of ``split`` ("train" or "heldout"), uint8."""
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r} (expected 'train' or 'heldout')")
        if not self._splits:
            self.build()
        return self._splits[split]

    def sample_windows(self, split: str, count: int, length: int, rng: np.random.Generator) -> np.ndarray:
        """``count`` windows of ``length`` consecutive tokens at random offsets, int64 (count, length)."""
        data = self.tokens(split)
        if length < 1 or count < 0:
            raise ValueError("length must be ≥ 1 and count ≥ 0")
        if len(data) < length:
            raise ValueError(f"split {split!r} of dataset {self.name!r} has {len(data)} tokens, "
                             f"fewer than a window of {length}")
        starts = rng.integers(0, len(data) - length + 1, size=count)
        return data[starts[:, None] + np.arange(length)].astype(np.int64)

    async def run(self, *, task_status: Any = anyio.TASK_STATUS_IGNORED) -> None:
        await anyio.to_thread.run_sync(self.build)
        self.node.log.info("dataset ready", dataset=self.name, train_tokens=len(self._splits["train"]),
                           heldout_tokens=len(self._splits["heldout"]),
                           heldout_documents=len(self.documents["heldout"]))
        task_status.started()
        await anyio.sleep_forever()
