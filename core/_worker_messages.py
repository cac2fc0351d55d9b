"""The messages between a :class:`tnode.workers.WorkerPool` and its worker processes (internal).

A message is multipart: a one-byte kind, an orjson header, then one frame of raw bytes per array
(dtype and shape in the header; never pickle). The node sends BATCH, HEARTBEAT and STOP; a worker
sends READY (or FAILED when its model cannot load), HEARTBEAT and one ANSWER per batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import zmq

__all__ = ["ANSWER", "BATCH", "FAILED", "HEARTBEAT", "READY", "STOP", "array_frames", "array_header", "decode_arrays"]

# message kinds (first frame)
READY, HEARTBEAT, BATCH, ANSWER, FAILED, STOP = b"R", b"H", b"B", b"A", b"F", b"S"


def array_header(arrays: Sequence[np.ndarray]) -> list[list[Any]]:
    """The header's ``arrays`` entry: ``[dtype, shape]`` per array, in frame order."""
    return [[a.dtype.str, list(a.shape)] for a in arrays]


def array_frames(arrays: Sequence[np.ndarray]) -> list[Any]:
    """One frame of raw bytes per array (the bytes of a contiguous copy where it is not contiguous)."""
    # zero-copy frames above pyzmq's copy threshold; contiguity is what makes the bytes the array
    return [np.ascontiguousarray(a).data.cast("B") if a.size else b"" for a in arrays]


def decode_arrays(specs: Any, frames: Sequence[zmq.Frame | bytes]) -> list[np.ndarray]:
    """Read-only arrays over the received frames; ValueError on any mismatch."""
    if not isinstance(specs, list) or len(specs) != len(frames):
        raise ValueError(f"header names {len(specs) if isinstance(specs, list) else '?'} arrays, "
                         f"message carries {len(frames)}")
    out = []
    for spec, frame in zip(specs, frames, strict=True):
        dtype_str, shape = spec
        dtype = np.dtype(dtype_str)
        if dtype.hasobject or dtype.kind not in "biufc":
            raise ValueError(f"dtype {dtype_str!r} is not numeric")
        if not isinstance(shape, list) or not all(isinstance(d, int) and d >= 0 for d in shape):
            raise ValueError(f"shape {shape!r} is not a list of sizes")
        buf = frame.buffer if isinstance(frame, zmq.Frame) else memoryview(frame)
        if buf.nbytes != int(np.prod(shape, dtype=np.int64)) * dtype.itemsize:
            raise ValueError(f"{buf.nbytes} bytes do not hold {dtype_str} {shape}")
        out.append(np.frombuffer(buf, dtype=dtype).reshape(shape))
    return out
