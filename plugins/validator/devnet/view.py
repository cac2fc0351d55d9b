"""The devnet's live view: the metagraph, refreshed every block, with each node's role and model."""

from __future__ import annotations

from collections.abc import Mapping

from rich.console import Group
from rich.text import Text
from tnode.interfaces import Metagraph

from ..status import metagraph_table, neuron_dict


def devnet_view(mg: Metagraph, *, labels: Mapping[str, str], phase: str, epochs_done: int, epochs_wanted: int,
                emission_total: Mapping[int, float], notes: list[str]) -> Group:
    """One frame of the live view; ``labels`` maps hotkeys to "name (model)"."""
    tempo = mg.hyperparameters.tempo
    head = Text()
    head.append("tnode devnet", style="bold")
    head.append(f"  block {mg.block}")
    if tempo:
        head.append(f"  next epoch in {tempo - mg.block % tempo} blocks")
    goal = f"/{epochs_wanted}" if epochs_wanted else ""
    head.append(f"  epochs counted {epochs_done}{goal}  [{phase}]\n")
    total = sum(emission_total.values())
    if total:
        shares = sorted(((emission_total.get(n.uid, 0.0) / total, labels.get(n.hotkey, str(n.uid)))
                         for n in mg.neurons), reverse=True)
        head.append("emission so far: " + ", ".join(f"{name} {share:.1%}" for share, name in shares[:6]) + "\n")
    for note in notes[-3:]:
        head.append(note + "\n", style="yellow")
    rows = [neuron_dict(n) for n in mg.neurons]
    uid_labels = {n.uid: labels.get(n.hotkey, "") for n in mg.neurons}
    return Group(head, metagraph_table(rows, labels=uid_labels, title="metagraph (* = validator permit)",
                                       compact=True))
