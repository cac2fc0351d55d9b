"""``[routers.NAME] type = "moe"``: the client side of the network — pick miners, ask, mix, learn.

Per query the router picks ``k`` miners from the :class:`~tnode.plugins.router.board.Board`
(Thompson sampling or UCB1 over quality, seeded by what the chain attests), asks them at once over
the node's transport (every request signed by this node's hotkey, so miners admit it by the stake
behind that hotkey), mixes the valid answers and, when the truth becomes known, learns: quality
rewards for selection and an online EM step for the text mixture weights. Concurrent queries to one
miner share batched requests (:mod:`~tnode.plugins.router.coalesce`, ``batch``).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import numpy as np
from tnode.contracts.learning import gating_weights
from tnode.errors import ChainError, ConfigError, TaskError
from tnode.interfaces import Metagraph, Reply, subnet_for_modality

from . import image_mix, text_mix
from .board import Board, chain_prior
from .coalesce import Coalescer
from .config import MoeRouterConfig
from .fanout import Outcome, fan_out


@dataclass
class Mixed:
    """A mixed answer and how it was made: ``used`` hotkeys with their weights, ``outcome`` of the fan-out."""

    value: np.ndarray  # text: (positions, V) probabilities; image: uint8 (H, W, C)
    used: list[str]
    weights: np.ndarray
    parts: list[np.ndarray]
    outcome: Outcome
    dropped: list[str] = field(default_factory=list)  # outliers

    def miners(self, board: Board) -> list[dict[str, Any]]:
        """Per miner asked: uid, hotkey, latency or error, weight in the mixture."""
        rows = []
        for a in self.outcome.answers:
            h = a.miner.hotkey
            w = float(self.weights[self.used.index(h)]) if h in self.used else 0.0
            rows.append({"uid": a.miner.uid, "hotkey": h, "latency_ms": round(a.latency * 1000, 2),
                         "weight": round(w, 4), "status": "outlier" if h in self.dropped else "used"})
        for h, code in self.outcome.failures.items():
            rec = board.miners.get(h)
            rows.append({"uid": rec.uid if rec else -1, "hotkey": h, "latency_ms": None, "weight": 0.0, "status": code})
        for h in self.outcome.late:
            rec = board.miners.get(h)
            rows.append({"uid": rec.uid if rec else -1, "hotkey": h, "latency_ms": None, "weight": 0.0, "status": "late"})
        return rows


BATCHED_IMAGE_TASKS = frozenset({"inpaint", "denoise", "upscale"})
"""Image tasks miners answer in batches (body ``batch`` = B, payload (B, H, W, C))."""

CONTEXT_EM_STEPS = 5  # EM iterations when fitting a completion's weights to its prompt


def load_gate(node: Any, name: str, config: MoeRouterConfig) -> dict[str, float]:
    """Teacher hotkey → learned gate weight from ``config.gating`` (a distilled checkpoint)."""
    import torch

    path = Path(config.gating)
    if not path.is_absolute():
        path = Path(node.config.base_dir) / path
    key_path = f"routers.{name}.gating"
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        return gating_weights(state)
    except FileNotFoundError:
        raise ConfigError(f"no such checkpoint: {path}", key_path=key_path) from None
    except (ValueError, RuntimeError, OSError, EOFError) as exc:
        raise ConfigError(f"{path}: {exc}", key_path=key_path) from None


def gated_prior(priors: dict[int, float], mg: Metagraph, gate: dict[str, float], share: float) -> dict[int, float]:
    """Blend the gate into the chain's prior: a gated miner's prior is ``(1 - share)`` of the chain's
    plus ``share`` of its gate weight scaled to the best teacher's (a teacher the gate gave nothing
    sinks toward 0; miners the gate never saw keep the chain's prior)."""
    top = max(gate.values(), default=0.0)
    if top <= 0:
        return priors
    out = dict(priors)
    for x in mg.neurons:
        if x.hotkey in gate and x.uid in out:
            out[x.uid] = (1 - share) * out[x.uid] + share * gate[x.hotkey] / top
    return out


