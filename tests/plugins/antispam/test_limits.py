"""limits: frame, payload, sequence, batch, top-k, generation and answer size."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from antispam_fakes import hotkey, make_node, request
from tnode.config import load_table
from tnode.errors import TaskError
from tnode.interfaces import InboundRequest
from tnode.plugins.antispam.config import LimitsConfig
from tnode.plugins.antispam.limits import Limits

pytestmark = pytest.mark.anyio

ALICE = hotkey("alice")


def limits(**options: Any) -> Limits:
    return Limits(SimpleNamespace(bus=None, log=None), "limits", load_table(LimitsConfig, options))


async def refusal(flt: Limits, req: InboundRequest) -> tuple[str, str] | None:
    try:
        await flt.admit(req)
    except TaskError as exc:
        return exc.code, exc.message
    return None


async def test_a_reasonable_request_passes() -> None:
    flt = limits()
    assert await refusal(flt, request(ALICE, body={"tokens": list(range(128)), "k": 16})) is None
    assert flt.stats()["admitted"] == 1


@pytest.mark.parametrize(("req", "code", "reason"), [
    (request(ALICE, frame_bytes=2_000), "too_large", "frame_bytes"),
    (request(ALICE, payload_bytes=600, frame_bytes=900), "too_large", "payload_bytes"),
    (request(ALICE, body={"tokens": list(range(65))}), "too_large", "sequence_length"),
    (request(ALICE, body={"prompt": "x" * 65}), "too_large", "sequence_length"),
    (request(ALICE, body={"tokens": [[1, 2]] * 5}), "too_large", "batch"),
    (request(ALICE, body={"top_k": 9}), "too_large", "k"),
    (request(ALICE, body={"max_new_tokens": 33}), "too_large", "max_tokens"),
    (request(ALICE, body={"tokens": list(range(64)), "k": 8}), "too_large", "response_size"),
    (request(ALICE, body={"k": "lots"}), "invalid_request", "invalid"),
    (request(ALICE, body={"k": -1}), "invalid_request", "invalid"),
    (request(ALICE, body={"max_tokens": 2.5}), "invalid_request", "invalid"),
    (request(ALICE, body={"k": True}), "invalid_request", "invalid"),
    (request(ALICE, body={"tokens": {"a": 1}}), "invalid_request", "invalid"),
])
async def test_each_limit_refuses_with_its_reason(req: InboundRequest, code: str, reason: str) -> None:
    flt = limits(max_frame_bytes=1_000, max_payload_bytes=500, max_sequence_length=64, max_batch=4, max_k=8,
                 max_tokens=32, max_response_items=256)
    got = await refusal(flt, req)
    assert got is not None and got[0] == code
    assert flt.stats()["refused"] == {reason: 1}


async def test_sequence_length_and_batch_from_a_token_payload_shape() -> None:
    flt = limits(max_sequence_length=64, max_batch=4)

    def tokens(shape: tuple[int, ...], dtype: str = "int32") -> InboundRequest:
        return InboundRequest(ALICE, "p", "text", "next_token", {}, 0, 100, dtype=dtype, shape=shape)

    assert await refusal(flt, tokens((2, 64))) is None
    assert (await refusal(flt, tokens((1, 65))))[0] == "too_large"
    assert (await refusal(flt, tokens((5, 10), "uint16")))[0] == "too_large"
    # An image's last axis is not a sequence: float payloads are judged by their bytes only.
    assert await refusal(flt, tokens((32, 32, 100), "float32")) is None


async def test_exempt_modality_gets_only_byte_limits() -> None:
    flt = limits(max_k=8, max_frame_bytes=1_000, exempt_modalities=["echo"])
    assert await refusal(flt, request(ALICE, "echo", body={"k": 1_000})) is None
    assert (await refusal(flt, request(ALICE, "echo", frame_bytes=5_000)))[0] == "too_large"


async def test_service_calls_get_only_byte_limits() -> None:
    flt = limits(max_k=8, max_frame_bytes=1_000)
    assert flt.judges_services
    assert await refusal(flt, request(ALICE, "svc:chain", body={"k": 1_000})) is None
    assert (await refusal(flt, request(ALICE, "svc:chain", frame_bytes=5_000)))[0] == "too_large"


async def test_configured_in_a_node(tmp_path) -> None:
    node = make_node(tmp_path, {"size": {"type": "limits", "max_k": 4}})
    async with node.running():
        flt = node.component("spam_filter", "size")
        with pytest.raises(TaskError, match="top-k of 5 exceeds 4"):
            await flt.admit(request(ALICE, body={"k": 5}))
