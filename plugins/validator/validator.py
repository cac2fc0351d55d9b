"""The validator role: query miners with checkable tasks, score them, set weights on the chain.

One step: read the metagraph → follow re-registrations → choose miners → send each task to all of
them concurrently under a deadline → parse and score the answers (no answer, an error or an
invalid answer scores 0) → fold scores into per-uid moving averages → when the chain's rate limit
allows, turn the averages into weights and submit them (as a commit, revealed later, when the
subnet uses commit-reveal).
"""

from __future__ import annotations

import math
import secrets
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import anyio
import numpy as np
from tnode import dispatch
from tnode.errors import ChainError, TaskError, TnodeError
from tnode.events import CollusionSuspected, ResponseScored, TaskRoundScored, WeightsSubmitted
from tnode.hyperparameters import Hyperparameters
from tnode.interfaces import (
    BatchingModality,
    InboundRequest,
    Metagraph,
    Neuron,
    Reply,
    ValidatorTask,
    subnet_for_modality,
)
from tnode.keys import peer_id_from_public_key

from .config import ValidatorConfig
from .state import PendingCommit, ValidatorState
from .weights import WeightsUnsatisfiable, compute_weights, tells_apart


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one miner did with one task."""

    answer: Any  # parsed answer, or None
    latency: float
    error: str = ""  # "" or the failure code (timeout, unreachable, invalid_response, ...)


@dataclass
class StepReport:
    """What the last step did (for logs, `tnode status` and tests)."""

    block: int = 0
    queried: list[int] = field(default_factory=list)
    scores: dict[int, float] = field(default_factory=dict)
    errors: dict[int, str] = field(default_factory=dict)
    weights_submitted: bool = False


class Validator:
    """``[validator] type = "default"``: see :class:`ValidatorConfig`."""

    def __init__(self, node: Any, name: str, config: ValidatorConfig) -> None:
        # scorer_weights match scorers: ValidatorConfig.check().
        self.node = node
        self.name = name
        self.config = config
        self.timeout = config.timeout
        self.state = ValidatorState(alpha=config.ema_alpha)
        self.rng = np.random.default_rng(None if config.seed < 0 else config.seed)
        self.log = node.log.bind(component="validator")
        self.own_uid: int | None = None
        self.netuid: int | None = None  # the subnet of this validator's modality (see subnet())
        self.last_report = StepReport()
        self.failures: Counter[str] = Counter()
        self._unsatisfiable = ""
        self._last_summary = -float("inf")
        self.steps = 0
        # hotkey -> (score factor, monotonic expiry): verdicts of this node's collusion detectors.
        self.penalties: dict[str, tuple[float, float]] = {}

    # ------------------------------------------------------------------ lifecycle
    @property
    def state_path(self) -> Any:
        return self.node.data_dir / self.config.state_file

    async def run(self, *, task_status: Any = anyio.TASK_STATUS_IGNORED) -> None:
        try:
            self.state = ValidatorState.load(self.state_path, self.config.ema_alpha)
        except ValueError as exc:
            self.log.warning("starting with fresh scores", reason=str(exc))
        verdicts = self.node.bus.subscribe(CollusionSuspected, self._on_verdict, name=f"validator:{self.name}:verdicts")
        task_status.started()
        await self.node.ready.wait()
        try:
            while True:
                began = anyio.current_time()
                try:
                    await self.step()
                except TnodeError as exc:  # chain or network trouble: try again next step
                    self.log.warning("validator step failed", error=f"{type(exc).__name__}: {exc}")
                await anyio.sleep(max(0.0, self.config.step_interval - (anyio.current_time() - began)))
        finally:
            verdicts.close()
            self._save()

    def _save(self) -> None:
        try:
            self.state.save(self.state_path)
        except OSError as exc:
            self.log.warning("cannot save validator state", path=str(self.state_path), error=str(exc))

    # ------------------------------------------------------------------ components
    @property
    def modality(self) -> Any:
        return self.node.component("modality", self.config.modality)

    def scorers(self) -> list[tuple[str, Any, float]]:
        """``(name, scorer, weight)`` of each scorer to combine."""
        names = self.config.scorers or list(self.node.components_of("scorer"))
        weights = self.config.scorer_weights or [1.0] * len(names)
        return [(n, self.node.component("scorer", n), w) for n, w in zip(names, weights, strict=True) if w > 0]

    # ------------------------------------------------------------------ subnet
    async def subnet(self) -> int:
        """The netuid whose modality is the one this validator checks (looked up once, then kept)."""
        if self.netuid is None:
            listing = getattr(self.node.chain, "subnets", None)  # a backend without it has one subnet
            subnets = await listing() if listing is not None else {}
            wire = getattr(self.modality, "wire_name", self.modality.name)  # subnets list modalities by wire name
            self.netuid = subnet_for_modality(subnets, wire, self.node.netuid)
            self.log.info("validating subnet", netuid=self.netuid, modality=wire)
        return self.netuid

    # ------------------------------------------------------------------ one step
    async def step(self) -> StepReport:
        """Run one query/score/weights round and return what it did."""
        chain = self.node.chain
        netuid = await self.subnet()
        mg: Metagraph = await chain.metagraph(netuid=netuid)
        for uid in self.state.sync(mg.neurons):
            self.log.info("uid re-registered: score history reset", uid=uid)
        me = mg.by_hotkey(self.node.hotkey.public_hex)
        self.own_uid = me.uid if me else None
        known = {p.peer_id for p in self.node.transport.peers()}
        reachable = {n.uid: n for n in mg.neurons
                     if (n.uid != self.own_uid and (n.addrs or self._peer_id(n) in known))
                     or (n.uid == self.own_uid and self.config.query_self)}
        chosen = [reachable[u] for u in self.state.pick(sorted(reachable), self.config.sample_size, self.rng)]
        report = StepReport(block=mg.block, queried=[n.uid for n in chosen])
        self.state.mark_queried(report.queried)
        if chosen:
            if self.config.tasks_per_step > 1 and self.config.batch_tasks and isinstance(self.modality,
                                                                                         BatchingModality):
                await self._batched_rounds(chosen, report)
            else:
                for _ in range(self.config.tasks_per_step):
                    await self._task_round(chosen, report)
        self.state.step += 1
        self.steps += 1
        if me is not None:
            report.weights_submitted = await self._submit_weights(mg, me)
        self.last_report = report
        self._summarize(report)
        return report

    SUMMARY_SECONDS = 30.0

    def _summarize(self, report: StepReport) -> None:
        """An info line about the scores at most every SUMMARY_SECONDS, so an operator sees the work."""
        now = anyio.current_time()
        if now - self._last_summary < self.SUMMARY_SECONDS:
            return
        self._last_summary = now
        averages = self.state.scores()
        self.log.info("validating", block=report.block, steps=self.steps, queried=len(report.queried),
                      errors=len(report.errors),
                      score_ema={uid: round(float(v), 4) for uid, v in sorted(averages.items())[:16]})

    @staticmethod
    def _peer_id(neuron: Neuron) -> str:
        if neuron.peer_id:
            return neuron.peer_id
        # A node's libp2p identity is its hotkey, so the peer id follows from it.
        return peer_id_from_public_key(bytes.fromhex(neuron.hotkey))

    async def _task_round(self, chosen: list[Neuron], report: StepReport) -> None:
        task: ValidatorTask = self.modality.make_task(self.rng)
        outcomes: dict[int, Outcome] = {}
        limiter = anyio.CapacityLimiter(self.config.max_concurrency)
        async with anyio.create_task_group() as tg:
            for neuron in chosen:
                tg.start_soon(self._query, neuron, task, outcomes, limiter)
        await self._score_round(task, chosen, outcomes, report)

    async def _batched_rounds(self, chosen: list[Neuron], report: StepReport) -> None:
        """The step's tasks to each miner in one request; each task is then scored on its own."""
        tasks = [self.modality.make_task(self.rng) for _ in range(self.config.tasks_per_step)]
        batch = self.modality.batch_tasks(tasks)
        limiter = anyio.CapacityLimiter(self.config.max_concurrency)
        if batch is None:  # tasks that cannot share a request go one by one
            for task in tasks:
                outcomes: dict[int, Outcome] = {}
                async with anyio.create_task_group() as tg:
                    for neuron in chosen:
                        tg.start_soon(self._query, neuron, task, outcomes, limiter)
                await self._score_round(task, chosen, outcomes, report)
            return
        per_task: list[dict[int, Outcome]] = [{} for _ in tasks]

        async def one(neuron: Neuron) -> None:
            async with limiter:
                answers = await self._ask_batch(neuron, batch, tasks)
            for outcomes, outcome in zip(per_task, answers, strict=True):
                outcomes[neuron.uid] = outcome

        async with anyio.create_task_group() as tg:
            for neuron in chosen:
                tg.start_soon(one, neuron)
        for task, outcomes in zip(tasks, per_task, strict=True):
            await self._score_round(task, chosen, outcomes, report)

    async def _score_round(self, task: ValidatorTask, chosen: list[Neuron], outcomes: dict[int, Outcome],
                           report: StepReport) -> None:
        """Score one task's answers, fold them into the averages and publish what happened."""
        answers = {uid: o.answer for uid, o in outcomes.items()}
        latencies = {uid: o.latency for uid, o in outcomes.items()}
        scores = await anyio.to_thread.run_sync(self.combined_scores, task, answers, latencies)
        label = "+".join(name for name, _, _ in self.scorers())
        by_uid = {n.uid: n for n in chosen}
        for uid, outcome in sorted(outcomes.items()):
            score = scores.get(uid, 0.0) if outcome.answer is not None else 0.0
            self.state.update(uid, by_uid[uid].hotkey, score)
            report.scores[uid] = score
            if outcome.error:
                report.errors[uid] = outcome.error
                self.failures[outcome.error] += 1
            await self.node.bus.publish(ResponseScored(uid=uid, hotkey=by_uid[uid].hotkey, modality=task.modality,
                                                       score=score, scorer=label, latency=outcome.latency,
                                                       error=outcome.error))
        ordered = sorted(outcomes)
        await self.node.bus.publish(TaskRoundScored(
            task_id=secrets.token_hex(8), modality=task.modality, uids=tuple(ordered),
            hotkeys=tuple(by_uid[u].hotkey for u in ordered), answers=tuple(outcomes[u].answer for u in ordered),
            latencies=tuple(outcomes[u].latency for u in ordered), scores=tuple(report.scores[u] for u in ordered)))

    async def _on_verdict(self, event: CollusionSuspected) -> None:
        """Hold a detector's zero/scale verdict on the suspects' scores (see docs/collusion.md)."""
        if event.action == "report" or event.hold_seconds <= 0:
            return
        until = time.monotonic() + event.hold_seconds
        for hotkey in event.members:
            self.penalties[hotkey] = (min(1.0, max(0.0, event.factor)), until)

    def penalized_scores(self, mg: Metagraph) -> dict[int, float]:
        """Score averages with the detectors' current verdicts applied (expired ones dropped)."""
        now = time.monotonic()
        self.penalties = {h: p for h, p in self.penalties.items() if p[1] > now}
        scores = self.state.scores()
        for n in mg.neurons:
            if n.hotkey in self.penalties and n.uid in scores:
                scores[n.uid] *= self.penalties[n.hotkey][0]
        return scores

    async def _query(self, neuron: Neuron, task: ValidatorTask, out: dict[int, Outcome],
                     limiter: anyio.CapacityLimiter) -> None:
        async with limiter:
            out[neuron.uid] = await self._ask(neuron, task)

    async def _ask(self, neuron: Neuron, task: ValidatorTask) -> Outcome:
        reply = await self._request(neuron, task)
        if isinstance(reply, Outcome):
            return reply
        return self._parse(neuron, task, reply)

    async def _ask_batch(self, neuron: Neuron, batch: ValidatorTask, tasks: list[ValidatorTask]) -> list[Outcome]:
        """Send ``batch`` and parse the answer to each of ``tasks`` from the one reply."""
        reply = await self._request(neuron, batch)
        if isinstance(reply, Outcome):
            return [reply] * len(tasks)
        try:
            replies = self.modality.unbatch_reply(batch, tasks, reply)
        except TaskError as exc:
            return [Outcome(None, reply.latency, exc.code)] * len(tasks)
        return [self._parse(neuron, task, one) for task, one in zip(tasks, replies, strict=True)]

    async def _request(self, neuron: Neuron, task: ValidatorTask) -> Reply | Outcome:
        """The miner's reply to ``task``, or the failed :class:`Outcome`."""
        transport = self.node.transport
        peer = self._peer_id(neuron)
        if neuron.addrs and neuron.uid != self.own_uid:
            transport.add_peer_addrs(peer, list(neuron.addrs))
        began = anyio.current_time()
        try:
            # The transport enforces the timeout; the outer bound guards against one that does not.
            with anyio.fail_after(self.timeout * 2 + 1.0):
                if neuron.uid == self.own_uid:
                    reply = await self._ask_self(task)
                else:
                    reply = await transport.request(peer, task.modality, task.task, task.body, task.payload,
                                                    timeout=self.timeout)
        except TaskError as exc:
            return Outcome(None, anyio.current_time() - began, exc.code)
        except TimeoutError:
            return Outcome(None, anyio.current_time() - began, "timeout")
        except TnodeError as exc:
            return Outcome(None, anyio.current_time() - began, type(exc).__name__)
        except Exception as exc:  # a miner must never take the validator down
            self.log.warning("request failed unexpectedly", uid=neuron.uid, error=f"{type(exc).__name__}: {exc}")
            return Outcome(None, anyio.current_time() - began, "internal")
        if reply.hotkey and reply.hotkey != neuron.hotkey:
            return Outcome(None, reply.latency, "wrong_hotkey")
        return reply

    def _parse(self, neuron: Neuron, task: ValidatorTask, reply: Reply) -> Outcome:
        try:
            answer = self.modality.parse_response(task, reply)
        except TaskError as exc:
            return Outcome(None, reply.latency, exc.code)
        except Exception as exc:  # a parser bug on odd data scores the answer 0, loudly
            self.log.warning("cannot parse answer", uid=neuron.uid, error=f"{type(exc).__name__}: {exc}")
            return Outcome(None, reply.latency, "invalid_response")
        return Outcome(answer, reply.latency)

    async def _ask_self(self, task: ValidatorTask) -> Reply:
        """Hand the task to this node's own dispatch, the pipeline a remote request goes through
        (spam filters, execution slot, the modality serving ``task.modality``) minus the wire."""
        began = anyio.current_time()
        dtype, shape, nbytes = dispatch.describe_payload(task.payload)
        received = time.monotonic()
        request = InboundRequest(self.node.hotkey.public_hex, self.node.peer_id, task.modality, task.task,
                                 dict(task.body), nbytes, 0, received + self.timeout, task.payload, dtype, shape,
                                 "self", received)
        result = await dispatch.of(self.node).handle(request)
        return Reply(body=result.body, payload=result.payload, peer_id=self.node.peer_id,
                     hotkey=self.node.hotkey.public_hex, latency=anyio.current_time() - began)

    def combined_scores(self, task: ValidatorTask, answers: Mapping[int, Any],
                        latencies: Mapping[int, float]) -> dict[int, float]:
        """Weighted mean of the configured scorers' scores (each clipped to [0, 1])."""
        total = dict.fromkeys(answers, 0.0)
        weight_sum = 0.0
        for name, scorer, weight in self.scorers():
            try:
                scores = scorer.score(task, answers, latencies)
            except Exception as exc:  # a scorer bug must not stop validation; it is logged
                self.log.error("scorer failed", scorer=name, error=f"{type(exc).__name__}: {exc}")
                scores = {}
            weight_sum += weight
            for uid in total:
                value = float(scores.get(uid, 0.0))
                total[uid] += weight * (min(1.0, max(0.0, value)) if math.isfinite(value) else 0.0)
        if weight_sum > 0:
            total = {uid: v / weight_sum for uid, v in total.items()}
        return {uid: (v if answers[uid] is not None else 0.0) for uid, v in total.items()}

    # ------------------------------------------------------------------ weights
    async def _submit_weights(self, mg: Metagraph, me: Neuron) -> bool:
        hp = mg.hyperparameters
        commit_reveal = hp.commit_reveal_weights_enabled
        if commit_reveal:
            await self._reveal_due(mg.block, hp)
        interval = max(hp.weights_rate_limit, self.config.weights_interval)
        last = self.state.last_weights_block
        if last is not None and mg.block - last < interval:
            return False
        if not any(r.count for r in self.state.records.values()):
            return False  # nothing measured yet: weights now would be a guess
        scores = self.penalized_scores(mg)
        if not tells_apart(scores, n=mg.n, own_uid=me.uid):
            # Every miner scored zero so far (e.g. all late on a first step): the weights would be
            # uniform, paying a garbage miner like the best one. Wait for a score that tells them apart.
            self.log.info("weights held back: no miner has scored above zero yet", block=mg.block)
            return False
        try:
            vector = compute_weights(scores, n=mg.n, own_uid=me.uid,
                                     min_allowed_weights=hp.min_allowed_weights,
                                     max_weight_limit=hp.max_weight_limit)
        except WeightsUnsatisfiable as exc:
            if str(exc) != self._unsatisfiable:  # say it once, not every step
                self._unsatisfiable = str(exc)
                self.log.warning("cannot set weights under the subnet's rules", reason=str(exc))
            return False
        self._unsatisfiable = ""
        version = max(self.config.version_key, hp.weights_version)
        chain = self.node.chain
        hotkey = self.node.hotkey
        try:
            if commit_reveal:
                salt = secrets.token_hex(16)
                await chain.commit_weights(hotkey, vector.commit_hash(hotkey.public_hex, salt, version),
                                           netuid=mg.netuid)
                self.state.pending.append(PendingCommit(mg.block, list(vector.uids), list(vector.values), salt, version))
            else:
                await chain.set_weights(hotkey, vector, version, netuid=mg.netuid)
        except ChainError as exc:
            # Retry in a quarter of the interval rather than at once: the refusal will likely repeat.
            self.state.last_weights_block = mg.block - interval + max(1, interval // 4)
            self.log.warning("weights refused", code=exc.code, reason=exc.message)
            return False
        self.state.last_weights_block = mg.block
        self.log.info("weights committed" if commit_reveal else "weights set", block=mg.block,
                      uids=len(vector.uids), top=_top(vector.uids, vector.shares))
        await self.node.bus.publish(WeightsSubmitted(mg.block, vector.uids, vector.shares, committed=commit_reveal))
        self._save()
        return True

    async def _reveal_due(self, block: int, hp: Hyperparameters) -> None:
        period = hp.commit_reveal_period
        window = hp.commit_reveal_window
        for pending in list(self.state.pending):
            if block < pending.block + period:
                continue
            if block > pending.block + period + window + 1:
                self.state.pending.remove(pending)
                self.log.warning("weight commit expired unrevealed", commit_block=pending.block)
                continue
            try:
                await self.node.chain.reveal_weights(self.node.hotkey, pending.weights, pending.salt,
                                                     pending.version_key, netuid=self.netuid)
            except ChainError as exc:
                if exc.code == "reveal_too_early":
                    continue
                self.state.pending.remove(pending)
                self.log.warning("weight reveal refused", code=exc.code, reason=exc.message)
                continue
            self.state.pending.remove(pending)
            self.log.info("weights revealed", block=block, commit_block=pending.block)
            await self.node.bus.publish(WeightsSubmitted(block, pending.weights.uids, pending.weights.shares,
                                                         committed=False))
            self._save()


def _top(uids: tuple[int, ...], shares: tuple[float, ...], count: int = 3) -> str:
    best = sorted(zip(uids, shares, strict=True), key=lambda p: -p[1])[:count]
    return " ".join(f"{u}:{s:.2f}" for u, s in best)
