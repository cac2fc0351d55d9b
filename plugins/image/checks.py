"""Checks of everything that arrives from the network: requests (miners) and answers (validators).

A request that is malformed becomes ``TaskError("invalid_request")``, one over a configured bound
``TaskError("too_large")``; an answer that does not fit its task ``TaskError("invalid_response")``.
Nothing untrusted reaches a model or a scorer unchecked.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from tnode.contracts.image import CHANNELS, Corruption, ImageAnswer, ImageTruth
from tnode.errors import TaskError

from .corrupt import decode_mask

KEYS = {"inpaint": frozenset({"mask"}), "denoise": frozenset({"sigma"}), "upscale": frozenset({"factor"}),
        "generate": frozenset({"label", "height", "width", "channels", "seed"})}


def _bad(why: str) -> TaskError:
    return TaskError("invalid_request", why)


def check_image(payload: Any, *, max_side: int, max_pixels: int) -> np.ndarray:
    """A uint8 (H, W, C) array with C ∈ {1, 3} inside the size bounds."""
    if payload is None:
        raise _bad("this task needs the image as a uint8 (H, W, C) payload")
    if not isinstance(payload, np.ndarray):
        raise _bad(f"the payload must be a uint8 (H, W, C) array, got {type(payload).__name__}")
    if payload.dtype != np.uint8:
        raise _bad(f"the payload must be uint8, got {payload.dtype}")
    if payload.ndim != 3 or payload.shape[2] not in CHANNELS or min(payload.shape[:2]) < 1:
        raise _bad(f"the payload must have shape (H, W, C) with C in {CHANNELS}, got {payload.shape}")
    h, w = payload.shape[:2]
    if max(h, w) > max_side or h * w > max_pixels:
        raise TaskError("too_large", f"a {h}×{w} image exceeds max_side {max_side} or max_pixels {max_pixels}")
    return payload


def _int(body: Mapping[str, Any], key: str, default: int | None, lo: int, hi: int) -> int:
    value = body.get(key, default)
    if value is None:
        raise _bad(f"{key} is required")
    if not isinstance(value, int) or isinstance(value, bool):
        raise _bad(f"{key} must be an integer, got {type(value).__name__}")
    if not lo <= value <= hi:
        raise _bad(f"{key}={value} is outside [{lo}, {hi}]")
    return value


def parse_request(task: str, body: Any, payload: Any, *, max_side: int, max_pixels: int, max_sigma: float
                  ) -> tuple[np.ndarray | None, Corruption]:
    """The checked input image (None for generate) and the corruption the request describes."""
    if task not in KEYS:
        raise _bad(f"unknown image task {task!r} (expected one of {', '.join(KEYS)})")
    if not isinstance(body, Mapping):
        raise _bad("the body must be an object")
    unknown = sorted(set(body) - KEYS[task])
    if unknown:
        raise _bad(f"unknown {task} field(s) {unknown} (allowed: {sorted(KEYS[task])})")
    if task == "generate":
        if payload is not None:
            raise _bad("generate takes no payload")
        h = _int(body, "height", 32, 1, 1 << 20)
        w = _int(body, "width", 32, 1, 1 << 20)
        if max(h, w) > max_side or h * w > max_pixels:
            raise TaskError("too_large", f"a {h}×{w} image exceeds max_side {max_side} or max_pixels {max_pixels}")
        channels = _int(body, "channels", 3, 1, 3)
        if channels not in CHANNELS:
            raise _bad(f"channels must be one of {CHANNELS}")
        return None, Corruption("generate", label=_int(body, "label", None, 0, 1 << 20), height=h, width=w,
                                channels=channels, seed=_int(body, "seed", 0, 0, 2**63 - 1))
    image = check_image(payload, max_side=max_side, max_pixels=max_pixels)
    h, w = image.shape[:2]
    if task == "inpaint":
        try:
            mask = decode_mask(body.get("mask"), h, w)
        except ValueError as exc:
            raise _bad(str(exc)) from None
        return image, Corruption("inpaint", mask=mask)
    if task == "denoise":
        sigma = body.get("sigma", 25.0)
        if not isinstance(sigma, int | float) or isinstance(sigma, bool) or not 0 <= sigma <= max_sigma:
            raise _bad(f"sigma must be a number in [0, {max_sigma}], got {sigma!r}")
        return image, Corruption("denoise", sigma=float(sigma))
    factor = _int(body, "factor", 2, 2, 4)
    if factor not in (2, 4):
        raise _bad("factor must be 2 or 4")
    if max(h, w) * factor > max_side or h * w * factor * factor > max_pixels:
        raise TaskError("too_large", f"a {h * factor}×{w * factor} answer exceeds max_side {max_side} or "
                                     f"max_pixels {max_pixels}")
    return image, Corruption("upscale", factor=factor)


def check_answer(truth: ImageTruth, payload: Any) -> ImageAnswer:
    """A miner's answer must be a uint8 image of exactly the original's shape."""
    shape = truth.original.shape
    if not isinstance(payload, np.ndarray) or payload.dtype != np.uint8:
        raise TaskError("invalid_response", f"the answer must be a uint8 {shape} image payload")
    if payload.shape != shape:
        raise TaskError("invalid_response", f"the answer has shape {payload.shape}, expected {shape}")
    return ImageAnswer(np.ascontiguousarray(payload))
