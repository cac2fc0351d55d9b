"""The devnet's result: per-uid outcome, models, held-out quality and the checks on them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from tnode.interfaces import Metagraph

from ..status import neuron_dict


def ranks(values: Sequence[float]) -> np.ndarray:
    """Ranks 1..n with ties given their average rank."""
    arr = np.asarray(values, dtype=np.float64)
    order = np.argsort(arr, kind="mergesort")
    out = np.empty(len(arr))
    i = 0
    while i < len(arr):
        j = i
        while j + 1 < len(arr) and arr[order[j + 1]] == arr[order[i]]:
            j += 1
        out[order[i:j + 1]] = (i + j) / 2.0 + 1.0
        i = j + 1
    return out


def spearman(a: Sequence[float], b: Sequence[float]) -> float:
    """Spearman rank correlation (Pearson correlation of the ranks); NaN when either side is constant."""
    if len(a) != len(b) or len(a) < 2:
        return float("nan")
    ra, rb = ranks(a), ranks(b)
    if ra.std() == 0 or rb.std() == 0:
        return float("nan")
    return float(np.corrcoef(ra, rb)[0, 1])


def build_report(
    mg: Metagraph,
    *,
    names: Mapping[str, str],
    roles: Mapping[str, str],
    models: Mapping[str, str],
    heldout_loss: Mapping[str, float],
    emission_total: Mapping[int, float],
    epochs: int,
    seconds: float,
    model_order: Sequence[str],
) -> dict[str, Any]:
    """The report document. ``names``/``roles``/``models`` are keyed by hotkey; losses by model kind."""
    rows = []
    for n in mg.neurons:
        row = neuron_dict(n)
        row.update(name=names.get(n.hotkey, ""), role=roles.get(n.hotkey, ""), model=models.get(n.hotkey, ""),
                   emission_total=float(emission_total.get(n.uid, 0.0)))
        if row["model"]:
            row["heldout_loss"] = heldout_loss.get(row["model"])
        rows.append(row)
    miners = [r for r in rows if r["role"] == "miner"]
    total_emission = sum(emission_total.values())
    by_model: dict[str, dict[str, float]] = {}
    for r in miners:
        m = by_model.setdefault(r["model"], {"incentive": 0.0, "emission_total": 0.0, "miners": 0})
        m["incentive"] += r["incentive"]
        m["emission_total"] += r["emission_total"]
        m["miners"] += 1
    for m in by_model.values():
        m["emission_share"] = m["emission_total"] / total_emission if total_emission else 0.0
        m["incentive_mean"] = m["incentive"] / m["miners"]
    scored = [r for r in miners if r.get("heldout_loss") is not None]
    rho = spearman([r["incentive"] for r in scored], [-r["heldout_loss"] for r in scored])
    present = [m for m in model_order if m in by_model]
    means = [by_model[m]["incentive_mean"] for m in present]
    ordered = all(a > b for a, b in zip(means, means[1:], strict=False))
    # Spam models are named "garbage" (text) or "<modality>_garbage".
    garbage_share = sum(m["emission_share"] for k, m in by_model.items() if k == "garbage" or k.endswith("_garbage"))
    return {
        "block": mg.block,
        "epochs": epochs,
        "seconds": round(seconds, 1),
        "neurons": rows,
        "models": by_model,
        "checks": {
            "incentive_order": present,
            "incentive_ordered": ordered,
            "spearman_incentive_vs_heldout_quality": rho,
            "garbage_emission_share": garbage_share,
            "passed": bool(ordered and rho >= 0.9 and garbage_share <= 0.01),
        },
    }
