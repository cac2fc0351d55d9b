"""Score averages, re-registration, miner selection and persistence."""

from __future__ import annotations

import numpy as np
import pytest
from tnode.interfaces import Neuron
from tnode.plugins.validator.state import PendingCommit, ValidatorState


def neurons(*hotkeys: str) -> list[Neuron]:
    return [Neuron(uid=i, hotkey=h, coldkey="", stake=0.0) for i, h in enumerate(hotkeys)]


def test_moving_average() -> None:
    state = ValidatorState(alpha=0.25)
    state.sync(neurons("a"))
    assert state.update(0, "a", 1.0) == pytest.approx(0.25)
    assert state.update(0, "a", 1.0) == pytest.approx(0.4375)
    assert state.update(0, "a", float("nan")) == pytest.approx(0.328125)
    assert state.update(0, "a", 7.0) == pytest.approx(0.25 + 0.75 * 0.328125)  # clipped to 1


def test_a_changed_hotkey_resets_and_a_vanished_uid_is_forgotten() -> None:
    state = ValidatorState(alpha=0.5)
    state.sync(neurons("a", "b", "c"))
    for uid, key in enumerate("abc"):
        state.update(uid, key, 1.0)
    assert state.sync(neurons("a", "B")) == [1]
    assert state.scores() == {0: 0.5, 1: 0.0}


def test_selection_prefers_stale_and_unmeasured_uids() -> None:
    state = ValidatorState(alpha=0.5)
    state.sync(neurons(*"abcdefgh"))
    rng = np.random.default_rng(0)
    picked_fresh = 0
    for _ in range(200):
        for uid in range(4):  # uids 0-3 are measured every step
            state.update(uid, "abcdefgh"[uid], 1.0)
        state.mark_queried(range(4))
        state.step += 1
        picked_fresh += sum(1 for uid in state.pick(list(range(8)), 2, rng) if uid < 4)
    assert picked_fresh < 0.2 * 400


def test_round_trip_and_corrupt_files(tmp_path) -> None:
    state = ValidatorState(alpha=0.5, step=7, last_weights_block=40)
    state.sync(neurons("a"))
    state.update(0, "a", 1.0)
    state.pending.append(PendingCommit(40, [0], [65535], "salt", 0))
    path = tmp_path / "state.json"
    state.save(path)
    loaded = ValidatorState.load(path, alpha=0.5)
    assert loaded.scores() == {0: 0.5} and loaded.step == 7 and loaded.pending == state.pending
    assert ValidatorState.load(tmp_path / "missing.json", alpha=0.5).records == {}
    path.write_text("{not json")
    with pytest.raises(ValueError, match="not a validator state"):
        ValidatorState.load(path, alpha=0.5)
