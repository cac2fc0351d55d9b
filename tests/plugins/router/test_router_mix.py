"""Text and image aggregation: untrusted answers checked, mixtures, outliers."""

from __future__ import annotations

import numpy as np
import pytest
from tnode.contracts.text import TopKPrediction
from tnode.errors import TaskError
from tnode.plugins.router import image_mix, text_mix


def answer(probs: np.ndarray, k: int) -> tuple[dict, np.ndarray]:
    ids = np.argsort(-probs, axis=1)[:, :k]
    return {"ids": ids.tolist()}, np.log(np.take_along_axis(probs, ids, axis=1)).astype(np.float32)


@pytest.mark.parametrize(("body", "payload", "why"), [
    ({"ids": [[1, 1]]}, np.log(np.array([[0.5, 0.4]], dtype=np.float32)), "repeats"),
    ({"ids": [[1, 2]]}, np.array([[0.0, -0.1]], dtype=np.float32), "more than 1"),
    ({"ids": [[1, 999]]}, np.array([[-1.0, -2.0]], dtype=np.float32), "lie in"),
    ({"ids": [[1, 2]]}, np.array([[np.nan, -2.0]], dtype=np.float32), "finite"),
    ({"ids": [[1, 2]]}, np.array([[-1.0, -2.0]], dtype=np.int64), "float"),
    ({"ids": [[1, 2], [3, 4]]}, np.array([[-1.0, -2.0]], dtype=np.float32), "shape"),
    ({"nothing": 1}, np.array([[-1.0]], dtype=np.float32), "body.ids"),
])
def test_bad_text_answers_are_refused_with_the_reason(body, payload, why) -> None:
    with pytest.raises(TaskError) as refused:
        text_mix.parse_topk(body, payload, rows=1, k=4)
    assert refused.value.code == "invalid_response" and why in refused.value.message


def test_dense_spreads_the_unclaimed_mass_and_sums_to_one() -> None:
    pred = TopKPrediction(np.array([[3, 7]]), np.log(np.array([[0.5, 0.3]], dtype=np.float32)), 256)
    d = text_mix.dense(pred, floor=1e-6)
    assert abs(d.sum() - 1) < 1e-9 and abs(d[0, 3] - 0.5) < 1e-6
    assert abs(d[0, 0] - 0.2 / 254) < 1e-6


def test_a_mixture_of_experts_that_know_different_halves_beats_each() -> None:
    rng = np.random.default_rng(0)
    truth = rng.integers(0, 256, size=200)
    a = np.full((200, 256), 0.5 / 255)
    b = a.copy()
    half = np.arange(200) < 100  # a knows the first half of the tokens, b the second
    a[np.arange(200), truth] = np.where(half, 0.5, 0.5 / 255)
    b[np.arange(200), truth] = np.where(half, 0.5 / 255, 0.5)
    a /= a.sum(axis=1, keepdims=True)
    b /= b.sum(axis=1, keepdims=True)
    mixed = text_mix.mix([a, b], np.array([0.5, 0.5]))
    ce = text_mix.cross_entropy
    assert ce(mixed, truth) < min(ce(a, truth), ce(b, truth)) - 0.5
    resp = text_mix.responsibilities([a, b], np.array([0.5, 0.5]), truth)
    assert abs(resp.sum() - 1) < 1e-9 and abs(resp[0] - 0.5) < 0.01


def test_greedy_sampling_takes_the_most_likely_token() -> None:
    d = np.full(256, 0.001)
    d[42] = 0.9
    assert text_mix.sample_token(d / d.sum(), np.random.default_rng(0), temperature=0.0) == 42


def test_an_image_far_from_the_others_is_an_outlier_and_the_median_ignores_it() -> None:
    rng = np.random.default_rng(0)
    truth = rng.integers(0, 256, size=(16, 16, 3)).astype(np.uint8)
    honest = [np.clip(truth.astype(int) + rng.integers(-3, 4, truth.shape), 0, 255).astype(np.uint8)
              for _ in range(3)]
    liar = (255 - truth).astype(np.uint8)
    answers = [*honest, liar]
    assert image_mix.outliers(answers, factor=3.0) == [3]
    assert image_mix.outliers(honest, factor=3.0) == []
    median = image_mix.combine(answers, np.ones(4), "median")
    assert image_mix.psnr(median, truth) > image_mix.psnr(image_mix.combine(answers, np.ones(4)), truth)
    assert image_mix.psnr(image_mix.combine(honest, np.ones(3)), truth) > 40


def test_an_image_of_the_wrong_shape_or_type_is_refused() -> None:
    with pytest.raises(TaskError, match="shape"):
        image_mix.parse_image(np.zeros((8, 8, 3), np.uint8), (16, 16, 3))
    with pytest.raises(TaskError, match="uint8"):
        image_mix.parse_image(np.zeros((16, 16, 3), np.float32), (16, 16, 3))
    assert image_mix.expected_shape("upscale", np.zeros((8, 8, 1), np.uint8), {"factor": 4}) == (32, 32, 1)
