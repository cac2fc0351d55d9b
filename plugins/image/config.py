"""Configuration schemas of the image plugin: datasets, models, scorers and the image modality."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from tnode.config import option

_WORKERS_DOC = ("Processes that run the model, each loading it once (the U-Net's weights, the dataset behind "
                "`generate`), behind a ZeroMQ socket in the data dir; requests, and each row of a batched "
                "request, are batched across them. 0: in the node's process.")


@dataclass(frozen=True)
class ShapesConfig:
    """Procedural scenes (gradient background, overlapping circles, rectangles and triangles) made from
    seeds: train scenes use even seeds, held-out scenes odd ones, and validators draw fresh seeds, so
    their ground truth is never published."""

    size: int = option(32, "Height and width in pixels.", ge=8, le=512)
    channels: int = option(3, "3 (RGB) or 1 (grey).", choices=(1, 3))
    seed: int = option(0, "Mixed into every scene's seed, so two networks can draw different scenes.")


@dataclass(frozen=True)
class DigitsConfig:
    """scikit-learn's bundled handwritten digits (1797 labelled 8×8 images, no download), upsampled
    bicubically and split train / held-out by a keyed hash of each image's index."""

    size: int = option(32, "Height and width after upsampling.", ge=8, le=256)
    channels: int = option(1, "1 (grey) or 3 (the grey value in all three channels).", choices=(1, 3))
    heldout_fraction: float = option(0.2, "Share of images kept out of the train split.", ge=0.01, le=0.9)
    seed: int = option(0, "Seed of the train/held-out split.")


@dataclass(frozen=True)
class ImageFilesConfig:
    """PNG/JPEG files under a folder (labels: the name of each file's first sub-folder, sorted), resized
    and centre-cropped to a square, split by a keyed hash of each file's path."""

    path: str = option(doc="The folder (relative to node.toml's directory).")
    glob: str = option("**/*", "Pattern of files under the folder (only .png/.jpg/.jpeg are read).")
    size: int = option(32, "Height and width after resizing.", ge=8, le=512)
    channels: int = option(3, "3 (RGB) or 1 (grey).", choices=(1, 3))
    heldout_fraction: float = option(0.2, "Share of files kept out of the train split.", ge=0.01, le=0.9)
    seed: int = option(0, "Seed of the train/held-out split.")
    max_files: int = option(10_000, "Read at most this many files.", ge=2)


@dataclass(frozen=True)
class UNetConfig:
    """The small U-Net trained with `tnode image train`; restores inpaint, denoise and upscale inputs."""

    checkpoint: str = option("builtin", "Checkpoint written by `tnode image train` (relative to node.toml's "
                                        "directory); \"builtin\": the model shipped with tnode (trained on shapes).")
    threads: int = option(1, "torch threads used for inference (per worker when workers > 0).", ge=1)
    dataset: str = option("", "A [datasets.NAME] whose class means seed `generate` (denoised by the U-Net); "
                              "empty: the model refuses generate.", ref="datasets")
    workers: int = option(0, _WORKERS_DOC, ge=0, le=64)


@dataclass(frozen=True)
class ClassicalConfig:
    """Classical restoration: biharmonic inpainting, median denoising, bicubic upscaling (scikit-image,
    SciPy, Pillow)."""

    median_size: int = option(3, "Side of the median filter's window (odd).", ge=1, le=15)
    dataset: str = option("", "A [datasets.NAME] whose train images `generate` returns (a random one of the "
                              "class); empty: the model refuses generate.", ref="datasets")
    workers: int = option(0, _WORKERS_DOC, ge=0, le=64)


@dataclass(frozen=True)
class BlurConfig:
    """A weak baseline: holes filled with the mean colour, box blur, nearest-neighbour upscaling then blur."""

    size: int = option(5, "Side of the box blur (odd).", ge=1, le=15)
    dataset: str = option("", "A [datasets.NAME] whose class means `generate` returns.", ref="datasets")
    workers: int = option(0, _WORKERS_DOC, ge=0, le=64)


@dataclass(frozen=True)
class ImageGarbageConfig:
    """A spam miner: well-formed images that ignore the input."""

    mode: Literal["noise", "constant"] = option("noise", "Uniform noise, or one grey level.")
    seed: int = option(0, "Seed of the noise (each worker draws the same sequence).")
    workers: int = option(0, _WORKERS_DOC, ge=0, le=64)


@dataclass(frozen=True)
class PSNRConfig:
    """Peak signal-to-noise ratio against the validator's hidden original (inpainting: masked pixels only),
    mapped linearly from [floor_db, cap_db] to [0, 1]."""

    floor_db: float = option(10.0, "PSNR scored 0 (and everything below).", ge=0)
    cap_db: float = option(40.0, "PSNR scored 1 (and everything above).", ge=1)
    check_copy: bool = option(True, "Score 0 when the answer is the damaged input sent back.")
    check_constant: bool = option(True, "Score 0 for an image of (nearly) one colour when the truth is not.")


@dataclass(frozen=True)
class SSIMConfig:
    """Structural similarity against the hidden original (inpainting: mean of the SSIM map over the masked
    pixels), clipped to [0, 1]."""

    check_copy: bool = option(True, "Score 0 when the answer is the damaged input sent back.")
    check_constant: bool = option(True, "Score 0 for an image of (nearly) one colour when the truth is not.")


@dataclass(frozen=True)
class ImageModalityConfig:
    """Image restoration and generation: serves `model` (miners) and makes checkable tasks from the
    held-out split of `dataset` (validators)."""

    serve_as: str = option("", "Name peers reach this modality under on the wire (and validators ask it by); "
                               "empty: its type, \"image\". The table name is only how node.toml refers to it.")
    model: str = option("", "The [models.NAME] this node serves; empty: it serves no images.", ref="models")
    dataset: str = option("", "The [datasets.NAME] validation tasks are drawn from; empty: no tasks.",
                          ref="datasets")
    tasks: list[str] = option(["inpaint", "denoise", "upscale"], "Tasks validators send, drawn uniformly "
                              "(inpaint, denoise, upscale, generate).", choices=("inpaint", "denoise", "upscale",
                                                                                "generate"))
    sigmas: list[float] = option([10.0, 25.0, 50.0], "Noise levels (0–255 scale) of denoise tasks.")
    factors: list[int] = option([2, 4], "Upscale factors of upscale tasks (2 and/or 4).", choices=(2, 4))
    mask_kinds: list[str] = option(["box", "free"], "Inpainting masks: rectangles and/or free-form strokes.",
                                   choices=("box", "free"))
    generate_references: int = option(8, "Held-out images of the asked class a generate answer is compared with.",
                                      ge=1, le=64)
    max_side: int = option(256, "Largest height or width of an image a request may carry or ask for.", ge=8,
                           le=4096)
    max_pixels: int = option(65536, "Most pixels (H × W) of an image a request may carry or ask for.", ge=64)
    max_sigma: float = option(100.0, "Largest σ a denoise request may name.", ge=1, le=255)
    max_batch: int = option(16, "Most requests restored in one forward pass (images of one output size share "
                                "it); models without batched inference answer a batch's requests in turn.",
                            ge=1, le=256)
    max_tasks: int = option(16, "Most tasks one batched restoration request may carry (body `batch` = B, payload "
                                "(B, H, W, C), one corruption for all rows).", ge=1, le=256)
    batch_wait_ms: float = option(0.0, "How long an idle model waits for more requests after the first, in ms. "
                                       "Requests that arrive while a pass runs join the next one without waiting.",
                                  ge=0, le=1000)
