"""Distillation from the network with learned peer selection.

For a batch of training windows the student gets, besides its own next-token loss, a target: the
mixture of the teachers' distributions at every position, weighted by a small gating model. The
gate reads the student's final hidden state (detached) and gives per position a softmax over the
teachers that answered that window; it is trained to make the mixture predict the true next token
(−log Σᵢ gᵢ pᵢ(y)), which is what ranks teachers by usefulness: a teacher whose distributions put
mass on the truth gains weight where it does. The student's loss is

    (1 − α) · CE(q, y) + α · KL(m ‖ q),    m = Σᵢ gᵢ pᵢ (gate held fixed),

over the windows at least one teacher answered (CE alone for the others). The gate, its optimizer
and the running mean of its weights per teacher are saved with the checkpoint.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tnode.contracts.learning import GATING_FORMAT, Teacher
from torch import nn

from .teachers import TeacherBatch


class Gate(nn.Module):
    """Per-position weights over ``teachers``: a context-free bias plus a linear term on the hidden state."""

    def __init__(self, d_model: int, teachers: int) -> None:
        super().__init__()
        self.linear = nn.Linear(d_model, teachers)
        nn.init.zeros_(self.linear.weight)  # starts uniform over the teachers that answered
        nn.init.zeros_(self.linear.bias)

    def forward(self, hidden: torch.Tensor, answered: torch.Tensor) -> torch.Tensor:
        """Weights (B, T, n) for hidden states (B, T, d) and an answered mask (n, B); rows of
        windows nobody answered are zero."""
        logits = self.linear(hidden)
        mask = answered.T[:, None, :]  # (B, 1, n)
        logits = logits.masked_fill(~mask, float("-inf"))
        any_answer = mask.any(dim=-1, keepdim=True)
        weights = torch.softmax(torch.where(any_answer, logits, torch.zeros_like(logits)), dim=-1)
        return torch.where(any_answer, weights, torch.zeros_like(weights))


@dataclass(frozen=True)
class Losses:
    """The parts of one step's loss (all means over the positions they cover)."""

    total: torch.Tensor
    own: torch.Tensor  # CE of the student on the true tokens, every window
    distill: torch.Tensor  # KL(m ‖ q) over answered windows (0 when none)
    gate: torch.Tensor  # −log m(y) of the gated mixture over answered windows (0 when none)
    weights: torch.Tensor  # (B, T, n) the gate's weights


