"""``[training.NAME] type = "text"``: a serving miner that keeps learning.

The component trains a *copy* of the served transformer (its own data's train split, plus the
network's answers when ``teachers`` names a ``[teachers.NAME]``) in a worker thread, and every
``swap_every`` steps swaps a fresh snapshot of the copy into the model component
(:meth:`~tnode.plugins.text.transformer.TransformerModel.swap`): a forward pass takes the model's
reference once, under the model's lock, so a pass runs entirely on the old weights or entirely on
the new ones, never on weights half-way through an optimizer step. The copy, its optimizer, its step
and window generator (and the gate, with teachers) are checkpointed every ``checkpoint_every`` steps
and resumed at start. After each round the trainer sleeps so that training takes ``busy_fraction``
of the wall time, leaving the rest of the CPU to serving.
"""

from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import Any

import anyio
import anyio.from_thread
import anyio.to_thread
import numpy as np
import torch
from tnode.errors import ConfigError

from .config import TextTrainingConfig
from .evaluate import Loss, eval_windows
from .train import evaluate
from .transformer import load_checkpoint, save_checkpoint


class OnlineTraining:
    """The ``text`` training component; see the module doc and docs/learning.md."""

    def __init__(self, node: Any, name: str, config: TextTrainingConfig) -> None:
        self.node = node
        self.name = name
        self.config = config
        self.step = 0
        self.rounds = 0
        self.busy_seconds = 0.0
        self.heldout: Loss | None = None
        self.last_loss = float("nan")
        self.served: Any = None
        self.distiller: Any = None
        self.client: Any = None

    def checkpoint_path(self) -> Path:
        if self.config.checkpoint:
            path = Path(self.config.checkpoint).expanduser()
            return path if path.is_absolute() else Path(self.node.config.base_dir) / path
        return Path(self.node.data_dir) / "training" / f"{self.name}.pt"

    async def run(self, *, task_status: Any = anyio.TASK_STATUS_IGNORED) -> None:
        cfg = self.config
        key = f"training.{self.name}"
        self.served = self.node.require("model", cfg.model, key_path=f"{key}.model")
        if not hasattr(self.served, "swap") or getattr(self.served, "pool", None) is not None:
            raise ConfigError(f"[models.{cfg.model}] cannot be trained online: it must be a transformer in the "
                              "node's process", key_path=f"{key}.model", hint="set workers = 0")
        dataset = self.node.require("dataset", cfg.dataset, key_path=f"{key}.dataset")
        if self.served.model is None:
            await anyio.to_thread.run_sync(self.served.load)
        shadow = copy.deepcopy(self.served.model)
        data = torch.as_tensor(np.asarray(dataset.tokens("train"), dtype=np.int64))
        ctx = shadow.shape.context
        if len(data) <= ctx + 1:
            raise ConfigError(f"{len(data)} training tokens are too few for a context of {ctx}",
                              key_path=f"{key}.dataset")
        held = eval_windows(dataset.tokens("heldout"), windows=32, length=ctx, seed=cfg.seed)
        opt = torch.optim.AdamW(shadow.parameters(), lr=cfg.lr, betas=(0.9, 0.99), weight_decay=0.0)
        gen = torch.Generator().manual_seed(cfg.seed)
        path = self.checkpoint_path()
        state: dict[str, Any] = {}
        if path.exists():
            loaded, state = await anyio.to_thread.run_sync(load_checkpoint, path)
            if loaded.shape != shadow.shape:
                raise ConfigError(f"{path} holds a model of shape {loaded.shape}, the served one is {shadow.shape}",
                                  key_path=f"{key}.checkpoint")
            shadow.load_state_dict(loaded.state_dict())
            if state.get("optimizer"):
                opt.load_state_dict(state["optimizer"])
            if state.get("data_rng") is not None:
                gen.set_state(state["data_rng"])
            self.step = int(state.get("step", 0))
            self.served.swap(copy.deepcopy(shadow))
        if cfg.teachers:
            await self._teachers(state)
        if self.distiller is not None:
            self.distiller.setup(shadow, state)
        shadow.train()
        offsets = torch.arange(ctx + 1)
        task_status.started()
        self.node.log.info("online training started", training=self.name, model=cfg.model, step=self.step,
                           teachers=len(self.distiller.teachers) if self.distiller else 0)

        def round_() -> None:
            for _ in range(cfg.swap_every):
                starts = torch.randint(0, len(data) - ctx - 1, (cfg.batch_size,), generator=gen)
                batch = data[starts[:, None] + offsets]
                if self.distiller is not None:
                    loss = self.distiller.loss(shadow, batch)
                else:
                    logits = shadow(batch[:, :-1])
                    loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]),
                                                             batch[:, 1:].reshape(-1))
                opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(shadow.parameters(), 1.0)
                opt.step()
                if self.distiller is not None:
                    self.distiller.step()
                    self.last_loss = self.distiller.own_loss
                else:
                    self.last_loss = float(loss.item())
                self.step += 1
                if self.step % cfg.checkpoint_every == 0:
                    extra = {"data_rng": gen.get_state()}
                    if self.distiller is not None:
                        extra.update(self.distiller.state())
                    save_checkpoint(path, shadow, optimizer=opt, step=self.step, extra=extra)
                if cfg.max_steps and self.step >= cfg.max_steps:
                    break
            # A snapshot, never the module being trained: the served weights do not change after the swap.
            self.served.swap(copy.deepcopy(shadow))
            self.heldout = evaluate(shadow, held)

        while not cfg.max_steps or self.step < cfg.max_steps:
            started = time.monotonic()
            await anyio.to_thread.run_sync(round_)
            took = time.monotonic() - started
            self.busy_seconds += took
            self.rounds += 1
            self.node.log.debug("online training round", training=self.name, step=self.step,
                                loss=round(self.last_loss, 4),
                                heldout=round(self.heldout.nats, 4) if self.heldout else None)
            await anyio.sleep(took * (1.0 / cfg.busy_fraction - 1.0))
        self.node.log.info("online training finished", training=self.name, step=self.step)
        await anyio.sleep_forever()

    async def _teachers(self, state: dict[str, Any]) -> None:
        from tnode.contracts.learning import Teacher

        from .distill import Distiller
        from .network_train import wait_for_teachers
        from .teacher_cache import AnswerCache
        from .teachers import TeacherClient

        cfg = self.config
        source = self.node.require("teachers", cfg.teachers, key_path=f"training.{self.name}.teachers")
        saved = state.get("gating")
        if isinstance(saved, dict):
            teachers = [Teacher(h, int(u)) for h, u in zip(saved["hotkeys"], saved["uids"], strict=True)]
        else:
            teachers = await wait_for_teachers(source, 60.0)
        cache = AnswerCache(self.checkpoint_path().with_suffix(".teachers.sqlite"))
        self.client = TeacherClient(source, teachers, cache=cache, k=cfg.teacher_k, rps=cfg.teacher_rps)
        client = self.client

        def fetch(windows: Any) -> Any:
            return anyio.from_thread.run(client.distributions, windows)

        self.distiller = Distiller(teachers, fetch, alpha=cfg.distill_weight)

    def stats(self) -> dict[str, Any]:
        """Steps, swaps, rounds, share of time busy, last losses."""
        return {"step": self.step, "swaps": getattr(self.served, "swaps", 0), "rounds": self.rounds,
                "loss": self.last_loss, "heldout": self.heldout.nats if self.heldout else None}
