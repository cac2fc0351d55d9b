"""A cached view of the metagraph for admission decisions, refreshed at most once per block.

Filters look a sender up on every inbound request, so the lookup must be a dict access, never a
chain call. One view is shared by all anti-spam components of a node: it subscribes to
BlockProduced and reloads the metagraph when a block newer than the one it loaded for arrives.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import Any

import anyio
import structlog
from tnode.errors import TnodeError
from tnode.events import BlockProduced
from tnode.interfaces import Metagraph

log = structlog.get_logger("tnode.antispam")


@dataclass(frozen=True, slots=True)
class Standing:
    """What admission needs to know about one registered hotkey."""

    uid: int
    stake: float
    validator_permit: bool


class MetagraphView:
    """Hotkey → standing, uid → hotkey, as of the last block seen."""

    _shared: weakref.WeakKeyDictionary[Any, MetagraphView] = weakref.WeakKeyDictionary()

    def __init__(self, chain: Any, bus: Any) -> None:
        self.chain = chain
        self.bus = bus
        self.block = -1  # block of the loaded metagraph; -1 until the first load
        self.refreshes = 0
        self.failures = 0
        self._requested = -1  # newest block a refresh was started for
        self._by_hotkey: dict[str, Standing] = {}
        self._hotkey_of: dict[int, str] = {}
        self._subscribed = False
        self._lock = anyio.Lock()

    @classmethod
    def of(cls, node: Any) -> MetagraphView:
        """The view shared by every anti-spam component of ``node``."""
        view = cls._shared.get(node)
        if view is None:
            view = cls(node.chain, node.bus)
            cls._shared[node] = view
        return view

    @property
    def loaded(self) -> bool:
        return self.block >= 0

    # ------------------------------------------------------------------ lookups
    def standing(self, hotkey: str) -> Standing | None:
        return self._by_hotkey.get(hotkey)

    def stake(self, hotkey: str) -> float:
        s = self._by_hotkey.get(hotkey)
        return s.stake if s is not None else 0.0

    def hotkey_of(self, uid: int) -> str | None:
        return self._hotkey_of.get(uid)

    def stake_of_uid(self, uid: int) -> float:
        hotkey = self._hotkey_of.get(uid)
        return self.stake(hotkey) if hotkey is not None else 0.0

    # ------------------------------------------------------------------ refresh
    async def start(self) -> None:
        """Subscribe to blocks (once) and load the metagraph if it is not loaded yet.

        A chain that cannot answer now is retried at the next block; until then lookups find
        nobody registered.
        """
        if not self._subscribed:
            self._subscribed = True
            # drop_newest: a slow refresh must never hold up the chain's block publication; a
            # dropped block is caught up by the next one.
            self.bus.subscribe(BlockProduced, self._on_block, name="antispam-metagraph", maxsize=4,
                               when_full="drop_newest")
        if not self.loaded:
            await self.refresh()

    async def _on_block(self, event: BlockProduced) -> None:
        if event.number <= self._requested or event.number <= self.block:
            return
        self._requested = event.number
        await self.refresh()

    async def refresh(self) -> bool:
        """Load the metagraph now; returns False (and keeps the old view) when the chain fails."""
        async with self._lock:
            try:
                mg: Metagraph = await self.chain.metagraph()
            except (TnodeError, OSError, TimeoutError) as exc:
                self.failures += 1
                log.warning("cannot refresh the metagraph for anti-spam", error=f"{type(exc).__name__}: {exc}")
                return False
            self.load(mg)
            return True

    def load(self, mg: Metagraph) -> None:
        """Replace the view with ``mg`` (older metagraphs than the loaded one are ignored)."""
        if mg.block < self.block:
            return
        self._by_hotkey = {n.hotkey: Standing(n.uid, float(n.stake), bool(n.validator_permit)) for n in mg.neurons}
        self._hotkey_of = {n.uid: n.hotkey for n in mg.neurons}
        self.block = mg.block
        self._requested = max(self._requested, mg.block)
        self.refreshes += 1
