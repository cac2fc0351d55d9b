"""``[spam.NAME] type = "limits"``: refuse requests too big to read or too expensive to answer.

Checked before any modality work: frame and payload bytes, the input's length and batch size
(from a token payload's shape — an integer array ``(..., length)``, as every entry point reports it
in :class:`tnode.interfaces.InboundRequest` — and from the body), the top-k and the number of tokens
to generate, and the size of the answer these ask for. Service calls (``svc:<name>``) and exempt
modalities get the frame and payload limits only.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import anyio
from tnode.interfaces import InboundRequest

from .common import FilterBase
from .config import LimitsConfig

_TOKEN_DTYPES = ("int", "uint")  # numpy dtype names of token ids: int32, int64, uint16...


class RequestTooBig(Exception):
    """Internal: a limit was passed (reason, code, message)."""

    def __init__(self, reason: str, code: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.code = code
        self.message = message


def _count(value: Any, key: str) -> int:
    """A non-negative integer count from the body (bool, float and negative values are invalid)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise RequestTooBig("invalid", "invalid_request", f"body field {key!r} must be a non-negative integer, "
                                                          f"got {value!r}"[:200])
    return value


def sequence_shape(value: Any, key: str) -> tuple[int, int]:
    """``(rows, longest row)`` of an input sequence: a string, a list of tokens or a list of those."""
    if isinstance(value, str | bytes):
        return 1, len(value)
    if not isinstance(value, Sequence):
        raise RequestTooBig("invalid", "invalid_request", f"body field {key!r} must be a sequence")
    if value and all(isinstance(row, list | str) for row in value):
        return len(value), max(len(row) for row in value)
    return 1, len(value)


class Limits(FilterBase):
    """Refuses (``too_large`` / ``invalid_request``) requests past the limits of :class:`LimitsConfig`."""

    type_name = "limits"
    judges_services = True  # frame and payload sizes bound every route

    def __init__(self, node: Any, name: str, config: LimitsConfig) -> None:
        super().__init__(node, name, exempt_modalities=config.exempt_modalities)
        self.config = config

    async def run(self, *, task_status: Any = anyio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        await anyio.sleep_forever()

    async def admit(self, request: InboundRequest) -> Callable[[], None] | None:
        """Admit a request within every limit; raise TaskError("too_large"/"invalid_request") otherwise."""
        try:
            self.check(request)
        except RequestTooBig as exc:
            raise self.refuse(request, exc.code, exc.reason, exc.message) from None
        exempt = request.modality in self.exempt or request.service
        self.admitted(request, "exempt_modality" if exempt else "within_limits")
        return None

    def check(self, request: InboundRequest) -> None:
        """Raise :class:`RequestTooBig` for the first limit ``request`` passes."""
        c = self.config
        if request.frame_bytes > c.max_frame_bytes:
            raise RequestTooBig("frame_bytes", "too_large",
                                f"frame of {request.frame_bytes} bytes exceeds {c.max_frame_bytes}")
        if request.payload_bytes > c.max_payload_bytes:
            raise RequestTooBig("payload_bytes", "too_large",
                                f"payload of {request.payload_bytes} bytes exceeds {c.max_payload_bytes}")
        if request.modality in self.exempt or request.service:
            return
        rows, length = self._input_shape(request)
        if length > c.max_sequence_length:
            raise RequestTooBig("sequence_length", "too_large",
                                f"input of {length} positions exceeds {c.max_sequence_length}")
        if rows > c.max_batch:
            raise RequestTooBig("batch", "too_large", f"batch of {rows} rows exceeds {c.max_batch}")
        body = request.body
        k = self._largest(body, c.k_keys)
        if k is not None and k > c.max_k:
            raise RequestTooBig("k", "too_large", f"top-k of {k} exceeds {c.max_k}")
        tokens = self._largest(body, c.max_tokens_keys)
        if tokens is not None and tokens > c.max_tokens:
            raise RequestTooBig("max_tokens", "too_large", f"{tokens} tokens to generate exceeds {c.max_tokens}")
        items = max(rows, 1) * max((length or 1) * (k or 0), tokens or 0)
        if items > c.max_response_items:
            raise RequestTooBig("response_size", "too_large",
                                f"the answer asked for has {items} entries, more than {c.max_response_items}")

    def _input_shape(self, request: InboundRequest) -> tuple[int, int]:
        rows, length = 0, 0
        shape = request.shape
        # Only token payloads (integer arrays) are sequences; an image's last axis is not a length.
        if shape and request.dtype.startswith(_TOKEN_DTYPES):
            length = int(shape[-1])
            rows = int(math.prod(shape[:-1])) if len(shape) > 1 else 1
        body = request.body
        for key in self.config.sequence_keys:
            if key in body:
                r, n = sequence_shape(body[key], key)
                rows, length = max(rows, r), max(length, n)
        return rows, length

    @staticmethod
    def _largest(body: Mapping[str, Any], keys: list[str]) -> int | None:
        found = [_count(body[key], key) for key in keys if key in body]
        return max(found) if found else None
