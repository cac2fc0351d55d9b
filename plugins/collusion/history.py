"""The bounded history of suspects a detector keeps, and the JSON file ``tnode collusion report``
reads (``<data_dir>/collusion/<detector>.json``)."""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any


@dataclass
class Suspect:
    """One finding: a group of hotkeys and the rule it broke, since when and how strongly."""

    members: tuple[str, ...]
    kind: str
    score: float
    evidence: str
    first_seen: float  # unix seconds
    last_seen: float
    count: int = 1
    uids: tuple[int, ...] = ()
    action: str = "report"

    def to_json(self) -> dict[str, Any]:
        """The record as plain JSON types."""
        out = asdict(self)
        out["members"], out["uids"] = list(self.members), list(self.uids)
        return out


class SuspectHistory:
    """Suspects keyed by (kind, members), at most ``capacity``: the least recently seen goes first."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.records: dict[tuple[str, tuple[str, ...]], Suspect] = {}

    def add(self, members: tuple[str, ...], kind: str, score: float, evidence: str, *,
            uids: tuple[int, ...] = (), action: str = "report", now: float | None = None) -> Suspect:
        """Record a finding (a repeat updates score, evidence and last_seen) and return its record."""
        now = time.time() if now is None else now
        key = (kind, tuple(sorted(members)))
        record = self.records.get(key)
        if record is None:
            record = Suspect(key[1], kind, score, evidence, now, now, 1, uids, action)
            self.records[key] = record
            if len(self.records) > self.capacity:
                oldest = min(self.records, key=lambda k: self.records[k].last_seen)
                del self.records[oldest]
        else:
            record.score, record.evidence, record.last_seen, record.action = score, evidence, now, action
            record.count += 1
            record.uids = uids or record.uids
        return record

    def suspects(self) -> list[Suspect]:
        """Every record, strongest first."""
        return sorted(self.records.values(), key=lambda r: (-r.score, r.kind, r.members))

    def save(self, path: Path, detector: str, detector_type: str) -> None:
        """Write the history atomically (a reader never sees half a file)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        doc = {"detector": detector, "type": detector_type, "saved_at": time.time(),
               "suspects": [r.to_json() for r in self.suspects()]}
        tmp.write_text(json.dumps(doc, indent=1))
        os.replace(tmp, path)


def read_reports(directory: Path) -> list[dict[str, Any]]:
    """Every detector's saved history under ``directory``, by detector name.

    :raises ValueError: naming the file when one is not a detector history.
    """
    out: list[dict[str, Any]] = []
    if not directory.is_dir():
        return out
    for path in sorted(directory.glob("*.json")):
        try:
            doc = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ValueError(f"{path}: not a collusion history ({exc})") from None
        if not isinstance(doc, dict) or not isinstance(doc.get("suspects"), list):
            raise ValueError(f"{path}: not a collusion history (expected an object with a 'suspects' list)")
        out.append(doc)
    return out
