"""Adversaries in the devnet (``tnode devnet --adversaries relay,noisy-relay,lazy,copier,cabal``).

Each adversary is an ordinary node whose model or validator type is an attacker's (the collusion
plugin's ``relay``, ``noisy-relay`` and ``lazy`` models, ``copier`` and ``cabal`` validators, found
through the component registry like any type). Placing adversaries also places an honest twin: a
second miner serving the same model as an honest one, which the detectors must leave alone.

After the run, :func:`adversary_checks` reads what the detectors found (the validators' and the
observer's histories) and adds to the report's checks: every adversary flagged, honest nodes not
flagged, relaying and lazy miners paid at most 1 % of the miners' emission, a copier's dividends per
unit of stake below every honest validator's.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

MINER_ADVERSARIES = ("relay", "noisy-relay", "lazy")
VALIDATOR_ADVERSARIES = {"copier": 1, "cabal": 2}  # type -> nodes placed
ADVERSARIES = (*MINER_ADVERSARIES, *VALIDATOR_ADVERSARIES)
# The detector kinds that catch each adversary.
CAUGHT_BY = {"relay": ("relay",), "noisy-relay": ("relay",), "lazy": ("lazy",), "copier": ("weight_copy",),
             "cabal": ("cabal",)}
PAID_AT_MOST = 0.01  # of the miners' emission, for relaying and lazy miners
WARMUP_EPOCHS = 5  # epochs not counted while the detectors gather their first tasks and epochs (weight_copy: 4)
SUMMARY_SECONDS = 5.0  # detectors save their history this often in a devnet with adversaries
OBSERVER_DETECTORS = {"weight_copy": {"type": "weight_copy", "poll_interval": 1.0, "summary_seconds": SUMMARY_SECONDS},
                      "cabal": {"type": "cabal", "poll_interval": 1.0, "summary_seconds": SUMMARY_SECONDS}}


CHAIN_VERDICT = {"action": "scale", "factor": 0.1}


def parse_adversaries(text: str) -> tuple[str, ...]:
    """``relay,lazy,copier`` → the adversary types, in order; ValueError naming a wrong one."""
    names = tuple(a.strip() for a in text.split(",") if a.strip())
    unknown = [a for a in names if a not in ADVERSARIES]
    if unknown:
        raise ValueError(f"--adversaries: unknown adversary {', '.join(unknown)} (known: {', '.join(ADVERSARIES)})")
    if len(set(names)) != len(names):
        raise ValueError(f"--adversaries names one adversary twice ({text!r})")
    return names


def extra_nodes(adversaries: tuple[str, ...]) -> int:
    """Nodes the adversaries add: one per miner adversary, the validator adversaries' members, a twin."""
    if not adversaries:
        return 0
    return 1 + sum(1 for a in adversaries if a in MINER_ADVERSARIES) + sum(
        VALIDATOR_ADVERSARIES.get(a, 0) for a in adversaries)


def extra_validators(adversaries: tuple[str, ...]) -> int:
    """Validator nodes the adversaries add."""
    return sum(VALIDATOR_ADVERSARIES.get(a, 0) for a in adversaries)


def twin_model(cycle: tuple[str, ...]) -> str:
    """The model the honest twin serves: the n-gram when the devnet has one (cheap), else the first."""
    return "ngram" if "ngram" in cycle else cycle[0]


def place(adversaries: tuple[str, ...], honest_miners: list[Any], honest_validators: list[Any],
          spec: Callable[..., Any], cycle: tuple[str, ...]) -> tuple[list[Any], list[Any]]:
    """Plan the twin and the adversaries: (extra miners, extra validators), each a NodeSpec with
    ``adversary`` set (the twin's is "" and its ``twin_of`` names the miner it doubles)."""
    if not adversaries:
        return [], []
    miners: list[Any] = []
    model = twin_model(cycle)
    original = next((m for m in honest_miners if m.model == model), None)
    twin = spec(f"miner{len(honest_miners)}", "miner", model)
    twin.twin_of = original.name if original is not None else ""
    miners.append(twin)
    for kind in adversaries:
        if kind in MINER_ADVERSARIES:
            node = spec(f"{kind}0", "miner", kind)
            node.adversary = kind
            miners.append(node)
    validators: list[Any] = []
    for kind in adversaries:
        for i in range(VALIDATOR_ADVERSARIES.get(kind, 0)):
            node = spec(f"{kind}{i}", "validator")
            node.adversary = kind
            validators.append(node)
    return miners, validators


def adversary_doc(plan: Any, node: Any, doc: dict[str, Any]) -> dict[str, Any]:
    """Turn an honest node.toml document into the adversary's (changes ``doc`` in place and returns it)."""
    kind = getattr(node, "adversary", "")
    if node.role == "validator" and plan.options.adversaries and "collusion" in doc:
        for section in doc["collusion"].values():
            section["summary_seconds"] = SUMMARY_SECONDS
        # Copies are the relay detector's to judge, by an order-free rule: the guard zeroes none, so
        # honest twins keep every answer whoever wins each latency race (docs/collusion.md).
        for scorer in doc.get("scorers", {}).values():
            if scorer.get("type") == "garbage_guard":
                scorer["duplicates"] = "off"
    if node.role == "authority" and plan.options.adversaries and getattr(plan.options, "chain", "local") == "local":
        # The chain acts on weight copying: a flagged validator's stake counts a tenth in epochs.
        doc["collusion"] = {"weight_copy": {**OBSERVER_DETECTORS["weight_copy"], **CHAIN_VERDICT}}
    if not kind:
        return doc
    honest = [m for m in plan.miners if not getattr(m, "adversary", "")]
    if kind in ("relay", "noisy-relay"):
        # The relay forwards to the best honest miner (the first of the cycle).
        doc["models"] = {"main": {"type": kind, "source": honest[0].hotkey.public_hex}}
    elif kind == "lazy":
        doc["models"] = {"main": {"type": "lazy", "model": "honest"},
                         "honest": {"type": "ngram", "dataset": "docs"}}
        doc["datasets"] = {"docs": {"type": "python_docs"}}
    elif kind in VALIDATOR_ADVERSARIES:
        validator: dict[str, Any] = {"type": kind, "step_interval": plan.options.block_time}
        if kind == "cabal":
            validator["boost_target"] = cabal_target(honest).hotkey.public_hex
        doc["validator"] = validator  # the core's topology wants scorers beside any validator: they stay, unused
        doc.pop("collusion", None)
    return doc


