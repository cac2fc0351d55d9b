"""Models: the shipped U-Net and the baselines restore held-out images in their known order of quality."""

from __future__ import annotations

import numpy as np
import pytest
from tnode.contracts.image import Corruption
from tnode.plugins.image.config import ShapesConfig, UNetConfig
from tnode.plugins.image.datasets import ShapesDataset
from tnode.plugins.image.evaluate import eval_tasks, evaluate
from tnode.plugins.image.models import BUILTIN_CHECKPOINT, UNetModel


@pytest.fixture(scope="module")
def results() -> dict[str, dict[str, float]]:
    from tnode.plugins.image.cli import baseline_models

    truths = eval_tasks(ShapesDataset(None, "s", ShapesConfig(size=32)), per_task=8, seed=3)
    out: dict[str, dict[str, float]] = {}
    for label, model in baseline_models("builtin", 1):
        out[label.split(" ")[0]] = {r.task: r.psnr for r in evaluate(label, model, truths)}
    return out


def test_the_builtin_checkpoint_ships_and_loads() -> None:
    assert BUILTIN_CHECKPOINT.is_file()
    model = UNetModel(None, "u", UNetConfig())
    model.load()
    out = model.restore(np.zeros((8, 12, 1), np.uint8), Corruption("upscale", factor=2))
    assert out.shape == (16, 24, 1) and out.dtype == np.uint8  # grey and sizes that are not multiples of 4


def test_baselines_are_ordered_on_held_out_images(results: dict[str, dict[str, float]]) -> None:
    order = [results[m]["all"] for m in ("unet", "classical", "blur", "garbage")]
    assert order == sorted(order, reverse=True), results
    # The U-Net leads the classical method it refines by dB on denoise and upscale; on inpainting its lead is
    # a few tenths of a dB on average and varies from sample to sample, so 8 images only bound it from below.
    assert all(results["unet"][t] > results["classical"][t] + 1.0 for t in ("denoise", "upscale")), results
    assert results["unet"]["inpaint"] > results["classical"]["inpaint"] - 0.5, results
    assert results["garbage"]["all"] < 12 < results["blur"]["all"]


def test_generate_makes_images_of_the_asked_class_and_is_scored_against_references() -> None:
    from tnode.contracts.image import ImageAnswer, ImageTruth
    from tnode.interfaces import ValidatorTask
    from tnode.plugins.image.config import BlurConfig, ClassicalConfig, ImageGarbageConfig, PSNRConfig
    from tnode.plugins.image.models import BlurModel, ClassicalModel, ImageGarbageModel
    from tnode.plugins.image.scoring import PSNRScorer

    shapes = ShapesDataset(None, "s", ShapesConfig(size=16))
    ask = Corruption("generate", label=1, height=16, width=16, channels=3, seed=4)
    refs, labels = shapes.sample("heldout", 64, np.random.default_rng(0))
    refs = refs[labels == 1][:8]
    truth = ImageTruth(refs[0], None, ask, refs)
    task = ValidatorTask("image", "generate", {}, None, truth)
    answers = {}
    for i, cls, cfg in ((0, UNetModel, UNetConfig()), (1, ClassicalModel, ClassicalConfig()),
                        (2, BlurModel, BlurConfig()), (3, ImageGarbageModel, ImageGarbageConfig())):
        model = cls(None, str(i), cfg)
        if i < 3:
            model.attach_dataset(shapes)
        image = model.generate(ask)
        assert image.shape == (16, 16, 3) and image.dtype == np.uint8
        answers[i] = ImageAnswer(image)
    scores = PSNRScorer(None, "p", PSNRConfig()).score(task, answers, {})
    assert min(scores[0], scores[1], scores[2]) > scores[3]
