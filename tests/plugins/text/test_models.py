"""The language models: n-gram against a direct Witten-Bell computation, uniform, garbage, transformer."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from tnode.errors import ConfigError
from tnode.plugins.text.config import GarbageConfig, NgramConfig, UniformConfig
from tnode.plugins.text.evaluate import cross_entropy, eval_windows
from tnode.plugins.text.models import GarbageModel, NgramModel, UniformModel
from tnode.plugins.text.tokenizer import encode

TEXT = "the cat sat on the mat. the dog sat on the log. " * 20


def witten_bell(tokens: list[int], context: tuple[int, ...], w: int) -> float:
    """P(w | context) by the textbook recursion, counting with plain Python."""
    if not context:
        counts = Counter(tokens)
        return (counts[w] + 1) / (len(tokens) + 256)
    n = len(context) + 1
    grams = Counter(tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1))
    after = {g[-1]: c for g, c in grams.items() if g[:-1] == context}
    lower = witten_bell(tokens, context[1:], w)
    total, types = sum(after.values()), len(after)
    if total == 0:
        return lower
    return (after.get(w, 0) + types * lower) / (total + types)


def ngram(order: int, text: str = TEXT) -> NgramModel:
    model = NgramModel(None, "n", NgramConfig(dataset="d", order=order))
    model.fit(encode(text))
    return model


@pytest.mark.parametrize("order", [1, 2, 3, 4])
def test_ngram_matches_witten_bell_by_hand(order: int) -> None:
    tokens = encode(TEXT).tolist()
    model = ngram(order)
    query = encode("the cat sat on the log. zebra")
    lp = model.next_token_logprobs(query[None, :].astype(np.int64))[0]
    for pos in (0, 5, 12, len(query) - 1):
        context = tuple(query[max(0, pos - order + 2) : pos + 1].tolist()) if order > 1 else ()
        for w in (ord(" "), ord("a"), ord("z"), 0):
            assert np.exp(lp[pos, w]) == pytest.approx(witten_bell(tokens, context, w), rel=1e-4)


def test_ngram_is_normalized_and_better_than_uniform() -> None:
    model = ngram(3)
    batch = eval_windows(encode(TEXT), windows=8, length=40)
    lp = model.next_token_logprobs(batch[:, :-1])
    np.testing.assert_allclose(np.exp(lp).sum(-1), 1.0, rtol=1e-5)
    uniform = UniformModel(None, "u", UniformConfig())
    assert cross_entropy(model, batch).nats < cross_entropy(uniform, batch).nats - 3.0


def test_uniform_is_log_256_everywhere() -> None:
    lp = UniformModel(None, "u", UniformConfig()).next_token_logprobs(np.zeros((2, 3), dtype=np.int64))
    assert lp.shape == (2, 3, 256) and np.allclose(lp, -np.log(256))


def test_garbage_ignores_the_input() -> None:
    x = np.arange(10, dtype=np.int64)[None]
    constant = GarbageModel(None, "g", GarbageConfig(mode="constant"))
    a, b = constant.next_token_logprobs(x), constant.next_token_logprobs(x[:, ::-1].copy())
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a[0, 0], a[0, 9])
    rand = GarbageModel(None, "g", GarbageConfig(mode="random"))
    r1, r2 = rand.next_token_logprobs(x), rand.next_token_logprobs(x)
    assert not np.allclose(r1, r2)
    np.testing.assert_allclose(np.exp(r1).sum(-1), 1.0, rtol=1e-5)


# --------------------------------------------------------------------------- transformer
torch = pytest.importorskip("torch")


def tiny_transformer(**kw: object):  # type: ignore[no-untyped-def]
    from tnode.plugins.text.config import TransformerConfig
    from tnode.plugins.text.transformer import TransformerModel

    cfg = TransformerConfig(d_model=32, n_layers=1, n_heads=2, context=16, threads=1, **kw)  # type: ignore[arg-type]
    model = TransformerModel(None, "t", cfg)
    model.load()
    return model


def test_transformer_is_causal_and_normalized() -> None:
    model = tiny_transformer()
    x = np.random.default_rng(0).integers(0, 256, (2, 12))
    lp = model.next_token_logprobs(x)
    assert lp.shape == (2, 12, 256) and lp.dtype == np.float32
    np.testing.assert_allclose(np.exp(lp).sum(-1), 1.0, rtol=1e-4)
    changed = x.copy()
    changed[:, 8:] = 0
    np.testing.assert_allclose(model.next_token_logprobs(changed)[:, :8], lp[:, :8], atol=1e-5)


def test_transformer_handles_sequences_longer_than_its_context() -> None:
    model = tiny_transformer()
    x = np.random.default_rng(1).integers(0, 256, (1, 45))
    lp = model.next_token_logprobs(x)
    assert lp.shape == (1, 45, 256)
    # Position 30 is predicted from the half-context-strided window that ends at 32.
    np.testing.assert_allclose(lp[0, 30], model.next_token_logprobs(x[:, 16:32])[0, 14], atol=1e-5)
    np.testing.assert_allclose(lp[0, :16], model.next_token_logprobs(x[:, :16])[0], atol=1e-5)


def test_checkpoint_round_trip_and_bad_checkpoints(tmp_path: Path) -> None:
    from tnode.plugins.text.transformer import save_checkpoint

    model = tiny_transformer()
    assert model.model is not None
    save_checkpoint(tmp_path / "m.pt", model.model, step=3)
    loaded = tiny_transformer(checkpoint=str(tmp_path / "m.pt"))
    x = np.arange(10, dtype=np.int64)[None]
    np.testing.assert_array_equal(loaded.next_token_logprobs(x), model.next_token_logprobs(x))
    with pytest.raises(ConfigError, match="does not exist"):
        tiny_transformer(checkpoint=str(tmp_path / "missing.pt"))
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ConfigError, match="not a readable checkpoint"):
        tiny_transformer(checkpoint=str(tmp_path / "junk.pt"))
    torch.save({"format": "something else"}, tmp_path / "other.pt")
    with pytest.raises(ConfigError, match="not a tnode byte-transformer"):
        tiny_transformer(checkpoint=str(tmp_path / "other.pt"))
