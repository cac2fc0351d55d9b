"""The image devnet end to end, small: separate processes on 127.0.0.1, and the chain pays for image quality.

One authority, one validator and three image miners (the shipped U-Net, blur and garbage: qualities far
enough apart that two epochs with one validator order them every time; the U-Net leads classical
restoration by well under a dB on inpainting, which a two-epoch run cannot resolve reliably, so the
four-model order is shown by the full devnet in docs/image.md) register by proof of work; the
validator scores them by PSNR/SSIM against held-out originals it keeps back; after two counted epochs
the incentive must follow held-out quality and the report's PNG grid must exist.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from devnet_helpers import leftover_processes, run_devnet
from tnode.plugins.image.pictures import read_png

pytestmark = pytest.mark.slow


def test_image_devnet_pays_miners_in_order_of_quality(tmp_path: Path) -> None:
    report, run = tmp_path / "r.json", tmp_path / "run"
    result = run_devnet(["--modality", "image", "--miners", "3", "--models", "unet,blur,image_garbage",
                         "--validators", "1", "--epochs", "2", "--tempo", "8", "--block-time", "0.5"],
                        run, report=report)
    out = result.output
    assert result.returncode == 0, result.tail()
    doc = result.report
    assert doc is not None
    checks = doc["checks"]
    assert doc["modality"] == "image"
    assert checks["incentive_order"] == ["unet", "blur", "image_garbage"], (checks, out[-2000:])
    assert checks["incentive_ordered"], checks
    assert checks["spearman_incentive_vs_heldout_quality"] >= 0.9, checks
    assert checks["garbage_emission_share"] <= 0.01, checks
    grid = read_png(Path(doc["picture"]))
    assert grid.shape[0] > 96 and grid.shape[1] > 4 * 96  # rows of tasks, columns original/input/3 answers
    assert not leftover_processes(run)
