"""Image datasets: determinism, disjoint train / held-out splits, real files, clear config errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from tnode.errors import ConfigError
from tnode.plugins.image.config import DigitsConfig, ImageFilesConfig, ShapesConfig
from tnode.plugins.image.datasets import DigitsDataset, ImageFilesDataset, ShapesDataset
from tnode.plugins.image.pictures import read_png, write_png


def test_shapes_are_deterministic_and_the_splits_use_disjoint_seeds() -> None:
    ds = ShapesDataset(None, "s", ShapesConfig(size=24))
    a, la = ds.sample("train", 6, np.random.default_rng(1))
    b, lb = ds.sample("train", 6, np.random.default_rng(1))
    assert a.shape == (6, 24, 24, 3) and a.dtype == np.uint8
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(la, lb)
    assert set(la.tolist()) <= {0, 1, 2}
    # The same index in the two splits renders two different scenes (even vs odd seeds)…
    for i in range(50):
        assert ds.scene_seed("train", i) % 2 == 0 and ds.scene_seed("heldout", i) % 2 == 1
    train, _ = ds.scenes("train", list(range(20)))
    held, _ = ds.scenes("heldout", list(range(20)))
    assert not any(np.array_equal(t, h) for t in train for h in held)
    # …and another dataset seed draws other scenes.
    other = ShapesDataset(None, "o", ShapesConfig(size=24, seed=1)).scenes("train", [0])[0]
    assert not np.array_equal(other[0], train[0])
    assert ShapesDataset(None, "g", ShapesConfig(size=16, channels=1)).scenes("train", [0])[0].shape == (1, 16, 16, 1)


def test_digits_split_is_deterministic_disjoint_and_covers_every_image() -> None:
    a = DigitsDataset(None, "d", DigitsConfig(size=16))
    a.build()
    b = DigitsDataset(None, "d", DigitsConfig(size=16))
    b.build()
    assert a.keys == b.keys
    assert not set(a.keys["train"]) & set(a.keys["heldout"])
    assert len(a.keys["train"]) + len(a.keys["heldout"]) == 1797
    assert 0.15 < len(a.keys["heldout"]) / 1797 < 0.25
    images, labels = a.arrays("heldout")
    assert images.shape[1:] == (16, 16, 1) and set(labels.tolist()) == set(range(10))
    c = DigitsDataset(None, "d", DigitsConfig(size=16, seed=9))
    c.build()
    assert c.keys["heldout"] != a.keys["heldout"]
    with pytest.raises(ValueError, match="unknown split"):
        a.sample("test", 1, np.random.default_rng(0))


def test_image_files_read_pngs_with_labels_from_folders(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    for cls in ("cats", "dogs"):
        (tmp_path / cls).mkdir()
        for i in range(10):
            write_png(tmp_path / cls / f"{i}.png", rng.integers(0, 256, (20, 30, 3), dtype=np.uint8))
    (tmp_path / "notes.txt").write_text("not an image")
    ds = ImageFilesDataset(None, "f", ImageFilesConfig(path=str(tmp_path), size=16, heldout_fraction=0.3))
    ds.build()
    assert ds.num_classes == 2
    assert not set(ds.keys["train"]) & set(ds.keys["heldout"])
    assert len(ds.keys["train"]) + len(ds.keys["heldout"]) == 20
    images, labels = ds.arrays("train")
    assert images.shape[1:] == (16, 16, 3) and set(labels.tolist()) <= {0, 1}
    img = rng.integers(0, 256, (5, 7, 3), dtype=np.uint8)
    write_png(tmp_path / "x.png", img)
    np.testing.assert_array_equal(read_png(tmp_path / "x.png"), img)


def test_image_files_errors_name_the_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        ImageFilesDataset(None, "f", ImageFilesConfig(path=str(tmp_path / "missing"))).build()
    assert err.value.key_path == "datasets.f.path"
    (tmp_path / "broken.png").write_bytes(b"not a png")
    (tmp_path / "ok.png").write_bytes(b"")
    with pytest.raises(ConfigError) as err:
        ImageFilesDataset(None, "f", ImageFilesConfig(path=str(tmp_path))).build()
    assert "cannot read image" in str(err.value)
