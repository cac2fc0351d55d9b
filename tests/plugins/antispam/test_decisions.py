"""Every filter decision is counted by reason and logged at debug with that reason."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest
import structlog
from antispam_fakes import hotkey, make_node, request
from structlog.testing import capture_logs
from tnode.errors import TaskError
from tnode.plugins.antispam.common import LOGGER

pytestmark = pytest.mark.anyio

STAKED, STRANGER = hotkey("staked"), hotkey("stranger")


@pytest.fixture
def debug_logs() -> Iterator[list[dict[str, Any]]]:
    """Debug on (as `[log] level = "debug"` sets it) and the anti-spam log lines captured."""
    std = logging.getLogger(LOGGER)
    old_level, old_config = std.level, structlog.get_config()
    std.setLevel(logging.DEBUG)
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG))
    try:
        with capture_logs() as logs:
            yield logs
    finally:
        std.setLevel(old_level)
        structlog.configure(**old_config)


async def test_each_filter_counts_and_logs_admissions_and_refusals(tmp_path, debug_logs) -> None:
    node = make_node(tmp_path, {
        "size": {"type": "limits", "max_k": 16},
        "reg": {"type": "registered_only", "exempt_modalities": ["echo"]},
        "rate": {"type": "token_bucket", "rate": 0.0, "burst": 1.0},
        "prio": {"type": "stake_priority", "max_concurrent": 1, "max_queue": 0},
    })
    node.chain.add_neuron(STAKED, stake=10.0)
    async with node.running():
        f = node.components_of("spam_filter")
        await f["size"].admit(request(STAKED, body={"k": 8}))
        with pytest.raises(TaskError):
            await f["size"].admit(request(STAKED, body={"k": 64}))
        await f["reg"].admit(request(STAKED))
        await f["reg"].admit(request(STRANGER, modality="echo"))
        with pytest.raises(TaskError):
            await f["reg"].admit(request(STRANGER))
        await f["rate"].admit(request(STAKED))
        with pytest.raises(TaskError):
            await f["rate"].admit(request(STAKED))
        release = await f["prio"].admit(request(STAKED))
        with pytest.raises(TaskError):
            await f["prio"].admit(request(STAKED))
        release()
    expected = {
        "size": ({"within_limits": 1}, {"k": 1}),
        "reg": ({"registered": 1, "exempt_modality": 1}, {"not_registered": 1}),
        "rate": ({"within_rate": 1}, {"rate_limited": 1}),
        "prio": ({"free_slot": 1}, {"no_slot": 1}),
    }
    for name, (admitted, refused) in expected.items():
        stats = f[name].stats()
        assert (stats["admitted_by"], stats["refused"]) == (admitted, refused), name
        assert stats["admitted"] == sum(admitted.values())
        lines = [(e["event"], e["reason"]) for e in debug_logs if e.get("spam_filter") == name]
        assert sorted(lines) == sorted([("request admitted", r) for r, n in admitted.items() for _ in range(n)]
                                       + [("request refused", r) for r, n in refused.items() for _ in range(n)])
        assert all(e["log_level"] == "debug" for e in debug_logs if e.get("spam_filter") == name)


async def test_nothing_is_logged_below_debug(tmp_path) -> None:
    node = make_node(tmp_path, {"reg": {"type": "registered_only"}})
    std = logging.getLogger(LOGGER)
    old = std.level
    std.setLevel(logging.INFO)
    try:
        async with node.running():
            flt = node.component("spam_filter", "reg")
            with capture_logs() as logs:
                for _ in range(3):
                    with pytest.raises(TaskError):
                        await flt.admit(request(STRANGER))
    finally:
        std.setLevel(old)
    assert [e for e in logs if e.get("spam_filter") == "reg"] == []
    assert flt.stats()["refused"] == {"not_registered": 3}


async def test_garbage_guard_counts_and_logs_each_finding(tmp_path, debug_logs) -> None:
    from antispam_fakes import model_answer, text_task
    from tnode.plugins.antispam.garbage import DUPLICATE, NON_FINITE

    node = make_node(tmp_path, scorers={"ce": {"type": "cross_entropy"},
                                        "guard": {"type": "garbage_guard", "inner": "ce"}})
    task = text_task()
    honest = model_answer(task, seed=1)
    broken = model_answer(task, seed=2)
    broken.logprobs[0, 0] = float("nan")
    async with node.running():
        guard = node.component("scorer", "guard")
        scores = guard.score(task, {0: honest, 1: honest, 2: broken, 3: model_answer(task, seed=3)},
                             {0: 0.1, 1: 0.2, 2: 0.1, 3: 0.1})
    assert scores[1] == 0.0 and scores[2] == 0.0 and scores[0] > 0 and scores[3] > 0
    stats = guard.stats()
    assert (stats["clean"], stats["flagged"]) == (2, {DUPLICATE: 1, NON_FINITE: 1})
    lines = sorted((e["uid"], e["reason"]) for e in debug_logs if e.get("scorer") == "guard")
    assert lines == [(1, DUPLICATE), (2, NON_FINITE)]
