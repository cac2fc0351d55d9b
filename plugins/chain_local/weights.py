"""Weight vectors: u16 quantization, the commit-reveal hash, and the rules a vector must meet.

Like subtensor, weights are stored as u16 integers max-upscaled so the largest weight of a vector
is 65535: ``q_i = round(w_i / max(w) · 65535)``. Quantization happens before signing (the
transaction carries the integers), so the ledger stores exactly what was signed; the ledger
re-applies the max-upscale, which leaves an already-upscaled vector unchanged.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence

from tnode.errors import ChainError

from .codec import h256

U16_MAX = 65535
COMMIT_DOMAIN = b"tnode-commit-v1\n"


def quantize(weights: Sequence[float]) -> list[int]:
    """Float weights → u16 max-upscaled integers; raises ``ChainError("invalid_weights")``."""
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


def commit_hash(hotkey: str, uids: Sequence[int], weights_u16: Sequence[int], salt: str, version_key: int) -> str:
    """The commit-reveal hash, hex.

    H(b"tnode-commit-v1\\n" ‖ hotkey (32 raw bytes) ‖ count u32 BE ‖ each uid u16 BE ‖ each weight
    u16 BE ‖ salt length u32 BE ‖ salt UTF-8 ‖ version_key u64 BE), H = BLAKE2b-256. Weights are
    the quantized values (:func:`quantize`).
    """
    if len(uids) != len(weights_u16):
        raise ChainError("weights_length_mismatch", "uids and weights differ in length")
    salt_bytes = salt.encode()
    try:
        body = (
            bytes.fromhex(hotkey)
            + struct.pack(">I", len(uids))
            + struct.pack(f">{len(uids)}H", *uids)
            + struct.pack(f">{len(weights_u16)}H", *weights_u16)
            + struct.pack(">I", len(salt_bytes))
            + salt_bytes
            + struct.pack(">Q", version_key)
        )
    except (struct.error, ValueError) as exc:
        raise ChainError("invalid_weights", f"cannot encode the commit: {exc}") from None
    return h256(COMMIT_DOMAIN, body).hex()


def commit_hash_for(hotkey: str, uids: Sequence[int], weights: Sequence[float], salt: str, version_key: int = 0) -> str:
    """:func:`commit_hash` of float weights (quantized the way ``reveal_weights`` quantizes them)."""
    return commit_hash(hotkey, list(uids), quantize(weights), salt, version_key)


def check_vector(
    uids: Sequence[int],
    values: Sequence[int],
    *,
    n: int,
    version_key: int,
    min_allowed_weights: int,
    max_weight_limit: float,
    weights_version: int,
) -> list[tuple[int, int]]:
    """Validate a quantized vector against the subnet's rules; returns sorted non-zero (uid, u16) pairs."""
    if len(uids) != len(values):
        raise ChainError("weights_length_mismatch", f"{len(uids)} uids but {len(values)} weights")
    if version_key < weights_version:
        raise ChainError("incorrect_weights_version",
                         f"version_key {version_key} is below the subnet's weights_version {weights_version}")
    if len(set(uids)) != len(uids):
        raise ChainError("duplicate_uids", "each uid may appear once")
    for uid in uids:
        if not isinstance(uid, int) or isinstance(uid, bool) or not 0 <= uid < n:
            raise ChainError("uid_out_of_range", f"uid {uid!r} is not in 0..{n - 1}")
    for v in values:
        if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v <= U16_MAX:
            raise ChainError("invalid_weights", f"weight {v!r} is not a u16 integer")
    scaled = max_upscale(values)
    pairs = sorted((u, w) for u, w in zip(uids, scaled, strict=True) if w > 0)
    needed = min(min_allowed_weights, n)
    if len(pairs) < needed:
        raise ChainError("too_few_weights", f"{len(pairs)} non-zero weights, the subnet requires {needed}")
    total = sum(w for _, w in pairs)
    if total and len(pairs) > 1:
        share = max(w for _, w in pairs) / total
        if share > max_weight_limit + 1.0 / U16_MAX:
            raise ChainError("max_weight_exceeded",
                             f"largest weight is {share:.4f} of the total; the limit is {max_weight_limit:.4f}")
    return pairs


def pack_u16(values: Sequence[int]) -> bytes:
    return struct.pack(f"<{len(values)}H", *values)


def unpack_u16(blob: bytes) -> list[int]:
    return list(struct.unpack(f"<{len(blob) // 2}H", blob))
