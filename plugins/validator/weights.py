"""From per-uid score averages to a weight vector the chain accepts.

Steps: drop the validator's own uid and negative values → normalize (uniform over every other uid
when nothing scored) → pad with the smallest representable weight up to ``min_allowed_weights`` →
cap every share at ``max_weight_limit`` and give the excess to the others in proportion → quantize
to u16 max-upscaled integers (:class:`tnode.weights.WeightVector`), the form chains store and commit
hashes cover. The format itself lives in the core; this module is the validator's policy. The
validator submits nothing while :func:`tells_apart` is false: uniform weights would pay every miner,
a garbage one included, the same.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from tnode.weights import U16_MAX, WeightVector, quantize


class WeightsUnsatisfiable(ValueError):
    """The subnet's rules cannot be met with the uids that exist (e.g. too few uids for the cap)."""


def cap_shares(weights: Sequence[float], limit: float) -> list[float]:
    """Normalize and cap each share at ``limit``, giving excess to uncapped entries in proportion.

    Entries at zero receive excess only when no positive uncapped entry is left.
    """
    n = len(weights)
    if n == 0:
        return []
    if limit * n < 1.0 - 1e-12:
        raise WeightsUnsatisfiable(f"max_weight_limit {limit} needs at least {math.ceil(1 / limit)} uids, have {n}")
    total = sum(weights)
    w = [x / total for x in weights] if total > 0 else [1.0 / n] * n
    capped = [False] * n
    for _ in range(n):
        over = [i for i in range(n) if not capped[i] and w[i] > limit]
        if not over:
            break
        for i in over:
            capped[i] = True
        free = [i for i in range(n) if not capped[i]]
        remaining = 1.0 - limit * sum(capped)
        base = sum(w[i] for i in free)
        for i in range(n):
            if capped[i]:
                w[i] = limit
        if base > 0:
            for i in free:
                w[i] = w[i] / base * remaining
        else:
            for i in free:
                w[i] = remaining / len(free)
    return w


def _counted(score: float) -> float:
    """A score as the weights count it: finite and not negative, else 0."""
    return max(0.0, float(score)) if math.isfinite(score) else 0.0


def tells_apart(scores: Mapping[int, float], *, n: int, own_uid: int | None) -> bool:
    """True when some other uid of the ``n`` has a score the weights count above zero; otherwise
    :func:`compute_weights` could only give every uid the same share."""
    return any(_counted(scores.get(u, 0.0)) > 0 for u in range(n) if u != own_uid)


def compute_weights(
    scores: Mapping[int, float],
    *,
    n: int,
    own_uid: int | None,
    min_allowed_weights: int = 1,
    max_weight_limit: float = 1.0,
) -> WeightVector:
    """The weight vector for a subnet of ``n`` uids from per-uid scores (see the module docstring)."""
    others = [u for u in range(n) if u != own_uid]
    if not others:
        raise WeightsUnsatisfiable("no other uid to weigh")
    raw = [_counted(scores.get(u, 0.0)) for u in others]
    if sum(raw) <= 0:
        raw = [1.0] * len(others)
    needed = min(min_allowed_weights, n)
    if needed > len(others):
        raise WeightsUnsatisfiable(f"min_allowed_weights {needed} exceeds the {len(others)} other uids")
    q = _capped_u16(raw, max_weight_limit)
    missing = needed - sum(1 for v in q if v > 0)
    if missing > 0:
        # Raise the best entries that quantized to zero, and the tiny ones that did not (they could
        # lose out when the cap redistributes), to the smallest weight that survives quantization.
        epsilon = max(raw) * 2.0 / U16_MAX
        keep = [i for i, v in enumerate(q) if v > 0]
        extra = sorted((i for i, v in enumerate(q) if v == 0), key=lambda i: (-raw[i], i))[:missing]
        for i in keep + extra:
            raw[i] = max(raw[i], epsilon)
        q = _capped_u16(raw, max_weight_limit)
    pairs = [(u, v) for u, v in zip(others, q, strict=True) if v > 0]
    return WeightVector(tuple(u for u, _ in pairs), tuple(v for _, v in pairs))


def _capped_u16(raw: list[float], max_weight_limit: float) -> list[int]:
    """Cap, then quantize; tighten the cap when rounding pushed the largest share over it."""
    limit = max_weight_limit
    for _ in range(8):
        q = quantize(cap_shares(raw, limit))
        total = sum(q)
        if total == 0:
            raise WeightsUnsatisfiable("all weights quantize to zero")
        excess = max(q) / total - max_weight_limit
        if excess <= 0 or sum(1 for v in q if v) <= 1:
            return q
        limit = max(1.0 / len(raw), limit - excess - 1.0 / U16_MAX)
    raise WeightsUnsatisfiable(f"cannot quantize under max_weight_limit {max_weight_limit}")
