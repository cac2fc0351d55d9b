"""``[spam.NAME] type = "registered_only"``: only hotkeys registered on the subnet get served."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anyio
from tnode.errors import ConfigError
from tnode.interfaces import InboundRequest

from .common import FilterBase
from .config import RegisteredOnlyConfig
from .metaview import MetagraphView


class RegisteredOnly(FilterBase):
    """Refuses (``unregistered``) senders without a uid, below ``min_stake`` or without a permit.

    Decisions use the cached :class:`MetagraphView`, so an inbound request never waits for the
    chain. Until the first metagraph load succeeds every non-exempt sender is refused: failing open
    would let a flood through exactly when the chain is unreachable.
    """

    type_name = "registered_only"

    def __init__(self, node: Any, name: str, config: RegisteredOnlyConfig) -> None:
        super().__init__(node, name, exempt_modalities=config.exempt_modalities, allow=config.allow)
        if node.chain is None:
            raise ConfigError("registered_only needs a [chain] to read registrations from",
                              key_path=f"spam.{name}", hint='add [chain] with type = "local"')
        self.config = config
        self.view = MetagraphView.of(node)

    async def run(self, *, task_status: Any = anyio.TASK_STATUS_IGNORED) -> None:
        await self.view.start()
        task_status.started()
        await anyio.sleep_forever()

    async def admit(self, request: InboundRequest) -> Callable[[], None] | None:
        """Admit registered (and sufficiently staked) senders; raise TaskError("unregistered") otherwise."""
        if self.waved_through(request):
            return None
        view = self.view
        if not view.loaded:
            raise self.refuse(request, "unregistered", "no_metagraph",
                              "this node has not loaded the metagraph yet; try again shortly")
        standing = view.standing(request.sender)
        if standing is None:
            raise self.refuse(request, "unregistered", "not_registered",
                              f"hotkey holds no uid on subnet (as of block {view.block})")
        if standing.stake < self.config.min_stake:
            raise self.refuse(request, "unregistered", "low_stake",
                              f"uid {standing.uid} holds {standing.stake:g} stake, "
                              f"this node serves {self.config.min_stake:g} or more")
        if self.config.validator_permit_only and not standing.validator_permit:
            raise self.refuse(request, "unregistered", "no_permit", f"uid {standing.uid} has no validator permit")
        self.admitted(request, "registered")
        return None

    def stats(self) -> dict[str, Any]:
        return {**super().stats(), "block": self.view.block, "refreshes": self.view.refreshes}
