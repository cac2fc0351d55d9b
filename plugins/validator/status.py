"""What a node sees of itself on the chain: its uid, stake, trust, incentive, emission, peers.

Shared by ``tnode status`` and the devnet's live view.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from rich import box
from rich.console import Group
from rich.table import Table
from rich.text import Text
from tnode.interfaces import Metagraph, Neuron

NEURON_FIELDS = ("stake", "rank", "trust", "consensus", "incentive", "dividends", "emission", "validator_trust")


def neuron_dict(n: Neuron) -> dict[str, Any]:
    """A neuron as plain JSON-able values."""
    doc: dict[str, Any] = {"uid": n.uid, "hotkey": n.hotkey, "coldkey": n.coldkey}
    doc.update({f: float(getattr(n, f)) for f in NEURON_FIELDS})
    doc.update(validator_permit=n.validator_permit, last_update=n.last_update, registered_at=n.registered_at,
               active=n.active, peer_id=n.peer_id, addrs=list(n.addrs))
    return doc


def node_status(mg: Metagraph, hotkey: str, *, name: str = "") -> dict[str, Any]:
    """The status document of the node with ``hotkey`` as of metagraph ``mg``.

    ``peers`` are the other uids that published addresses: the nodes this one can reach.
    """
    me = mg.by_hotkey(hotkey)
    return {
        "name": name,
        "block": mg.block,
        "netuid": mg.netuid,
        "hotkey": hotkey,
        "registered": me is not None,
        "neuron": neuron_dict(me) if me else None,
        "subnet": {"n": mg.n, "total_stake": sum(n.stake for n in mg.neurons),
                   "tempo": mg.hyperparameters.tempo},
        "neurons": [neuron_dict(n) for n in mg.neurons],
        "peers": [{"uid": n.uid, "hotkey": n.hotkey, "peer_id": n.peer_id, "addrs": list(n.addrs)}
                  for n in mg.neurons if n.addrs and n.hotkey != hotkey],
    }


def metagraph_table(neurons: Sequence[Mapping[str, Any]], *, title: str = "", labels: Mapping[int, str] | None = None,
                    highlight: int | None = None, compact: bool = False) -> Table:
    """A rich table of neurons (``neuron_dict`` rows), one row per uid.

    ``compact`` leaves out keys and addresses so the table fits an 80-column terminal.
    """
    if compact:
        table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
        columns = ["uid", "name", "stake", "vtrust", "incentive", "dividends", "emission", "updated"]
    else:
        table = Table(title=title, title_justify="left")
        columns = ["uid", "name", "hotkey", "stake", "trust", "vtrust", "incentive", "dividends", "emission",
                   "updated", "peer"]
    short = {"incentive": "incent", "dividends": "divid", "emission": "emiss", "updated": "upd"} if compact else {}
    for col in columns:
        table.add_column(short.get(col, col), justify="left" if col in ("name", "hotkey", "peer") else "right",
                         no_wrap=True, overflow="ellipsis", max_width=18 if col == "name" else None)
    for n in neurons:
        uid = int(n["uid"])
        cells = {
            "uid": str(uid), "name": (labels or {}).get(uid, ""), "hotkey": n["hotkey"][:10] + "…",
            "stake": f"{n['stake']:.1f}" + ("*" if n.get("validator_permit") else ""),
            "trust": f"{n['trust']:.3f}", "vtrust": f"{n['validator_trust']:.3f}",
            "incentive": f"{n['incentive']:.3f}", "dividends": f"{n['dividends']:.3f}",
            "emission": f"{n['emission']:.3f}", "updated": str(n["last_update"]),
            "peer": (n.get("peer_id") or "-")[-10:],
        }
        table.add_row(*(cells[c] for c in columns), style="bold" if uid == highlight else "")
    return table


def render_status(doc: Mapping[str, Any]) -> Group:
    """The human view of :func:`node_status`."""
    me = doc["neuron"]
    head = Text()
    head.append(f"{doc['name'] or 'node'}", style="bold")
    head.append(f"  block {doc['block']}  netuid {doc['netuid']}  hotkey {doc['hotkey'][:16]}…\n")
    if me is None:
        head.append("not registered on this subnet\n", style="yellow")
    else:
        head.append(
            f"uid {me['uid']}  stake {me['stake']:.4f}  trust {me['trust']:.4f}  "
            f"validator trust {me['validator_trust']:.4f}  permit {'yes' if me['validator_permit'] else 'no'}\n"
            f"incentive {me['incentive']:.4f}  dividends {me['dividends']:.4f}  emission {me['emission']:.6f}  "
            f"last update {me['last_update']}  active {'yes' if me['active'] else 'no'}\n")
    head.append(f"subnet: {doc['subnet']['n']} uids, total stake {doc['subnet']['total_stake']:.2f}; "
                f"{len(doc['peers'])} reachable peers")
    table = metagraph_table(doc["neurons"], title="peers on the subnet (* = validator permit)",
                            highlight=me["uid"] if me else None)
    return Group(head, table)
