"""tnode plugin: the image modality (inpaint, denoise, upscale, generate), image datasets, a U-Net and
baselines, PSNR/SSIM scorers, and `tnode image train` / `tnode image eval`. See docs/image.md."""

from __future__ import annotations

from typing import Any

import tnode

from .config import (
    BlurConfig,
    ClassicalConfig,
    DigitsConfig,
    ImageFilesConfig,
    ImageGarbageConfig,
    ImageModalityConfig,
    PSNRConfig,
    ShapesConfig,
    SSIMConfig,
    UNetConfig,
)


@tnode.hookimpl
def tnode_register_components(register: Any) -> None:
    # Implementations import numpy, scikit-image, torch only when a component is built.
    def lazy(module: str, attr: str) -> Any:
        def factory(node: Any, name: str, config: Any) -> Any:
            import importlib

            return getattr(importlib.import_module(f"{__name__}.{module}"), attr)(node, name, config)

        return factory

    register(kind="dataset", type="shapes", factory=lazy("datasets", "ShapesDataset"), schema=ShapesConfig,
             description="Procedural scenes of coloured shapes drawn from seeds (validators draw fresh ones).")
    register(kind="dataset", type="digits", factory=lazy("datasets", "DigitsDataset"), schema=DigitsConfig,
             description="scikit-learn's bundled handwritten digits, upsampled, split train/held-out.")
    register(kind="dataset", type="image_files", factory=lazy("datasets", "ImageFilesDataset"),
             schema=ImageFilesConfig, description="A folder of PNG/JPEG files (labels from sub-folders).")
    register(kind="model", type="unet", factory=lazy("models", "UNetModel"), schema=UNetConfig,
             description="Small U-Net (torch) for inpaint, denoise and upscale, trained with `tnode image train`.")
    register(kind="model", type="classical", factory=lazy("models", "ClassicalModel"), schema=ClassicalConfig,
             description="Biharmonic inpainting, median denoising, bicubic upscaling.")
    register(kind="model", type="blur", factory=lazy("models", "BlurModel"), schema=BlurConfig,
             description="Mean-colour fill, box blur, blurred nearest-neighbour upscaling: a weak baseline.")
    register(kind="model", type="image_garbage", factory=lazy("models", "ImageGarbageModel"),
             schema=ImageGarbageConfig, description="Spam miner: noise or grey images that ignore the input.")
    register(kind="scorer", type="psnr", factory=lazy("scoring", "make_psnr"), schema=PSNRConfig,
             description="PSNR against the hidden original (inpainting: the masked region), with copy checks.")
    register(kind="scorer", type="ssim", factory=lazy("scoring", "make_ssim"), schema=SSIMConfig,
             description="SSIM against the hidden original (inpainting: the masked region), with copy checks.")
    register(kind="modality", type="image", factory=lazy("modality", "ImageModality"), schema=ImageModalityConfig,
             description="Image restoration and generation; validation tasks from held-out images.")


@tnode.hookimpl
def tnode_add_cli_commands(app: Any) -> None:
    from .cli import register_commands

    register_commands(app)
