"""One pass of an image model over several requests, and the requests' form between processes.

:func:`answer_batch` is what the in-process batcher and a model worker both run: requests are split
by output size (a U-Net pass stacks images of one size; tasks may mix, their conditions are planes
of the input); a model without ``restore_batch`` answers each in turn. A failure fails only its own
requests.

Between the node and a model worker (:mod:`tnode.workers` carries one numeric array per request and
per answer, never pickle) a request is one flat uint8 array: a 4-byte little-endian header length,
an orjson header (the corruption's fields and the image's shape), the image's bytes, then the
inpainting mask as ``numpy.packbits`` of its row-major bits. An answer is the uint8 (H, W, C) image,
or a flat uint8 array holding an orjson ``{"code", "message"}`` when that request failed.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson
from tnode.contracts.image import Corruption
from tnode.errors import TaskError

Request = tuple[np.ndarray | None, Corruption]  # image (None: generate) and what to do with it


def out_size(image: np.ndarray | None, c: Corruption) -> tuple[int, int]:
    """Height and width of the answer to a request."""
    if image is None:
        return c.height, c.width
    f = c.factor if c.task == "upscale" else 1
    return image.shape[0] * f, image.shape[1] * f


def answer_batch(model: Any, requests: list[Request]) -> tuple[list[Any], int]:
    """Each request's raw answer (or the exception it raised), in order, and the passes run (blocking)."""
    results: list[Any] = [None] * len(requests)
    groups: dict[tuple[int, int], list[int]] = {}
    single: list[int] = []
    batched = hasattr(model, "restore_batch")
    for i, (image, c) in enumerate(requests):
        (groups.setdefault(out_size(image, c), []) if batched and image is not None else single).append(i)
    passes = 0
    for group in groups.values():
        passes += 1
        try:
            outs = model.restore_batch([requests[i] for i in group])
            if len(outs) != len(group):
                raise RuntimeError(f"{len(outs)} answers for {len(group)} images")
        except Exception as exc:
            for i in group:
                results[i] = exc
            continue
        for i, out in zip(group, outs, strict=True):
            results[i] = out
    for i in single:
        passes += 1
        image, c = requests[i]
        try:
            results[i] = model.generate(c) if image is None else model.restore(image, c)
        except Exception as exc:
            results[i] = exc
    return results, passes


# --------------------------------------------------------------------------- between processes
def encode_request(image: np.ndarray | None, c: Corruption) -> np.ndarray:
    """One request as a flat uint8 array (see the module's docstring)."""
    header: dict[str, Any] = {"task": c.task, "sigma": c.sigma, "factor": c.factor, "label": c.label,
                              "height": c.height, "width": c.width, "channels": c.channels, "seed": c.seed,
                              "shape": None if image is None else list(image.shape), "mask": c.mask is not None}
    raw = orjson.dumps(header)
    parts = [np.frombuffer(len(raw).to_bytes(4, "little") + raw, np.uint8)]
    if image is not None:
        parts.append(np.ascontiguousarray(image, dtype=np.uint8).reshape(-1))
    if c.mask is not None:
        parts.append(np.packbits(np.asarray(c.mask, dtype=bool).reshape(-1)))
    return np.concatenate(parts)


def decode_request(data: np.ndarray) -> Request:
    """Inverse of :func:`encode_request`; ``ValueError`` when ``data`` is not one."""
    flat = np.asarray(data, dtype=np.uint8).reshape(-1)
    if flat.size < 4:
        raise ValueError("an image request needs a header")
    n = int.from_bytes(flat[:4].tobytes(), "little")
    if flat.size < 4 + n:
        raise ValueError(f"the header of {n} bytes does not fit {flat.size} bytes")
    try:
        h = orjson.loads(flat[4 : 4 + n].tobytes())
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"bad header: {exc}") from None
    at = 4 + n
    image = None
    if h["shape"] is not None:
        shape = tuple(int(d) for d in h["shape"])
        size = int(np.prod(shape))
        if flat.size < at + size:
            raise ValueError(f"{flat.size - at} bytes do not hold an image of {shape}")
        image = flat[at : at + size].reshape(shape)
        at += size
    mask = None
    if h["mask"]:
        if image is None:
            raise ValueError("a mask needs an image")
        hw = image.shape[0] * image.shape[1]
        bits = flat[at:]
        if bits.size != (hw + 7) // 8:
            raise ValueError(f"{bits.size} mask bytes for a {image.shape[0]}×{image.shape[1]} image")
        mask = np.unpackbits(bits)[:hw].astype(bool).reshape(image.shape[:2])
    elif flat.size != at:
        raise ValueError(f"{flat.size - at} bytes after the image")
    return image, Corruption(str(h["task"]), mask=mask, sigma=float(h["sigma"]), factor=int(h["factor"]),
                             label=int(h["label"]), height=int(h["height"]), width=int(h["width"]),
                             channels=int(h["channels"]), seed=int(h["seed"]))


def _error_record(code: str, message: str) -> np.ndarray:
    return np.frombuffer(orjson.dumps({"code": code, "message": message}), np.uint8).copy()


def encode_answer(result: Any) -> np.ndarray:
    """A raw answer as what a worker sends: the uint8 (H, W, C) image, or a flat uint8 error record
    (an exception, or an answer of another dtype or rank). A model's :class:`TaskError` keeps its code;
    anything else is ``internal``."""
    if isinstance(result, TaskError):
        return _error_record(result.code, result.message)
    if isinstance(result, BaseException):
        return _error_record("internal", f"the model failed: {type(result).__name__}: {result}")
    out = np.asarray(result)
    if out.ndim != 3 or out.dtype != np.uint8:
        return _error_record("internal", f"the model returned {out.dtype} {out.shape}, expected uint8 (H, W, C)")
    return out


def decode_answer(data: np.ndarray) -> np.ndarray:
    """The image a worker sent; raises the :class:`TaskError` it reported instead."""
    out = np.asarray(data)
    if out.ndim == 3:
        return out
    try:
        record = orjson.loads(out.astype(np.uint8).tobytes())
        code, message = str(record["code"]), str(record["message"])
    except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
        raise TaskError("internal", f"a model worker sent a bad answer: {exc}") from None
    raise TaskError(code, message)
