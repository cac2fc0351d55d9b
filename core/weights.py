"""Weight vectors in the form chains store them: u16 integers, max-upscaled, with a commit hash.

Like subtensor, a weight vector is a list of ``(uid, u16)`` pairs whose largest value is 65535:
``q_i = round(w_i / max(w) · 65535)`` (:func:`quantize`). A validator quantizes before it signs, so
a chain stores exactly what was signed; a chain re-applies the integer max-upscale
(:func:`max_upscale`), which leaves an already-upscaled vector unchanged.

:class:`WeightVector` is the one value validators hand to
:meth:`tnode.interfaces.ChainBackend.set_weights` / ``reveal_weights`` and chains check with
:meth:`WeightVector.validate`. Its :meth:`WeightVector.commit_hash` is the commit-reveal hash both
sides compute, byte for byte:

``BLAKE2b-256(b"tnode-commit-v1\\n" ‖ hotkey (32 raw bytes) ‖ count u32 BE ‖ each uid u16 BE ‖
each weight u16 BE ‖ salt length u32 BE ‖ salt UTF-8 ‖ version_key u64 BE)``, hex.

Malformed vectors raise :class:`tnode.errors.ChainError` with the code a chain refuses them with:
``weights_length_mismatch``, ``duplicate_uids``, ``uid_out_of_range``, ``invalid_weights``,
``too_few_weights``, ``max_weight_exceeded``, ``incorrect_weights_version``.
"""

from __future__ import annotations

import hashlib
import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .errors import ChainError

U16_MAX = 65535
"""The largest weight of a max-upscaled vector."""
COMMIT_DOMAIN = b"tnode-commit-v1\n"
"""Domain prefix of the commit hash, so it can never collide with another tnode hash."""
MAX_SALT_BYTES = 1024
"""The longest salt (UTF-8) a commit may use."""


def quantize(weights: Sequence[float]) -> list[int]:
    """Float weights → u16 max-upscaled integers (the largest becomes 65535; all zero stays zero).

    :raises ChainError: ``invalid_weights`` for a negative, infinite or NaN weight.
    """
    values = [float(w) for w in weights]
    for w in values:
        if not math.isfinite(w) or w < 0:
            raise ChainError("invalid_weights", f"weights must be finite and non-negative, got {w!r}")
    top = max(values, default=0.0)
    if top <= 0:
        return [0] * len(values)
    return [min(U16_MAX, int(round(w / top * U16_MAX))) for w in values]


