"""tnode plugin: collusion detectors (relaying and copying miners, lazy miners, shared operators,
weight-copying validators, cabals, self-dealing), ``tnode collusion report``, and the adversaries
they are tested against (``relay``, ``noisy-relay`` and ``lazy`` models; ``copier`` and ``cabal``
validators), which ``tnode devnet --adversaries`` places."""

from __future__ import annotations

from typing import Any

import tnode

from .config import CabalConfig, LazyConfig, OperatorConfig, RelayConfig, SelfDealingConfig, WeightCopyConfig


@tnode.hookimpl
def tnode_add_component_kinds(declare: Any) -> None:
    # Detectors start after the validator: they read its task rounds and it reads their verdicts, both on the bus.
    declare(kind="collusion_detector", section="collusion", after="validator",
            description="Watches task rounds or the chain for groups of hotkeys acting as one.")


@tnode.hookimpl
def tnode_register_components(register: Any) -> None:
    from .miners import LazyDetector, OperatorDetector, RelayDetector
    from .validators import CabalDetector, SelfDealingDetector, WeightCopyDetector

    kind = "collusion_detector"
    register(kind=kind, type="relay", factory=RelayDetector, schema=RelayConfig,
             description="Miners answering the same tasks alike, one always later (relays, copies); twins left alone.")
    register(kind=kind, type="lazy", factory=LazyDetector, schema=LazyConfig,
             description="Miners whose per-task scores fall in two modes (good on some tasks, junk on the rest).")
    register(kind=kind, type="operator", factory=OperatorDetector, schema=OperatorConfig,
             description="Miners sharing a coldkey or a network address.")
    register(kind=kind, type="weight_copy", factory=WeightCopyDetector, schema=WeightCopyConfig,
             description="Validators whose weights track the others' closer than fresh measurement would.")
    register(kind=kind, type="cabal", factory=CabalDetector, schema=CabalConfig,
             description="Validators whose deviations from the stake median point the same way.")
    register(kind=kind, type="self_dealing", factory=SelfDealingDetector, schema=SelfDealingConfig,
             description="Validators weighting their own coldkey's miners far above the others.")
    _register_adversaries(register)


def _register_adversaries(register: Any) -> None:
    from .adversary_config import (
        CabalConfig as CabalValidatorConfig,
    )
    from .adversary_config import (
        CopierConfig,
        LazyMinerConfig,
        NoisyRelayMinerConfig,
        RelayMinerConfig,
    )
    from .adversary_miners import LazyModel, RelayModel
    from .adversary_validators import CopierValidator

    register(kind="model", type="relay", factory=RelayModel, schema=RelayMinerConfig,
             description="Adversary: forwards every task to another miner (`source`) and returns its answer.")
    register(kind="model", type="noisy-relay", factory=RelayModel, schema=NoisyRelayMinerConfig,
             description="Adversary: a relay adding 0.05 nats of noise to the source's distributions.")
    register(kind="model", type="lazy", factory=LazyModel, schema=LazyMinerConfig,
             description="Adversary: answers with `model` on a fraction of tasks, with junk on the rest.")
    register(kind="validator", type="copier", factory=CopierValidator, schema=CopierConfig,
             description="Adversary: sets the stake-weighted mean of the other validators' weights.")
    register(kind="validator", type="cabal", factory=CopierValidator, schema=CabalValidatorConfig,
             description="Adversary: a copier moving `boost` of its weight onto the miner its cabal pushes.")


@tnode.hookimpl
def tnode_add_cli_commands(app: Any) -> None:
    from .cli import register_commands

    register_commands(app)
