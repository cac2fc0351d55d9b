"""PSNR/SSIM scorer values on constructed cases, and the copy/constant checks."""

from __future__ import annotations

import math

import numpy as np
import pytest
from tnode.contracts.image import Corruption, ImageAnswer, ImageTruth
from tnode.interfaces import ValidatorTask
from tnode.plugins.image.config import PSNRConfig, SSIMConfig
from tnode.plugins.image.corrupt import downscale
from tnode.plugins.image.scenes import render_scene
from tnode.plugins.image.scoring import PSNRScorer, SSIMScorer, psnr, ssim


def scene(seed: int = 3, size: int = 32) -> np.ndarray:
    return render_scene(seed, size, size)[0]


def task(truth: ImageTruth) -> ValidatorTask:
    return ValidatorTask("image", truth.corruption.task, {}, truth.corrupted, truth)


def test_identical_image_has_infinite_psnr_ssim_one_and_full_score() -> None:
    img = scene()
    assert psnr(img, img) == math.inf
    assert ssim(img, img) == pytest.approx(1.0)
    noisy = np.clip(img.astype(int) + 30, 0, 255).astype(np.uint8)
    t = task(ImageTruth(img, noisy, Corruption("denoise", sigma=30.0)))
    answers = {0: ImageAnswer(img.copy()), 1: None, 2: ImageAnswer(img[:16])}
    assert PSNRScorer(None, "p", PSNRConfig()).score(t, answers, {}) == {0: 1.0, 1: 0.0, 2: 0.0}
    assert SSIMScorer(None, "s", SSIMConfig()).score(t, answers, {}) == pytest.approx({0: 1.0, 1: 0.0, 2: 0.0})


@pytest.mark.parametrize("sigma", [2.0, 5.0, 10.0])
def test_known_noise_level_gives_the_expected_psnr(sigma: float) -> None:
    # Mid-grey, so no clipping at 0 or 255: MSE = σ², PSNR = 20·log10(255/σ).
    rng = np.random.default_rng(0)
    img = np.full((64, 64, 3), 128, np.uint8)
    noisy = np.clip(np.rint(128 + rng.normal(0, sigma, img.shape)), 0, 255).astype(np.uint8)
    # Rounding to integers adds 1/12 to the noise variance.
    assert psnr(img, noisy) == pytest.approx(20 * math.log10(255 / math.sqrt(sigma**2 + 1 / 12)), abs=0.1)
    t = task(ImageTruth(img, noisy, Corruption("denoise", sigma=sigma)))
    expected = min(1.0, (psnr(img, noisy) - 10) / 30)  # the default linear map [10 dB, 40 dB] → [0, 1]
    answer = ImageAnswer(np.clip(noisy.astype(int) + 0, 0, 255).astype(np.uint8))
    cfg = PSNRConfig(check_copy=False)
    assert PSNRScorer(None, "p", cfg).score(t, {7: answer}, {})[7] == pytest.approx(expected)


def test_more_noise_scores_lower() -> None:
    img, rng = scene(), np.random.default_rng(1)
    answers = {s: ImageAnswer(np.clip(np.rint(img + rng.normal(0, s, img.shape)), 0, 255).astype(np.uint8))
               for s in (2, 8, 32)}
    t = task(ImageTruth(img, None, Corruption("denoise", sigma=25.0)))
    for scorer in (PSNRScorer(None, "p", PSNRConfig()), SSIMScorer(None, "s", SSIMConfig())):
        s = scorer.score(t, answers, {})
        assert s[2] > s[8] > s[32] > 0


def test_inpainting_is_scored_on_the_masked_region_only() -> None:
    img = scene()
    mask = np.zeros(img.shape[:2], bool)
    mask[8:20, 8:20] = True
    sent = img.copy()
    sent[mask] = 0
    t = task(ImageTruth(img, sent, Corruption("inpaint", mask=mask)))
    perfect_hole_bad_rest = img.copy()
    perfect_hole_bad_rest[~mask] = 255 - img[~mask]
    bad_hole = img.copy()
    bad_hole[mask] = 255 - img[mask]
    scorer = PSNRScorer(None, "p", PSNRConfig())
    s = scorer.score(t, {0: ImageAnswer(perfect_hole_bad_rest), 1: ImageAnswer(bad_hole)}, {})
    assert s[0] == 1.0 and s[1] < 0.2
    assert ssim(img, perfect_hole_bad_rest, mask) > ssim(img, bad_hole, mask)


def test_copies_of_the_input_and_constant_images_score_zero() -> None:
    img = scene()
    rng = np.random.default_rng(2)
    noisy = np.clip(np.rint(img + rng.normal(0, 10, img.shape)), 0, 255).astype(np.uint8)
    small = downscale(img, 2)
    cases = [ImageTruth(img, noisy, Corruption("denoise", sigma=10.0)),
             ImageTruth(img, small, Corruption("upscale", factor=2))]
    copies = [noisy, np.repeat(np.repeat(small, 2, axis=0), 2, axis=1)]
    for scorer_cls, cfg in ((PSNRScorer, PSNRConfig()), (SSIMScorer, SSIMConfig())):
        scorer = scorer_cls(None, "x", cfg)
        for truth, copy in zip(cases, copies, strict=True):
            grey = np.full_like(img, int(img.mean()))
            s = scorer.score(task(truth), {0: ImageAnswer(copy), 1: ImageAnswer(grey)}, {})
            assert s == {0: 0.0, 1: 0.0}
        assert scorer.flagged == {"copy": 2, "constant": 2}
    # Without the check the copy of a mildly noisy input would have scored well.
    unchecked = PSNRScorer(None, "p", PSNRConfig(check_copy=False))
    assert unchecked.score(task(cases[0]), {0: ImageAnswer(noisy)}, {})[0] > 0.4
