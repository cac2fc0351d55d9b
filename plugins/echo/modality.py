"""The echo modality."""

from __future__ import annotations

from typing import Any

import anyio
from tnode import dispatch
from tnode.events import TaskReceived
from tnode.interfaces import TaskResult

from .config import EchoConfig


class EchoModality:
    """``[modalities.NAME] type = "echo"``: answers each task with its own body and payload."""

    def __init__(self, node: Any, name: str, config: EchoConfig) -> None:
        self.node = node
        self.name = name
        self.config = config
        self.wire_name = dispatch.wire_name(config, "echo")

    async def handle(self, task: TaskReceived) -> TaskResult:
        if self.config.delay_ms:
            await anyio.sleep(self.config.delay_ms / 1000)
        return TaskResult(dict(task.body), task.payload)

    async def run(self, *, task_status: Any = anyio.TASK_STATUS_IGNORED) -> None:
        undo = self.node.bus.serve(TaskReceived, self.handle, key=self.wire_name)
        task_status.started()
        try:
            await anyio.sleep_forever()
        finally:
            undo()
