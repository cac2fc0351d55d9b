"""The router's teacher source on a small real network (libp2p on 127.0.0.1, the local chain, n-gram
miners): batched answers for every position, checked row by row; refusals and dead miners come back
as error codes, never as exceptions, and the client carries on with whoever answered."""

from __future__ import annotations

import anyio
import numpy as np
import pytest
from tnode.plugins.router.config import RouterTeachersConfig
from tnode.plugins.router.localnet import heldout_windows, local_net
from tnode.plugins.router.teachers import RouterTeachers
from tnode.plugins.text.teachers import TeacherClient

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

SIZES = (30_000, 120_000)
ROUTER = {"k": 2, "k_min": 2, "timeout": 3.0, "seed": 3}


async def started(net, **config) -> RouterTeachers:
    source = RouterTeachers(net.client, "net", RouterTeachersConfig(**config))
    source.router = net.router()
    return source


async def test_teachers_answer_every_position_and_refusals_are_codes(tmp_path) -> None:
    async with local_net(tmp_path, SIZES, router=ROUTER) as net:
        source = await started(net, max_tasks=32)
        teachers = source.teachers()
        assert [t.hotkey for t in teachers] == sorted((m.hotkey.public_hex for m in net.miners),
                                                      key=lambda h: net.router().board.miners[h].uid)
        windows = heldout_windows(net.heldout, 20, 33, seed=1)[:, :-1]
        reply = await source.ask(teachers[0].hotkey, windows[:4], k=8, timeout=5.0)
        assert reply.ok and reply.ids.shape == (4, 32, 8) and reply.logprobs.shape == (4, 32, 8)
        assert np.all(np.diff(reply.logprobs, axis=-1) <= 1e-6)  # most likely first
        # 20 windows exceed the miners' max_tasks (16): a refusal, reported as its code.
        refused = await source.ask(teachers[1].hotkey, windows, k=8, timeout=5.0)
        assert not refused.ok and refused.error == "too_large"
        # The refusal backs the miner off in the router's board: the next ask is skipped at once.
        assert (await source.ask(teachers[1].hotkey, windows[:2], k=8, timeout=5.0)).error == "backoff"

        # A client over both teachers, one of them dead: the windows still get the live one's answers.
        net.kill(0)
        await anyio.sleep(0.2)
        client = TeacherClient(await started(net), teachers, k=8, rps=0, timeout=2.0)
        board = net.router().board
        board.miners[teachers[1].hotkey].backoff_until = 0.0
        got = await client.distributions(windows[:6])
        dead = next(i for i, t in enumerate(teachers) if t.hotkey == net.miners[0].hotkey.public_hex)
        assert not got.answered[dead].any() and got.answered[1 - dead].all()
        assert got.errors[teachers[dead].hotkey] in ("unreachable", "timeout")
        np.testing.assert_allclose(got.probs[1 - dead].sum(-1), 1.0, atol=1e-5)