def max_upscale(values: Sequence[int]) -> list[int]:
    """Integer max-upscale to u16 (round half up); idempotent on already-upscaled vectors."""
    top = max(values, default=0)
    if top <= 0:
        return [0] * len(values)
    return [(v * U16_MAX + top // 2) // top for v in values]


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True, slots=True)
class WeightVector:
    """Quantized weights: ``values[i]`` (u16) is the weight of ``uids[i]``.

    Construction checks the shape only (equal lengths, integers, u16 range, no uid twice);
    :meth:`validate` checks a subnet's rules.
    """

    uids: tuple[int, ...]
    values: tuple[int, ...]

    def __post_init__(self) -> None:
        # Accept any sequence (a decoded JSON list, say) but store tuples, so the value is hashable.
        object.__setattr__(self, "uids", tuple(self.uids))
        object.__setattr__(self, "values", tuple(self.values))
        if len(self.uids) != len(self.values):
            raise ChainError("weights_length_mismatch", f"{len(self.uids)} uids but {len(self.values)} weights")
        for uid in self.uids:
            if not _is_int(uid) or not 0 <= uid <= U16_MAX:
                raise ChainError("uid_out_of_range", f"uid {uid!r} is not an integer in 0..{U16_MAX}")
        for v in self.values:
            if not _is_int(v) or not 0 <= v <= U16_MAX:
                raise ChainError("invalid_weights", f"weight {v!r} is not a u16 integer")
        if len(set(self.uids)) != len(self.uids):
            raise ChainError("duplicate_uids", "each uid may appear once")

    @classmethod
    def from_floats(cls, uids: Sequence[int], weights: Sequence[float]) -> WeightVector:
        """Quantize float weights (any scale) for ``uids``; see :func:`quantize`."""
        if len(uids) != len(weights):
            raise ChainError("weights_length_mismatch", f"{len(uids)} uids but {len(weights)} weights")
        return cls(tuple(uids), tuple(quantize(weights)))

    @property
    def shares(self) -> tuple[float, ...]:
        """Each weight as a fraction of the total (all zero when the total is zero)."""
        total = sum(self.values)
        return tuple(v / total for v in self.values) if total else tuple(0.0 for _ in self.values)

    def max_upscaled(self) -> WeightVector:
        """The stored form: non-zero pairs only, sorted by uid, max-upscaled."""
        pairs = sorted((u, w) for u, w in zip(self.uids, max_upscale(self.values), strict=True) if w > 0)
        return WeightVector(tuple(u for u, _ in pairs), tuple(w for _, w in pairs))

    def validate(
        self,
        *,
        n: int,
        min_allowed_weights: int = 0,
        max_weight_limit: float = 1.0,
        version_key: int = 0,
        weights_version: int = 0,
    ) -> WeightVector:
        """Check the vector against a subnet of ``n`` uids; returns :meth:`max_upscaled`.

        Every uid must be below ``n``; at least ``min(min_allowed_weights, n)`` weights must be
        non-zero; with more than one, no share may exceed ``max_weight_limit`` (plus one u16 step,
        the rounding quantization may add); ``version_key`` must be at least ``weights_version``.

        :raises ChainError: with the code of the first rule broken.
        """
        if version_key < weights_version:
            raise ChainError("incorrect_weights_version",
                             f"version_key {version_key} is below the subnet's weights_version {weights_version}")
        for uid in self.uids:
            if uid >= n:
                raise ChainError("uid_out_of_range", f"uid {uid} is not in 0..{n - 1}")
        stored = self.max_upscaled()
        needed = min(min_allowed_weights, n)
        if len(stored.uids) < needed:
            raise ChainError("too_few_weights",
                             f"{len(stored.uids)} non-zero weights, the subnet requires {needed}")
        total = sum(stored.values)
        if total and len(stored.values) > 1:
            share = max(stored.values) / total
            if share > max_weight_limit + 1.0 / U16_MAX:
                raise ChainError("max_weight_exceeded",
                                 f"largest weight is {share:.4f} of the total; the limit is {max_weight_limit:.4f}")
        return stored

    def commit_hash(self, hotkey: str, salt: str, version_key: int = 0) -> str:
        """The commit-reveal hash (hex) of this vector for ``hotkey`` (hex public key); see the module
        docstring for the bytes. Both the committing validator and the chain call this.

        :raises ChainError: ``invalid_args`` for a hotkey that is not 32 bytes of hex, a salt over
            :data:`MAX_SALT_BYTES` or a version_key outside u64.
        """
        try:
            key = bytes.fromhex(hotkey)
        except (TypeError, ValueError):
            key = b""
        if len(key) != 32:
            raise ChainError("invalid_args", "hotkey must be 64 hex characters")
        salt_bytes = salt.encode()
        if len(salt_bytes) > MAX_SALT_BYTES:
            raise ChainError("invalid_args", f"salt must be at most {MAX_SALT_BYTES} bytes")
        if not _is_int(version_key) or not 0 <= version_key < 2**64:
            raise ChainError("invalid_args", "version_key must be an integer in 0..2^64-1")
        count = len(self.uids)
        hasher = hashlib.blake2b(digest_size=32)
        hasher.update(COMMIT_DOMAIN)
        hasher.update(key)
        hasher.update(struct.pack(">I", count))
        hasher.update(struct.pack(f">{count}H", *self.uids))
        hasher.update(struct.pack(f">{count}H", *self.values))
        hasher.update(struct.pack(">I", len(salt_bytes)))
        hasher.update(salt_bytes)
        hasher.update(struct.pack(">Q", version_key))
        return hasher.hexdigest()
