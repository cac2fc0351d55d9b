"""Requests ride the Noise session's authentication by default; answers are always signed."""

from __future__ import annotations

import pytest
from libp2p.peer.id import ID
from libp2p_helpers import make_node
from tnode import wire
from tnode.errors import BadSignature
from tnode.keys import Keypair
from tnode.plugins.libp2p.framing import read_frame

pytestmark = pytest.mark.anyio


async def _raw_exchange(b, a, frame: bytes) -> wire.Message:
    stream = await b.transport.host.new_stream(ID.from_base58(a.peer_id), ["/tnode/task/1"])
    await stream.write(frame)
    raw = await read_frame(stream, 1 << 24)
    await stream.close()
    return wire.Verifier(b.hotkey.public_hex).verify_body(raw, expect_kind="res")


def _unsigned(sender: Keypair, receiver: str, **body) -> bytes:
    return wire.encode(sender, kind="req", modality="echo", task="echo", receiver=receiver,
                       body={"args": body, "timeout_ms": 2000}, sign=False)


async def test_an_unsigned_request_from_the_sessions_peer_is_served_and_answered_signed(tmp_path):
    a, b = make_node(tmp_path, "a"), make_node(tmp_path, "b")
    async with a.running(), b.running():
        await b.transport.connect(a.transport.listen_addrs()[0])
        frame = _unsigned(b.hotkey, a.hotkey.public_hex, v=1)
        assert wire.decode_frame(frame).header["sig"] == ""
        answer = await _raw_exchange(b, a, frame)  # verify_body checked the answer's signature
        assert answer.code == "" and answer.body["result"] == {"v": 1} and answer.sender == a.hotkey.public_hex
        assert (await _raw_exchange(b, a, frame)).code == "replayed"  # the replay memory still applies
        # Unsigned, but claiming another sender than the session's peer: refused before anything else.
        mallory = Keypair.generate()
        assert (await _raw_exchange(b, a, _unsigned(mallory, a.hotkey.public_hex))).code == "wrong_sender"
        # The transport's own requests go unsigned by default and are served.
        assert (await b.transport.request(a.peer_id, "echo", "echo", {"n": 2}, timeout=5)).body == {"n": 2}


async def test_a_peer_that_insists_on_signatures_gets_a_signed_retry(tmp_path):
    a = make_node(tmp_path, "a", accept_unsigned_requests=False)
    b = make_node(tmp_path, "b")
    async with a.running(), b.running():
        await b.transport.connect(a.transport.listen_addrs()[0])
        assert (await _raw_exchange(b, a, _unsigned(b.hotkey, a.hotkey.public_hex))).code == "bad_signature"
        reply = await b.transport.request(a.peer_id, "echo", "echo", {"n": 3}, timeout=5)
        assert reply.body == {"n": 3}
        assert b.transport._peer(a.peer_id).must_sign  # later requests to a are signed at once
        assert (await b.transport.request(a.peer_id, "echo", "echo", {"n": 4}, timeout=5)).body == {"n": 4}


def test_only_requests_may_go_unsigned_and_the_decoder_refuses_an_unsigned_answer():
    key, other = Keypair.generate(), Keypair.generate()
    with pytest.raises(ValueError):
        wire.encode(key, kind="res", modality="m", task="t", receiver=other.public_hex, sign=False)
    unsigned = _unsigned(key, other.public_hex)
    verifier = wire.Verifier(other.public_hex)
    with pytest.raises(BadSignature):  # no session vouches for it
        verifier.verify_frame(unsigned, expect_kind="req")
    assert wire.Verifier(other.public_hex).verify(wire.decode_frame(unsigned), expect_kind="req",
                                                  session_sender=key.public_hex).sender == key.public_hex
    with pytest.raises(BadSignature):  # a session for someone else does not either
        wire.Verifier(other.public_hex).verify(wire.decode_frame(unsigned), session_sender=other.public_hex)
