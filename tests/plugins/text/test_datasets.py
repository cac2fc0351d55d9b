"""Datasets: deterministic, split by document, train and held-out disjoint."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from text_helpers import write_corpus
from tnode.errors import ConfigError
from tnode.plugins.text.config import PythonDocsConfig, TextFilesConfig
from tnode.plugins.text.datasets import TokenDataset, in_heldout, stdlib_documents


def files_dataset(path: Path, **kw: object) -> TokenDataset:
    ds = TokenDataset(None, "tiny", TextFilesConfig(path=str(path), **kw))  # type: ignore[arg-type]
    ds.build()
    return ds


def test_text_files_split_by_file_is_disjoint_and_complete(tmp_path: Path) -> None:
    corpus = write_corpus(tmp_path, files=20)
    ds = files_dataset(corpus, heldout_fraction=0.3)
    train, held = set(ds.documents["train"]), set(ds.documents["heldout"])
    assert train and held and not train & held
    assert train | held == {p.name for p in corpus.glob("*.txt")}
    held_text = "".join((corpus / n).read_text() for n in sorted(held, key=ds.documents["heldout"].index))
    assert ds.tokens("heldout").tobytes().decode() == held_text


def test_split_is_deterministic_and_depends_on_the_seed(tmp_path: Path) -> None:
    corpus = write_corpus(tmp_path, files=40)
    a, b = files_dataset(corpus, seed=1), files_dataset(corpus, seed=1)
    assert a.documents == b.documents
    np.testing.assert_array_equal(a.tokens("train"), b.tokens("train"))
    assert files_dataset(corpus, seed=2, heldout_fraction=0.5).documents != files_dataset(
        corpus, seed=1, heldout_fraction=0.5).documents
    # membership depends on the name only, not on which other documents exist
    assert all(in_heldout(n, 1, 0.1) for n in a.documents["heldout"])


def test_single_file_keeps_its_tail_for_heldout(tmp_path: Path) -> None:
    path = tmp_path / "one.txt"
    path.write_text("abcdefghij" * 100)
    ds = files_dataset(path, heldout_fraction=0.2)
    assert len(ds.tokens("heldout")) == 200 and len(ds.tokens("train")) == 800


def test_sample_windows_are_reproducible_slices(tmp_path: Path) -> None:
    ds = files_dataset(write_corpus(tmp_path))
    w1 = ds.sample_windows("heldout", 5, 33, np.random.default_rng(7))
    w2 = ds.sample_windows("heldout", 5, 33, np.random.default_rng(7))
    np.testing.assert_array_equal(w1, w2)
    assert w1.shape == (5, 33) and w1.dtype == np.int64
    held = ds.tokens("heldout").tobytes()
    assert all(bytes(row.astype(np.uint8)) in held for row in w1)
    with pytest.raises(ValueError, match="fewer than a window"):
        ds.sample_windows("heldout", 1, 10**7, np.random.default_rng(0))
    with pytest.raises(ValueError, match="unknown split"):
        ds.tokens("test")


def test_missing_path_and_empty_glob_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        files_dataset(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="no files match") as err:
        files_dataset(tmp_path / "empty")
    assert err.value.key_path == "datasets.tiny.glob"


def test_stdlib_documents_are_deterministic_and_never_repeat_a_docstring(tmp_path: Path) -> None:
    pkg = tmp_path / "lib"
    (pkg / "test").mkdir(parents=True)
    shared = '"""' + "Shared docstring text. " * 10 + '"""'
    (pkg / "b.py").write_text(f'"""Module b. {"words " * 50}"""\ndef f():\n    {shared}\n')
    (pkg / "a.py").write_text(f'"""Module a. {"words " * 50}"""\ndef g():\n    {shared}\n')
    (pkg / "test" / "test_x.py").write_text(f'"""{"tests are skipped " * 20}"""\n')
    (pkg / "broken.py").write_text("def (:\n")
    docs = stdlib_documents(10**6, root=pkg)
    assert [name for name, _ in docs] == ["a.py", "b.py"]
    assert "Shared docstring" in docs[0][1] and "Shared docstring" not in docs[1][1]
    assert docs == stdlib_documents(10**6, root=pkg)


@pytest.mark.slow
def test_python_docs_corpus_is_cached_and_identical(tmp_path: Path) -> None:
    cfg = PythonDocsConfig(max_bytes=200_000)
    first = TokenDataset(None, "docs", cfg, cache_dir=tmp_path)
    first.build()
    assert list(tmp_path.glob("python_docs-*.json"))
    again = TokenDataset(None, "docs", cfg, cache_dir=tmp_path)
    again.build()  # from the cache
    assert first.documents == again.documents
    np.testing.assert_array_equal(first.tokens("heldout"), again.tokens("heldout"))
    assert not set(first.documents["train"]) & set(first.documents["heldout"])
    assert len(first.tokens("train")) > 100_000
