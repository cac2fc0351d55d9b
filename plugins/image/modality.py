"""The image modality: restoration and generation (miners) and checkable tasks (validators).

Tasks on the wire (payloads are raw uint8 ``(H, W, C)`` arrays, C = 1 or 3):

``inpaint``   payload: the image with the hole zeroed; body ``{"mask": {"box": [y0, x0, y1, x1]}}``
              or ``{"mask": {"bits": base64 packbits}}``. Answer: the filled image, same shape.
``denoise``   payload: the noisy image; body ``{"sigma": float}`` (0–255 scale). Answer: same shape.
``upscale``   payload: the low-resolution image; body ``{"factor": 2 | 4}``. Answer: (H·f, W·f, C).
``generate``  no payload; body ``{"label": int, "height": int, "width": int, "channels": 1 | 3,
              "seed": int}``. Answer: (height, width, channels).

Answers carry the image as the payload and an empty body. Errors are :class:`tnode.errors.TaskError`:
``invalid_request``, ``too_large``, ``unsupported`` (the model cannot generate), ``timeout``,
``internal``.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

import anyio
import numpy as np
from tnode import dispatch
from tnode.contracts.image import Corruption, ImageAnswer, ImageTruth
from tnode.errors import ConfigError, TaskError
from tnode.events import TaskReceived
from tnode.interfaces import Reply, TaskResult, ValidatorTask

from .batcher import ImageBatcher
from .checks import check_answer, parse_request
from .config import ImageModalityConfig
from .corrupt import corrupt, encode_mask


class ImageModality:
    """Component ``[modalities.NAME] type = "image"``: serves ``model`` when one is named and makes
    validation tasks from ``dataset`` (:class:`tnode.interfaces.ValidatingModality`)."""

    def __init__(self, node: Any, name: str, config: ImageModalityConfig) -> None:
        self.node = node
        self.name = name
        self.config = config
        self.wire_name = dispatch.wire_name(config, "image")  # what peers route by, not the table name
        if not config.tasks:
            raise ConfigError("tasks must name at least one task", key_path=f"modalities.{name}.tasks")
        if not config.sigmas or any(not 0 < s <= config.max_sigma for s in config.sigmas):
            raise ConfigError(f"sigmas must be non-empty and each in (0, {config.max_sigma}]",
                              key_path=f"modalities.{name}.sigmas")
        for key in ("factors", "mask_kinds"):
            if not getattr(config, key):
                raise ConfigError(f"{key} must not be empty", key_path=f"modalities.{name}.{key}")
        self.model: Any = None
        self.dataset: Any = None
        # One pass at a time, in the batcher: a model uses its own torch threads; more would only contend.
        self.batcher: ImageBatcher | None = None

    async def run(self, *, task_status: Any = anyio.TASK_STATUS_IGNORED) -> None:
        key = f"modalities.{self.name}"
        if self.config.model:
            self.model = self.node.require("model", self.config.model, key_path=f"{key}.model")
        if self.config.dataset:
            self.dataset = self.node.require("dataset", self.config.dataset, key_path=f"{key}.dataset")
            side = min(self.dataset.height, self.dataset.width)
            if "upscale" in self.config.tasks and all(side % f for f in self.config.factors):
                raise ConfigError(f"the dataset's {side}-pixel images cannot be downscaled by any of "
                                  f"{self.config.factors}", key_path=f"{key}.factors")
        if self.model is None:
            task_status.started()
            await anyio.sleep_forever()
        self.batcher = ImageBatcher(self.model, self.checked, max_batch=self.config.max_batch,
                                    wait=self.config.batch_wait_ms / 1000)
        async with anyio.create_task_group() as tg:
            tg.start_soon(self.batcher.run)
            undo = self.node.bus.serve(TaskReceived, self.handle, key=self.wire_name)
            task_status.started()
            try:
                await anyio.sleep_forever()
            finally:
                undo()

    # ------------------------------------------------------------------ miner side
    def answer(self, image: np.ndarray | None, corruption: Corruption) -> np.ndarray:
        """Run the model on one checked request (blocking, unbatched); the result is checked before it leaves."""
        out = self.model.generate(corruption) if image is None else self.model.restore(image, corruption)
        return self.checked(out, image, corruption)

    def checked(self, out: Any, image: np.ndarray | None, corruption: Corruption) -> np.ndarray:
        """``out`` if it is what the request asked for: uint8 of the right shape; else ``TaskError("internal")``."""
        out = np.asarray(out)
        if image is None:
            want = (corruption.height, corruption.width, corruption.channels)
        else:
            f = corruption.factor if corruption.task == "upscale" else 1
            want = (image.shape[0] * f, image.shape[1] * f, image.shape[2])
        if out.dtype != np.uint8 or out.shape != want:
            raise TaskError("internal", f"model {self.config.model!r} returned {out.dtype} {out.shape}, "
                                        f"expected uint8 {want}")
        return out

    async def handle(self, task: TaskReceived) -> TaskResult:
        """Answer one inbound task (the bus handler)."""
        if isinstance(task.body, Mapping) and "batch" in task.body:
            return await self._handle_batch(task)
        image, corruption = parse_request(task.task, task.body, task.payload, max_side=self.config.max_side,
                                          max_pixels=self.config.max_pixels, max_sigma=self.config.max_sigma)
        if time.monotonic() >= task.deadline:
            raise TaskError("timeout", "the deadline passed before the model ran")
        assert self.batcher is not None  # handle is served only once the batcher exists
        return TaskResult({}, await self.batcher.infer(image, corruption, task.deadline))

    async def _handle_batch(self, task: TaskReceived) -> TaskResult:
        """B restoration tasks with one corruption: payload (B, H, W, C) uint8, answer (B, H', W', C)."""
        body = dict(task.body)
        batch = body.pop("batch")
        if type(batch) is not int or batch < 1:
            raise TaskError("invalid_request", f"batch must be a positive integer, got {batch!r}")
        if batch > self.config.max_tasks:
            raise TaskError("too_large", f"a batch of {batch} tasks exceeds max_tasks {self.config.max_tasks}")
        if task.task == "generate":
            raise TaskError("invalid_request", "batch is for restoration tasks (inpaint, denoise, upscale)")
        payload = task.payload
        if not isinstance(payload, np.ndarray) or payload.ndim != 4 or payload.shape[0] != batch:
            raise TaskError("invalid_request", f"a batch of {batch} needs a ({batch}, H, W, C) payload, "
                                               f"got shape {getattr(payload, 'shape', None)}")
        cfg = self.config
        rows = [parse_request(task.task, body, row, max_side=cfg.max_side, max_pixels=cfg.max_pixels,
                              max_sigma=cfg.max_sigma) for row in payload]  # every row checked first
        if time.monotonic() >= task.deadline:
            raise TaskError("timeout", "the deadline passed before the model ran")
        assert self.batcher is not None
        answers: list[Any] = [None] * batch

        async def one(i: int) -> None:
            assert self.batcher is not None
            answers[i] = await self.batcher.infer(rows[i][0], rows[i][1], task.deadline)

        async with anyio.create_task_group() as tg:  # the rows share forward passes in the batcher
            for i in range(batch):
                tg.start_soon(one, i)
        return TaskResult({}, np.stack(answers))

    # ------------------------------------------------------------------ validator side
    def batch_tasks(self, tasks: Sequence[ValidatorTask]) -> ValidatorTask | None:
        """Restoration tasks of one kind with the same body (σ, factor, or mask) and image size as one
        ``batch`` request; None otherwise (inpainting masks differ per task, so those go one by one)."""
        first = tasks[0] if tasks else None
        if (first is None or len(tasks) > self.config.max_tasks or first.task == "generate"
                or not isinstance(first.payload, np.ndarray)
                or any(t.task != first.task or t.body != first.body
                       or not isinstance(t.payload, np.ndarray) or t.payload.shape != first.payload.shape
                       for t in tasks)):
            return None
        payload = np.stack([np.asarray(t.payload) for t in tasks])
        return ValidatorTask(first.modality, first.task, {**first.body, "batch": len(tasks)}, payload,
                             tuple(t.truth for t in tasks))

    def unbatch_reply(self, batch: ValidatorTask, tasks: Sequence[ValidatorTask], reply: Reply) -> list[Reply]:
        """Row i of a batched answer (payload (B, H', W', C)) as the answer to task i."""
        out = reply.payload
        if not isinstance(out, np.ndarray) or out.ndim != 4 or out.shape[0] != len(tasks):
            raise TaskError("invalid_response", f"a batch of {len(tasks)} needs a ({len(tasks)}, H, W, C) answer")
        return [Reply({}, out[i], reply.peer_id, reply.hotkey, reply.latency) for i in range(len(tasks))]

    def make_task(self, rng: np.random.Generator) -> ValidatorTask:
        """A task on a fresh held-out image; the original stays with the validator as the truth."""
        if self.dataset is None:
            raise ConfigError("making validation tasks needs a dataset", key_path=f"modalities.{self.name}.dataset")
        cfg = self.config
        kind = cfg.tasks[int(rng.integers(len(cfg.tasks)))]
        images, labels = self.dataset.sample("heldout", 1, rng)
        original, label = images[0], int(labels[0])
        if kind == "generate":
            refs, ref_labels = self.dataset.sample("heldout", 16 * cfg.generate_references, rng)
            same = refs[ref_labels == label][: cfg.generate_references]
            same = np.concatenate([original[None], same])[: cfg.generate_references]
            h, w, c = original.shape
            how = Corruption("generate", label=label, height=h, width=w, channels=c, seed=int(rng.integers(2**62)))
            ask = {"label": label, "height": h, "width": w, "channels": c, "seed": how.seed}
            return ValidatorTask(self.wire_name, "generate", ask, None, ImageTruth(original, None, how, same))
        damaged, how = corrupt(original, kind, rng, sigmas=tuple(cfg.sigmas), factors=tuple(cfg.factors),
                               mask_kinds=tuple(cfg.mask_kinds))
        if kind == "inpaint":
            assert how.mask is not None
            body: dict[str, Any] = {"mask": encode_mask(how.mask)}
        elif kind == "denoise":
            body = {"sigma": how.sigma}
        else:
            body = {"factor": how.factor}
        return ValidatorTask(self.wire_name, kind, body, damaged, ImageTruth(original, damaged, how))

    def parse_response(self, task: ValidatorTask, reply: Reply) -> ImageAnswer:
        """Check a miner's answer; ``TaskError("invalid_response")`` when it does not fit the task."""
        return check_answer(task.truth, reply.payload)

    # ------------------------------------------------------------------ reports
    def write_report_picture(self, path: Any, shown: list[tuple[ValidatorTask, dict[str, Any]]]) -> Any:
        """A labelled PNG grid: per task, the original, the damaged input and each answer (label → answer)."""
        from .pictures import write_grid

        rows = []
        for task, answers in shown:
            truth: ImageTruth = task.truth
            cells: list[tuple[str, Any]] = [("original", truth.original), ("input", truth.corrupted)]
            cells += [(label, a.image if isinstance(a, ImageAnswer) else None) for label, a in answers.items()]
            rows.append((task.task, cells))
        return write_grid(path, rows)