class MoeRouter:
    """The ``moe`` router component; see the module doc and docs/router.md."""

    def __init__(self, node: Any, name: str, config: MoeRouterConfig) -> None:
        self.node = node
        self.name = name
        self.config = config
        rng = np.random.default_rng(config.seed or None)
        self.rng = rng
        self.board = Board(strength=config.prior_strength, decay=config.quality_decay,
                           backoff_base=config.backoff_base, backoff_max=config.backoff_max,
                           exploration=config.exploration, ucb_c=config.ucb_c, rng=rng)
        self.netuid: int | None = None
        self.block = -1
        self.queries = 0
        self.gate = load_gate(node, name, config) if config.gating else {}
        self.coalescer: Coalescer | None = None  # while run() runs, with batching on

    @property
    def batching(self) -> bool:
        return self.config.batch and self.config.batch_window_ms > 0 and self.config.max_batch > 1

    # ------------------------------------------------------------------ lifecycle
    async def run(self, *, task_status: Any = anyio.TASK_STATUS_IGNORED) -> None:
        if self.node.transport is None or self.node.chain is None:
            raise ConfigError("a router needs a [transport] to ask miners and a [chain] to find them",
                              key_path=f"routers.{self.name}")
        await self.refresh()
        async with anyio.create_task_group() as tg:  # the batched requests run here, not in any query
            if self.batching:
                self.coalescer = Coalescer(self.node.transport, tg, window=self.config.batch_window_ms / 1000,
                                           max_batch=self.config.max_batch)
            task_status.started()
            try:
                while True:
                    await anyio.sleep(self.config.refresh_interval)
                    try:
                        await self.refresh()
                    except ChainError as exc:  # a briefly unreachable chain: keep routing on what we know
                        self.node.log.warning("router cannot read the metagraph", router=self.name, error=str(exc))
            finally:
                self.coalescer = None
                tg.cancel_scope.cancel()

    async def refresh(self) -> None:
        """Read the subnet's metagraph: miners, their addresses and the chain's prior."""
        chain = self.node.chain
        if self.netuid is None:
            self.netuid = subnet_for_modality(await chain.subnets(), self.config.modality, self.node.netuid)
        mg = await chain.metagraph(netuid=self.netuid)
        self.block = mg.block
        exclude = "" if self.config.include_self else self.node.hotkey.public_hex
        priors = chain_prior(mg, self.config.chain_weights)
        if self.gate:
            priors = gated_prior(priors, mg, self.gate, self.config.gating_share)
        self.board.update(mg.neurons, priors, exclude=exclude)
        for rec in self.board.miners.values():
            if rec.peer_id and rec.addrs:
                self.node.transport.add_peer_addrs(rec.peer_id, list(rec.addrs))

    # ------------------------------------------------------------------ asking
    async def _ask(self, task: str, body: dict[str, Any], payload: Any, parse: Any, k: int | None, *,
                   batchable: bool = True) -> Outcome:
        k = k or self.config.k
        miners = self.board.choose(k, time.monotonic())
        if not miners:
            raise TaskError("unreachable", f"no miner of modality {self.config.modality!r} is known "
                                           f"(subnet {self.netuid}, block {self.block})")
        for m in miners:
            self.board.sent(m.hotkey)
        self.queries += 1
        out = await fan_out(self.node.transport, miners, self.config.modality, task, body, payload, parse,
                            k_min=min(self.config.k_min, k), timeout=self.config.timeout,
                            timeout_after_k_min=self.config.timeout_after_k_min,
                            ask=self.coalescer.ask if batchable and self.coalescer is not None else None)
        now = time.monotonic()
        for a in out.answers:
            self.board.answered(a.miner.hotkey, a.latency, request=out.requests.get(a.miner.hotkey))
        for hotkey, code in out.failures.items():
            self.board.failed(hotkey, code, now, request=out.requests.get(hotkey))
        for hotkey in out.late:
            self.board.late(hotkey, now)
        if not out.answers:
            codes = ", ".join(sorted(set(out.failures.values()))) or "none"
            raise TaskError("unreachable", f"none of {len(miners)} miners answered (errors: {codes})")
        return out

    # ------------------------------------------------------------------ text
    async def next_token(self, context: np.ndarray, *, positions: str = "last", k: int | None = None) -> Mixed:
        """The mixture's next-token distribution(s) after ``context`` (int token ids, 1-D)."""
        ids = np.asarray(context, dtype=np.int32).reshape(-1)
        rows = 1 if positions == "last" else len(ids)
        topk = self.config.max_top_k

        def parse(reply: Reply) -> np.ndarray:
            pred = text_mix.parse_topk(reply.body, reply.payload, rows=rows, k=topk)
            return text_mix.dense(pred, self.config.floor)

        out = await self._ask("next_token", {"k": topk, "positions": positions}, ids, parse, k)
        used = [a.miner.hotkey for a in out.answers]
        parts = [a.value for a in out.answers]
        weights = self.board.weights(used)
        return Mixed(text_mix.mix(parts, weights), used, weights, parts, out)

    def learn_text(self, mixed: Mixed, truth: np.ndarray) -> None:
        """The true next token(s) of a mixed answer became known: reward each miner by the geometric
        mean probability it gave them, and move the mixture weights (online EM)."""
        truth = np.asarray(truth, dtype=np.int64).reshape(-1)
        for hotkey, part in zip(mixed.used, mixed.parts, strict=True):
            p = text_mix.true_prob(part, truth)
            self.board.reward(hotkey, float(np.exp(np.log(p).mean())))
        if len(mixed.used) > 1:
            resp = text_mix.responsibilities(mixed.parts, mixed.weights, truth)
            self.board.learn_weights(mixed.used, resp, self.config.mixture_rate)

    async def complete(self, prompt: np.ndarray, max_tokens: int, *, temperature: float = 0.0, top_k: int = 0,
                       k: int | None = None,
                       on_token: Callable[[int], Awaitable[None]] | None = None) -> tuple[list[int], list[Mixed]]:
        """Generate up to ``max_tokens`` tokens, each drawn from the mixture of the miners asked for it.

        The first step asks for every position of the prompt: its own tokens are a truth the router
        learns from before it trusts the mixture for the first new token. ``on_token`` is awaited
        with each token as soon as it is drawn (streaming), before the next one is asked for."""
        context = np.asarray(prompt, dtype=np.int32).reshape(-1)
        out: list[int] = []
        steps: list[Mixed] = []
        local: dict[str, float] = {}  # this completion's weights, fitted to its prompt
        for step in range(max_tokens):
            positions = "all" if step == 0 and len(context) > 1 else "last"
            mixed = await self.next_token(context, positions=positions, k=k)
            if positions == "all":
                seen = Mixed(mixed.value[:-1], mixed.used, mixed.weights, [p[:-1] for p in mixed.parts],
                             mixed.outcome)
                local = self.context_weights(seen, context[1:])
                self.learn_text(seen, context[1:])
            if local:
                mixed.weights = self._local(mixed.used, local)
                mixed.value = text_mix.mix(mixed.parts, mixed.weights)
            token = text_mix.sample_token(mixed.value[-1], self.rng, temperature=temperature, top_k=top_k)
            out.append(token)
            steps.append(mixed)
            context = np.append(context, np.int32(token))
            if on_token is not None:
                await on_token(token)
        return out, steps

    def context_weights(self, mixed: Mixed, truth: np.ndarray) -> dict[str, float]:
        """Mixture weights fitted to one context (per-context gating): EM on the context's own
        tokens, starting from the router's weights, each of the n tokens worth one online step
        (rate 1 − (1 − mixture_rate)ⁿ). The router's own weights are not changed."""
        truth = np.asarray(truth, dtype=np.int64).reshape(-1)
        if len(mixed.used) < 2 or not len(truth) or self.config.mixture_rate <= 0:
            return {}
        rate = 1.0 - (1.0 - self.config.mixture_rate) ** len(truth)
        w = np.asarray(mixed.weights, dtype=np.float64)
        for _ in range(CONTEXT_EM_STEPS):
            w = (1.0 - rate) * w + rate * text_mix.responsibilities(mixed.parts, w, truth)
        return dict(zip(mixed.used, (float(x) for x in w), strict=True))

    def _local(self, used: list[str], local: dict[str, float]) -> np.ndarray:
        # A miner asked later but not for the prompt has no evidence on this context: it keeps the
        # router's weight (scaled like the others), at most the smallest weight the prompt left.
        scale = sum(local.values()) / max(sum(self.board.miners[h].weight for h in local if h in self.board.miners),
                                          1e-12)
        least = min(local.values())
        w = np.array([local[h] if h in local else
                      min(self.board.miners[h].weight * scale if h in self.board.miners else 0.0, least)
                      for h in used])
        total = w.sum()
        return w / total if total > 0 else np.full(len(used), 1.0 / max(len(used), 1))

    # ------------------------------------------------------------------ image
    async def image(self, task: str, image: np.ndarray, body: dict[str, Any], *, k: int | None = None,
                    how: str = "weighted") -> Mixed:
        """Ask miners to restore ``image`` (``inpaint`` / ``denoise`` / ``upscale``) and combine their answers."""
        img = image.reshape(*image.shape[:2], 1) if image.ndim == 2 else image
        shape = image_mix.expected_shape(task, img, body)
        out = await self._ask(task, body, np.ascontiguousarray(img, dtype=np.uint8),
                              lambda reply: image_mix.parse_image(reply.payload, shape), k,
                              batchable=task in BATCHED_IMAGE_TASKS)
        hotkeys = [a.miner.hotkey for a in out.answers]
        images = [a.value for a in out.answers]
        bad = set(image_mix.outliers(images, self.config.outlier_factor))
        dropped = [hotkeys[i] for i in sorted(bad)]
        for h in dropped:
            self.board.reward(h, 0.0)
        used = [h for i, h in enumerate(hotkeys) if i not in bad]
        parts = [im for i, im in enumerate(images) if i not in bad]
        quality = np.array([self.board.miners[h].mean(self.board.strength) if h in self.board.miners else 0.0
                            for h in used])
        # A softmax over quality: a miner a few PSNR-dB better dominates, equals share evenly.
        weights = np.exp((quality - quality.max()) / 0.05) if len(used) else quality
        return Mixed(image_mix.combine(parts, weights, how), used, weights, parts, out, dropped)

    def learn_image(self, mixed: Mixed, original: np.ndarray) -> None:
        """The original became known: reward each used miner by its PSNR / 50 dB."""
        for hotkey, part in zip(mixed.used, mixed.parts, strict=True):
            self.board.reward(hotkey, image_mix.psnr(part, original) / 50.0)
