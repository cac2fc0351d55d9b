"""Models for the worker-pool tests, imported by the worker processes (``WorkerSpec.factory``)."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import numpy as np


class Doubler:
    """Answers ``2 * x`` for every input after sleeping ``delay`` seconds per batch; an input whose first
    value is -1 makes the whole batch raise (a model error, not a crash)."""

    def __init__(self, config: Mapping[str, Any]) -> None:
        self.delay = float(config.get("delay", 0.0))
        self.weights = np.ones(int(config.get("weights", 0)), dtype=np.uint8)  # memory the RSS must show

    def info(self) -> dict[str, Any]:
        return {"kind": "doubler", "weights": int(self.weights.size)}

    def infer(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        if any(x.size and x.flat[0] == -1 for x in inputs):
            raise ValueError("poisoned input")
        if self.delay:
            time.sleep(self.delay)
        return [x * 2 for x in inputs]


def doubler(config: Mapping[str, Any]) -> Doubler:
    return Doubler(config)


def broken(config: Mapping[str, Any]) -> Doubler:
    raise RuntimeError("no weights at /nowhere")
