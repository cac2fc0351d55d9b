"""The router's board: the chain's prior, exploration, backoff and mixture-weight learning."""

from __future__ import annotations

import numpy as np
from tnode.interfaces import Metagraph, Neuron
from tnode.plugins.router.board import LATE_STREAK, Board, chain_prior


def neurons(n: int, **fields: list[float]) -> tuple[Neuron, ...]:
    out = []
    for i in range(n):
        extra = {k: v[i] for k, v in fields.items()}
        out.append(Neuron(uid=i, hotkey=f"{i:064x}", coldkey="00" * 32, stake=0.0, peer_id=f"peer{i}",
                          addrs=(f"/memory/peer{i}",), **extra))
    return tuple(out)


def board(n: int = 4, **kw: float) -> Board:
    b = Board(strength=4.0, decay=1.0, backoff_base=0.5, backoff_max=4.0, rng=np.random.default_rng(1), **kw)
    b.update(neurons(n), {i: 0.5 for i in range(n)})
    return b


def test_the_chain_prior_ranks_incentive_trust_and_validator_weights() -> None:
    ns = neurons(3, incentive=[0.0, 0.2, 0.8], trust=[0.0, 0.5, 1.0])
    w = np.zeros((3, 3))
    w[0] = [0.0, 0.1, 0.9]
    ns = (Neuron(**{**{f: getattr(ns[0], f) for f in Neuron.__slots__}, "stake": 10.0, "validator_permit": True}),
          *ns[1:])
    prior = chain_prior(Metagraph(block=1, netuid=1, neurons=ns, weights=w), [0.5, 0.2, 0.3])
    assert prior[0] < prior[1] < prior[2]
    assert prior[0] == 0.25 and prior[2] == 0.75  # nothing attested → the floor; best everywhere → the top


def test_thompson_sampling_sends_more_queries_to_better_miners() -> None:
    b = board()
    rng = np.random.default_rng(0)
    quality = [0.1, 0.3, 0.5, 0.9]
    for _ in range(400):
        for rec in b.choose(2, now=0.0):
            b.sent(rec.hotkey)
            b.reward(rec.hotkey, float(rng.random() < quality[rec.uid]))
    sent = [b.miners[f"{i:064x}"].sent for i in range(4)]
    assert sent[3] > sent[2] > max(sent[0], sent[1]) and sent[3] > 5 * sent[0]
    assert sent[0] > 0  # the worst is still explored


def test_ucb_tries_every_miner_then_favours_the_best() -> None:
    b = board(exploration="ucb", ucb_c=0.3)
    for _ in range(300):
        (rec,) = b.choose(1, now=0.0)
        b.sent(rec.hotkey)
        b.reward(rec.hotkey, [0.2, 0.4, 0.6, 0.8][rec.uid])
    sent = [b.miners[f"{i:064x}"].sent for i in range(4)]
    assert min(sent) >= 1 and max(sent) == sent[3]


def test_failures_back_off_exponentially_up_to_the_cap_and_success_resets() -> None:
    b = board(2)
    h = f"{0:064x}"
    ends = []
    for _ in range(5):
        b.failed(h, "unreachable", now=100.0)
        ends.append(b.miners[h].backoff_until - 100.0)
    assert ends == [0.5, 1.0, 2.0, 4.0, 4.0]
    assert [r.uid for r in b.choose(1, now=101.0)] == [1]  # a backing-off miner is skipped...
    assert {r.uid for r in b.choose(2, now=101.0)} == {0, 1}  # ...unless too few others are ready
    b.answered(h, 0.01)
    assert b.miners[h].backoff_until == 0.0 and b.miners[h].failures == 0


def test_an_answer_to_an_earlier_request_leaves_a_later_failures_backoff() -> None:
    """Overlapping queries book their outcomes in any order: the failure of request 5 is not undone by
    the answer carried by request 4 when that is booked after it; the answer of request 6 ends it."""
    b = board(2)
    h = f"{0:064x}"
    b.failed(h, "invalid_response", now=12.0, request=5)
    b.answered(h, 0.01, request=4)
    rec = b.miners[h]
    assert rec.failures == 1 and rec.backoff_until == 12.5 and rec.answered == 1
    b.answered(h, 0.01, request=6)
    assert rec.failures == 0 and rec.backoff_until == 0.0


def test_late_answers_cost_quality_but_not_a_backoff() -> None:
    b = board(1)
    h = f"{0:064x}"
    before = b.miners[h].mean(b.strength)
    b.late(h, now=100.0)
    assert b.miners[h].mean(b.strength) < before and b.miners[h].backoff_until == 0.0


def test_a_miner_late_every_time_backs_off_like_a_failed_one() -> None:
    b = board(1)
    h = f"{0:064x}"
    for _ in range(LATE_STREAK - 1):
        b.late(h, now=100.0)
    assert b.miners[h].backoff_until == 0.0
    b.late(h, now=100.0)
    assert b.miners[h].backoff_until == 100.5 and b.miners[h].last_error == "late"
    b.late(h, now=101.0)
    assert b.miners[h].backoff_until == 102.0  # doubling, like consecutive failures
    b.answered(h, 0.01)
    b.late(h, now=103.0)
    assert b.miners[h].backoff_until == 0.0  # an answer in time ends the streak


def test_deregistered_miners_leave_and_a_reused_uid_starts_afresh() -> None:
    b = board(3)
    b.reward(f"{2:064x}", 1.0)
    ns = list(neurons(3))
    ns[2] = Neuron(uid=2, hotkey="ab" * 32, coldkey="00" * 32, stake=0.0, peer_id="new", addrs=("/memory/new",))
    b.update(ns, {})
    assert f"{2:064x}" not in b.miners and b.miners["ab" * 32].hits == 0.0
    assert abs(sum(r.weight for r in b.miners.values()) - 1.0) < 1e-9


def test_em_steps_move_weight_to_the_expert_that_explains_the_truth() -> None:
    b = board(2)
    hot = [f"{0:064x}", f"{1:064x}"]
    for _ in range(50):
        b.learn_weights(hot, np.array([0.9, 0.1]), rate=0.2)
    w = b.weights(hot)
    assert w[0] > 0.85 and abs(w.sum() - 1) < 1e-9