def mixture(probs: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Σᵢ wᵢ pᵢ: teacher distributions (n, B, T, V) mixed by per-position weights (B, T, n) → (B, T, V)."""
    return torch.einsum("nbtv,btn->btv", probs, weights)


def gate_nll(weights: torch.Tensor, p_true: torch.Tensor, has: torch.Tensor) -> torch.Tensor:
    """−log Σᵢ gᵢ pᵢ(y) over the answered windows: weights (B, T, n), p_true (n, B, T), has (B,)."""
    mix_true = torch.einsum("nbt,btn->bt", p_true, weights)[has]
    return -torch.log(mix_true.clamp_min(1e-12)).mean()


def true_probs(probs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Each teacher's probability of the true next token: (n, B, T, V), (B, T) → (n, B, T)."""
    return probs.gather(-1, targets[None, :, :, None].expand(probs.shape[0], -1, -1, 1))[..., 0]


def losses(logits: torch.Tensor, hidden: torch.Tensor, targets: torch.Tensor, probs: torch.Tensor,
           answered: torch.Tensor, gate: Gate, alpha: float) -> Losses:
    """The step's losses (see the module doc).

    :param logits: the student's (B, T, V). :param hidden: its hidden states (B, T, d).
    :param targets: true next tokens (B, T). :param probs: teachers' distributions (n, B, T, V).
    :param answered: bool (n, B). :param alpha: the distillation share in [0, 1].
    """
    logq = torch.log_softmax(logits.float(), dim=-1)
    own = F.nll_loss(logq.reshape(-1, logq.shape[-1]), targets.reshape(-1))
    weights = gate(hidden.detach(), answered)
    has = answered.any(dim=0)  # (B,)
    zero = logits.new_zeros(())
    if not bool(has.any()):
        return Losses(own, own, zero, zero, weights)
    gate_loss = gate_nll(weights, true_probs(probs, targets), has)
    m = mixture(probs, weights.detach())[has]  # (b', T, V)
    kl = (m * (torch.log(m.clamp_min(1e-12)) - logq[has])).sum(-1).mean()
    total = (1.0 - alpha) * own + alpha * kl + gate_loss
    return Losses(total, own, kl, gate_loss, weights)


class Distiller:
    """Plugs distillation into :func:`tnode.plugins.text.train.train`.

    ``fetch(windows)`` returns the teachers' :class:`TeacherBatch` for int windows (B, T) — in
    ``tnode train`` a call into the node's event loop, which asks the network.
    """

    def __init__(self, teachers: Sequence[Teacher], fetch: Callable[[np.ndarray], TeacherBatch], *,
                 alpha: float = 0.5, gate_lr: float = 0.1, gate_steps: int = 4, mean_decay: float = 0.98) -> None:
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"the distillation weight must lie in [0, 1], got {alpha}")
        self.teachers = list(teachers)
        self.fetch = fetch
        self.alpha = alpha
        self.gate_lr = gate_lr
        self.gate_steps = gate_steps
        self.mean_decay = mean_decay
        self.gate: Gate | None = None
        self.opt: torch.optim.Optimizer | None = None
        self.mean = torch.full((len(self.teachers),), 1.0 / max(len(self.teachers), 1))
        self.answered = torch.zeros(len(self.teachers), dtype=torch.long)
        self.own_loss = float("nan")
        self.last: Losses | None = None

    def setup(self, model: Any, state: dict[str, Any]) -> None:
        """Build the gate for ``model`` (restoring it from a checkpoint's state when the teachers match)."""
        self.gate = Gate(model.shape.d_model, len(self.teachers))
        self.opt = torch.optim.Adam(self.gate.parameters(), lr=self.gate_lr)
        saved = state.get("gating")
        if isinstance(saved, dict) and saved.get("hotkeys") == [t.hotkey for t in self.teachers]:
            self.gate.load_state_dict(saved["gate"])
            if saved.get("optimizer"):
                self.opt.load_state_dict(saved["optimizer"])
            self.mean = saved["mean"].clone()
            self.answered = saved["answered"].clone()

    def loss(self, model: Any, batch: torch.Tensor) -> torch.Tensor:
        """The total loss of one batch of windows (B, T + 1)."""
        assert self.gate is not None
        inputs, targets = batch[:, :-1], batch[:, 1:]
        got = self.fetch(inputs.numpy())
        hidden = model.hidden(inputs)
        logits = hidden @ model.tok.weight.T
        answered = torch.as_tensor(got.answered)
        self._fit_gate(hidden.detach(), targets, torch.as_tensor(got.probs), answered)
        parts = losses(logits, hidden, targets, torch.as_tensor(got.probs), answered, self.gate, self.alpha)
        with torch.no_grad():
            w = parts.weights  # (B, T, n)
            for i in range(len(self.teachers)):
                rows = answered[i]
                if bool(rows.any()):
                    now = w[rows, :, i].mean()
                    first = int(self.answered[i]) == 0  # no stale start value in the running mean
                    self.mean[i] = now if first else self.mean_decay * self.mean[i] + (1 - self.mean_decay) * now
                    self.answered[i] += int(rows.sum())
        self.own_loss = float(parts.own.item())
        self.last = parts
        return parts.total

    def _fit_gate(self, hidden: torch.Tensor, targets: torch.Tensor, probs: torch.Tensor,
                  answered: torch.Tensor) -> None:
        """A few gate steps on this batch before its target is built: the gate is tiny next to the
        student, and a target mixed by a gate that has not yet seen the batch teaches the student
        the bad teachers' answers too."""
        assert self.gate is not None and self.opt is not None
        has = answered.any(dim=0)
        if self.gate_steps <= 0 or not bool(has.any()):
            return
        p_true = true_probs(probs, targets)
        for _ in range(self.gate_steps):
            self.opt.zero_grad(set_to_none=True)
            gate_nll(self.gate(hidden, answered), p_true, has).backward()
            self.opt.step()
        self.opt.zero_grad(set_to_none=True)

    def step(self) -> None:
        """The gate's own optimizer step (after the student's)."""
        assert self.opt is not None
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)

    def state(self) -> dict[str, Any]:
        """What the checkpoint keeps under ``gating``."""
        assert self.gate is not None and self.opt is not None
        return {"gating": {"format": GATING_FORMAT, "hotkeys": [t.hotkey for t in self.teachers],
                           "uids": [t.uid for t in self.teachers], "gate": self.gate.state_dict(),
                           "optimizer": self.opt.state_dict(), "mean": self.mean.clone(),
                           "answered": self.answered.clone()}}


def gating_rows(state: dict[str, Any]) -> list[dict[str, Any]]:
    """Per teacher of a checkpoint's gating: uid, hotkey, running mean weight, windows answered,
    context-free weight (softmax of the gate's bias); ``ValueError`` when the checkpoint has none."""
    saved = state.get("gating")
    if not isinstance(saved, dict) or saved.get("format") != GATING_FORMAT:
        raise ValueError("the checkpoint holds no gating (train with --teachers network)")
    bias = torch.softmax(saved["gate"]["linear.bias"].float(), dim=0)
    return [{"uid": int(uid), "hotkey": hotkey, "mean_weight": float(saved["mean"][i]),
             "answered": int(saved["answered"][i]), "prior_weight": float(bias[i])}
            for i, (hotkey, uid) in enumerate(zip(saved["hotkeys"], saved["uids"], strict=True))]