def cabal_target(honest: list[Any]) -> Any:
    """The miner a cabal pushes: the weakest honest one that is not spam (the uniform miner by default)."""
    useful = [m for m in honest if not m.twin_of and m.model != "garbage" and not m.model.endswith("_garbage")]
    return (useful or honest)[-1]


# --------------------------------------------------------------------------- after the run
def read_suspects(dirs: list[Path]) -> list[dict[str, Any]]:
    """Every suspect saved under ``<dir>/collusion/*.json`` of the given data directories."""
    out: list[dict[str, Any]] = []
    for d in dirs:
        for path in sorted((d / "collusion").glob("*.json")):
            try:
                doc = json.loads(path.read_text())
            except (OSError, json.JSONDecodeError):
                continue
            for s in doc.get("suspects", []):
                out.append({**s, "detector": doc.get("detector", path.stem), "node": d.parent.name})
    return out


def flagged(suspects: list[dict[str, Any]]) -> dict[str, set[str]]:
    """hotkey → the kinds it was flagged for (operator findings excluded: they group, not accuse)."""
    out: dict[str, set[str]] = {}
    for s in suspects:
        if s.get("kind", "").startswith("shared_"):
            continue
        for h in s.get("members", []):
            out.setdefault(h, set()).add(str(s["kind"]))
    return out


def adversary_checks(plan: Any, report: Mapping[str, Any], suspects: list[dict[str, Any]]) -> dict[str, Any]:
    """The adversary checks of one run (see the module docstring)."""
    marks = flagged(suspects)
    rows = {r["hotkey"]: r for r in report["neurons"]}
    nodes = [*plan.validators, *plan.miners]
    adversaries = [n for n in nodes if getattr(n, "adversary", "")]
    honest = [n for n in nodes if not getattr(n, "adversary", "")]
    caught = {n.name: bool(marks.get(n.hotkey.public_hex, set()) & set(CAUGHT_BY[n.adversary])) for n in adversaries}
    false = sorted(n.name for n in honest if marks.get(n.hotkey.public_hex))
    true_positives = sum(caught.values())
    precision = true_positives / (true_positives + len(false)) if true_positives + len(false) else 1.0
    recall = true_positives / len(adversaries) if adversaries else 1.0
    miner_total = sum(r["emission_total"] for r in report["neurons"] if r["role"] == "miner")
    paid = {n.name: (rows[n.hotkey.public_hex]["emission_total"] / miner_total if miner_total else 0.0)
            for n in adversaries if n.adversary in MINER_ADVERSARIES and n.hotkey.public_hex in rows}

    def per_stake(node: Any) -> float:
        row = rows.get(node.hotkey.public_hex)
        return row["emission_total"] / row["stake"] if row and row["stake"] > 0 else 0.0

    honest_validators = {v.name: per_stake(v) for v in plan.validators if not getattr(v, "adversary", "")}
    copiers = {v.name: per_stake(v) for v in plan.validators if getattr(v, "adversary", "") == "copier"}
    floor = min(honest_validators.values()) if honest_validators else 0.0
    copier_ok = all(c < floor for c in copiers.values())
    twins = {m.name: m.twin_of for m in plan.miners if getattr(m, "twin_of", "")}
    rho = report["checks"]["spearman_incentive_vs_heldout_quality"]
    passed = (recall >= 0.9 and precision >= 0.9 and all(p <= PAID_AT_MOST for p in paid.values())
              and copier_ok and rho == rho and rho >= 0.9)
    return {
        "adversaries_flagged": caught,
        "adversary_recall": recall,
        "adversary_precision": precision,
        "honest_flagged": false,
        "honest_twins": twins,
        "adversary_miner_emission_share": paid,
        "adversary_miners_paid_at_most_1pct": all(p <= PAID_AT_MOST for p in paid.values()),
        "validator_dividends_per_stake": {**honest_validators, **copiers},
        "copier_below_every_honest_validator": copier_ok if copiers else None,
        "adversary_checks_passed": bool(passed),
    }


def adversary_report(plan: Any, report: dict[str, Any], console: Any) -> dict[str, Any]:
    """Read the suspects the validators and the observer saved, add them to ``report`` and return
    the adversary checks (printing a one-line summary)."""
    dirs = [v.dir / "data" for v in plan.validators if not getattr(v, "adversary", "")]
    dirs.append(plan.options.run_dir / "observer")
    suspects = read_suspects(dirs)
    report["collusion_suspects"] = suspects
    checks = adversary_checks(plan, report, suspects)
    paid = ", ".join(f"{k} {v:.4%}" for k, v in checks["adversary_miner_emission_share"].items())
    per_stake = ", ".join(f"{k} {v:.3g}" for k, v in checks["validator_dividends_per_stake"].items())
    console.print(f"adversaries flagged {checks['adversaries_flagged']}; precision {checks['adversary_precision']:.2f}; "
                  f"honest flagged {checks['honest_flagged']}; paid {paid or '-'}; "
                  f"validators' emission per stake {per_stake}")
    return checks
