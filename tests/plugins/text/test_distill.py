"""Distillation targets and the learned gate, on constructed teacher answers."""

from __future__ import annotations

import numpy as np
import torch
from tnode.plugins.text.distill import Gate, losses, mixture
from tnode.plugins.text.teachers import dense

V = 256


def test_dense_spreads_the_unclaimed_mass_and_floors() -> None:
    ids = np.array([[[3, 7]]])
    lp = np.log(np.array([[[0.5, 0.25]]], dtype=np.float32))
    p = dense(ids, lp, floor=1e-6)
    assert p.shape == (1, 1, V)
    assert abs(p[0, 0, 3] - 0.5) < 1e-4 and abs(p[0, 0, 7] - 0.25) < 1e-4
    assert abs(p[0, 0, 0] - 0.25 / (V - 2)) < 1e-6
    np.testing.assert_allclose(p.sum(-1), 1.0, atol=1e-6)


def test_the_target_is_the_gated_mixture_of_the_teachers_that_answered() -> None:
    torch.manual_seed(0)
    b, t, d = 3, 4, 5
    p_a = torch.as_tensor(dense(np.full((b, t, 1), 10), np.log(np.full((b, t, 1), 0.9, np.float32)), 1e-6))
    p_b = torch.as_tensor(dense(np.full((b, t, 1), 20), np.log(np.full((b, t, 1), 0.6, np.float32)), 1e-6))
    probs = torch.stack([p_a, p_b])
    # Window 0: both answered; window 1: only teacher b; window 2: nobody.
    answered = torch.tensor([[True, False, False], [True, True, False]])
    gate = Gate(d, 2)
    with torch.no_grad():
        gate.linear.bias.copy_(torch.tensor([np.log(3.0), 0.0]))  # weights 0.75 / 0.25 where both answered
    hidden = torch.randn(b, t, d)
    w = gate(hidden, answered).detach()
    np.testing.assert_allclose(w[0].numpy(), np.tile([0.75, 0.25], (t, 1)), atol=1e-6)
    np.testing.assert_allclose(w[1].numpy(), np.tile([0.0, 1.0], (t, 1)), atol=1e-6)
    assert float(w[2].abs().sum()) == 0.0
    m = mixture(probs, w)
    np.testing.assert_allclose(m[0, 0, 10].item(), 0.75 * 0.9 + 0.25 * p_b[0, 0, 10].item(), atol=1e-5)
    np.testing.assert_allclose(m[1].numpy(), p_b[1].numpy(), atol=1e-6)

    logits = torch.randn(b, t, V, requires_grad=True)
    targets = torch.full((b, t), 10)
    parts = losses(logits, hidden, targets, probs, answered, gate, alpha=0.5)
    logq = torch.log_softmax(logits, -1)
    kl = [(m[i] * (m[i].log() - logq[i])).sum(-1).mean() for i in (0, 1)]  # window 2 has no target
    assert torch.allclose(parts.distill, (kl[0] + kl[1]) / 2, atol=1e-5)
    assert torch.allclose(parts.own, -logq[..., 10].mean(), atol=1e-5)
    gate_nll = -torch.log(torch.stack([m[0, :, 10], m[1, :, 10]])).mean()
    assert torch.allclose(parts.gate, gate_nll, atol=1e-5)
    assert torch.allclose(parts.total, 0.5 * parts.own + 0.5 * parts.distill + parts.gate, atol=1e-5)


def test_with_no_teacher_answer_only_the_own_loss_remains() -> None:
    logits = torch.randn(2, 3, V, requires_grad=True)
    targets = torch.randint(0, V, (2, 3))
    parts = losses(logits, torch.randn(2, 3, 4), targets, torch.zeros(2, 2, 3, V),
                   torch.zeros(2, 2, dtype=torch.bool), Gate(4, 2), alpha=0.7)
    assert torch.equal(parts.total, parts.own) and float(parts.distill) == 0.0
    parts.total.backward()  # still trains the student
    assert logits.grad is not None and torch.isfinite(logits.grad).all()


def test_the_gate_learns_which_teacher_helps_in_which_context() -> None:
    """Teacher 0 knows the truth where feature 0 of the hidden state is positive, teacher 1 where it
    is negative, teacher 2 is confident garbage: the gate must learn that, per context."""
    torch.manual_seed(1)
    b, t, d, n = 8, 8, 4, 3
    gate = Gate(d, n)
    opt = torch.optim.Adam(gate.parameters(), lr=0.05)
    answered = torch.ones(n, b, dtype=torch.bool)

    def problem() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        y = torch.randint(0, V, (b, t))
        hidden = torch.randn(b, t, d)
        side = hidden[..., 0] > 0
        knows = torch.full((b, t, V), 0.1 / (V - 1)).scatter_(-1, y[..., None], 0.9)
        guess = torch.full((b, t, V), 1.0 / V)
        first = torch.where(side[..., None], knows, guess)
        second = torch.where(side[..., None], guess, knows)
        garbage = torch.softmax(torch.randn(b, t, V) * 6, dim=-1)
        return hidden, y, torch.stack([first, second, garbage])

    for _ in range(150):
        hidden, y, probs = problem()
        parts = losses(torch.zeros(b, t, V), hidden, y, probs, answered, gate, alpha=0.5)
        opt.zero_grad()
        parts.gate.backward()
        opt.step()
    hidden, y, probs = problem()
    with torch.no_grad():
        w = gate(hidden, answered)
    side = hidden[..., 0] > 0
    assert w[side][:, 0].mean() > 0.8 and w[~side][:, 1].mean() > 0.8
    assert w[..., 2].mean() < 0.05
